//! Reading base weights from a GGUF file, checking every shape. The header
//! comes from her-gguf (bounded: every tensor's extent was checked against
//! the file size); the stored bytes become candle `QTensor`s.

use her_core::fsutil::IoError;
use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor, ggml_file};
use candle_core::{DType, Device, Tensor};
use her_gguf::{GgmlType, GgufError, GgufFile, TensorInfo};

use super::BaseMode;
use super::frozen::{FrozenWeight, RowBlocks};
use super::ops::RmsNorm;
use crate::error::TrainError;

/// An open GGUF: its header, and the file its tensors are read from.
pub(crate) struct Gguf {
    pub header: GgufFile,
    file: File,
}

impl Gguf {
    /// Reads the header (refusing FIFOs and devices) and keeps the file open
    /// for the tensors.
    pub fn open(path: &Path) -> Result<Self, TrainError> {
        let header = her_gguf::inspect(path).map_err(gguf_error)?;
        let file = her_core::fsutil::read::open_regular(path)
            .map(|(file, _)| file)
            .map_err(|e| IoError::new("open", path, e.into()))?;
        Ok(Self { header, file })
    }

    /// The tensor's candle block type and stored bytes.
    pub fn raw(&mut self, info: &TensorInfo) -> Result<(GgmlDType, Vec<u8>), TrainError> {
        let dtype = candle_dtype(info.ggml_type)
            .ok_or_else(|| unsupported_type(self.header.path(), info, CANNOT_COMPUTE))?;
        let bytes = self
            .header
            .read_tensor_data(&mut self.file, info)
            .map_err(gguf_error)?;
        Ok((dtype, bytes))
    }

    /// The tensor as stored, on the CPU, with candle's dimension order
    /// (GGUF's reversed: (out, in) for a weight).
    pub fn qtensor(&mut self, info: &TensorInfo) -> Result<QTensor, TrainError> {
        let (dtype, bytes) = self.raw(info)?;
        ggml_file::qtensor_from_ggml(dtype, &bytes, candle_dims(info), &Device::Cpu)
            .map_err(|e| read_error(self.header.path(), &info.name, e))
    }
}

const CANNOT_COMPUTE: &str = "the trainer cannot compute with this type: convert the model \
                              to Q4_K_M, Q8_0 or F16 (llama.cpp's llama-quantize)";
const NO_CUDA_KERNEL: &str = "candle has no CUDA dequantize kernel for it (every call would \
                              copy it to the host): set train.base = 'dequantized', or \
                              requantize the model to Q8_0";

fn unsupported_type(path: &Path, info: &TensorInfo, detail: &str) -> TrainError {
    TrainError::UnsupportedType {
        path: path.to_path_buf(),
        tensor: info.name.clone(),
        ggml_type: info.ggml_type.to_string(),
        detail: detail.to_owned(),
    }
}

fn read_error(path: &Path, tensor: &str, e: impl std::fmt::Display) -> TrainError {
    TrainError::TensorRead {
        path: path.to_path_buf(),
        tensor: tensor.to_owned(),
        detail: e.to_string(),
    }
}

/// A tensor's dimensions in candle's order.
pub(crate) fn candle_dims(info: &TensorInfo) -> Vec<usize> {
    info.dims.iter().rev().map(|&d| d as usize).collect()
}

/// her-gguf's error as the trainer's: I/O failures keep their action, the
/// rest (not a GGUF, truncated, malformed) say the file is unreadable.
pub(crate) fn gguf_error(e: GgufError) -> TrainError {
    match e {
        GgufError::Io(io) => TrainError::Io(io),
        other => TrainError::Gguf(other),
    }
}

/// The candle block type of a GGUF tensor type, for the types candle can
/// dequantize and multiply.
fn candle_dtype(t: GgmlType) -> Option<GgmlDType> {
    Some(match t {
        GgmlType::F32 => GgmlDType::F32,
        GgmlType::F16 => GgmlDType::F16,
        GgmlType::BF16 => GgmlDType::BF16,
        GgmlType::Q4_0 => GgmlDType::Q4_0,
        GgmlType::Q4_1 => GgmlDType::Q4_1,
        GgmlType::Q5_0 => GgmlDType::Q5_0,
        GgmlType::Q5_1 => GgmlDType::Q5_1,
        GgmlType::Q8_0 => GgmlDType::Q8_0,
        GgmlType::Q8_1 => GgmlDType::Q8_1,
        GgmlType::Q2_K => GgmlDType::Q2K,
        GgmlType::Q3_K => GgmlDType::Q3K,
        GgmlType::Q4_K => GgmlDType::Q4K,
        GgmlType::Q5_K => GgmlDType::Q5K,
        GgmlType::Q6_K => GgmlDType::Q6K,
        GgmlType::Q8_K => GgmlDType::Q8K,
        _ => return None,
    })
}

/// Whether candle dequantizes `t` with a CUDA kernel (the rest it copies
/// to the host on every call; floats are kept as dense tensors instead).
fn has_cuda_kernel(t: GgmlDType) -> bool {
    !matches!(t, GgmlDType::Q8_1)
}

fn is_float(t: GgmlDType) -> bool {
    matches!(t, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16)
}

/// The first tensor whose type the trainer cannot use in `mode`, on a GPU
/// when `on_gpu`, as the error that names it and the fix.
fn check_types(
    path: &Path,
    tensors: &[TensorInfo],
    mode: BaseMode,
    on_gpu: bool,
) -> Result<(), TrainError> {
    for info in tensors {
        let Some(t) = candle_dtype(info.ggml_type) else {
            return Err(unsupported_type(path, info, CANNOT_COMPUTE));
        };
        if on_gpu && mode == BaseMode::Quantized && !has_cuda_kernel(t) {
            return Err(unsupported_type(path, info, NO_CUDA_KERNEL));
        }
    }
    Ok(())
}

/// Where the frozen weights go and the dtype the model computes in.
#[derive(Debug, Clone)]
pub struct Placement {
    pub device: Device,
    pub dtype: DType,
}

pub(crate) struct GgufTensors {
    path: PathBuf,
    pub gguf: Gguf,
    mode: BaseMode,
    placement: Placement,
    /// Names read so far, to catch tensors the forward would ignore.
    used: BTreeSet<String>,
}

impl GgufTensors {
    /// Opens `path` and checks, before anything loads, that every tensor
    /// has a type the trainer can compute with on the placement's device.
    pub fn open(path: &Path, mode: BaseMode, placement: Placement) -> Result<Self, TrainError> {
        let gguf = Gguf::open(path)?;
        check_types(
            path,
            gguf.header.tensors(),
            mode,
            !placement.device.is_cpu(),
        )?;
        Ok(Self {
            path: path.to_path_buf(),
            gguf,
            mode,
            placement,
            used: BTreeSet::new(),
        })
    }

    pub fn header(&self) -> &GgufFile {
        &self.gguf.header
    }

    /// Fails on any tensor the model did not read: a bias, rope-frequency
    /// table or extra norm we skipped would make the forward silently wrong.
    pub fn ensure_all_used(&self) -> Result<(), TrainError> {
        let mut unused: Vec<&String> = self
            .header()
            .tensors()
            .iter()
            .map(|t| &t.name)
            .filter(|n| !self.used.contains(*n))
            .collect();
        unused.sort();
        match unused.first() {
            None => Ok(()),
            Some(first) => Err(TrainError::UnsupportedTensor {
                path: self.path.clone(),
                tensor: (*first).clone(),
                count: unused.len(),
            }),
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.header().tensor(name).is_some()
    }

    /// The tensor's info, checked against the expected candle shape and
    /// marked as used.
    fn info(&mut self, name: &str, expected: &[usize]) -> Result<TensorInfo, TrainError> {
        let info =
            self.header()
                .tensor(name)
                .cloned()
                .ok_or_else(|| TrainError::MissingTensor {
                    path: self.path.clone(),
                    tensor: name.to_owned(),
                })?;
        let found = candle_dims(&info);
        if found != expected {
            return Err(TrainError::TensorShape {
                path: self.path.clone(),
                tensor: name.to_owned(),
                expected: expected.to_vec(),
                found,
            });
        }
        self.used.insert(name.to_owned());
        Ok(info)
    }

    fn dequantized(&mut self, name: &str, expected: &[usize]) -> Result<Tensor, TrainError> {
        let info = self.info(name, expected)?;
        let q = self.gguf.qtensor(&info)?;
        q.dequantize(&Device::Cpu)
            .map_err(|e| read_error(&self.path, name, e))
    }

    /// A frozen matrix in the requested base mode, on the placement's device.
    pub fn frozen(&mut self, name: &str, expected: [usize; 2]) -> Result<FrozenWeight, TrainError> {
        let info = self.info(name, &expected)?;
        let (dtype, bytes) = self.gguf.raw(&info)?;
        self.place(dtype, &bytes, expected.to_vec())
            .map_err(|e| read_error(&self.path, name, e))
    }

    /// A frozen matrix kept on the host whatever the device: the embedding,
    /// of which a pass needs only the rows of its tokens (gathered there,
    /// then copied to the device).
    pub fn host_frozen(
        &mut self,
        name: &str,
        expected: [usize; 2],
    ) -> Result<FrozenWeight, TrainError> {
        Ok(match self.mode {
            BaseMode::Quantized => {
                let info = self.info(name, &expected)?;
                FrozenWeight::Quantized(Arc::new(self.gguf.qtensor(&info)?))
            }
            BaseMode::Dequantized => FrozenWeight::Dense(self.dequantized(name, &expected)?),
        })
    }

    /// A frozen matrix cut into blocks of `block_rows` rows, each placed as
    /// [`Self::frozen`] places a whole matrix: the head on a GPU, of which
    /// a pass dequantizes one block at a time.
    pub fn frozen_rows(
        &mut self,
        name: &str,
        expected: [usize; 2],
        block_rows: usize,
    ) -> Result<FrozenWeight, TrainError> {
        let info = self.info(name, &expected)?;
        let (dtype, bytes) = self.gguf.raw(&info)?;
        let [rows, cols] = expected;
        let row_bytes = cols / dtype.block_size() * dtype.type_size();
        let block_rows = block_rows.max(1);
        let blocks = (0..rows)
            .step_by(block_rows)
            .map(|start| {
                let len = block_rows.min(rows - start);
                let bytes = &bytes[start * row_bytes..(start + len) * row_bytes];
                self.place(dtype, bytes, vec![len, cols])
            })
            .collect::<candle_core::Result<Vec<_>>>()
            .map_err(|e| read_error(&self.path, name, e))?;
        Ok(FrozenWeight::Rows(Arc::new(RowBlocks::new(
            blocks, block_rows, rows, cols,
        ))))
    }

    /// Stored bytes of a (rows, cols) matrix as the base mode and device
    /// want them. On the CPU: the QTensor, or f32. On a GPU: quantized
    /// blocks uploaded as they are (candle dequantizes them there), float
    /// types as dense tensors of their own type; dequantized mode computes
    /// the dense matrix on the GPU, in the compute dtype.
    fn place(
        &self,
        dtype: GgmlDType,
        bytes: &[u8],
        dims: Vec<usize>,
    ) -> candle_core::Result<FrozenWeight> {
        let Placement {
            device,
            dtype: compute,
        } = &self.placement;
        let host = || ggml_file::qtensor_from_ggml(dtype, bytes, dims.clone(), &Device::Cpu);
        Ok(match (self.mode, device.is_cpu()) {
            (BaseMode::Quantized, true) => FrozenWeight::Quantized(Arc::new(host()?)),
            (BaseMode::Dequantized, true) => FrozenWeight::Dense(host()?.dequantize(&Device::Cpu)?),
            (mode, false) if is_float(dtype) => {
                let keep = match (mode, dtype) {
                    (BaseMode::Dequantized, _) => *compute,
                    (_, GgmlDType::F16) => DType::F16,
                    (_, GgmlDType::BF16) => DType::BF16,
                    _ => DType::F32,
                };
                let dense = host()?.dequantize(&Device::Cpu)?.to_dtype(keep)?;
                FrozenWeight::Dense(dense.to_device(device)?)
            }
            (mode, false) => {
                let q = ggml_file::qtensor_from_ggml(dtype, bytes, dims, device)?;
                let q = FrozenWeight::Quantized(Arc::new(q));
                match mode {
                    BaseMode::Quantized => q,
                    BaseMode::Dequantized => FrozenWeight::Dense(q.dense(*compute, device)?),
                }
            }
        })
    }

    /// A norm weight, its portable copy on the placement's device.
    pub fn norm(&mut self, name: &str, n: usize, eps: f64) -> Result<RmsNorm, TrainError> {
        let weight = self.dequantized(name, &[n])?.to_vec1::<f32>()?;
        Ok(RmsNorm::new(weight, eps)?.placed_on(&self.placement.device)?)
    }

    /// A bias as a (n,) f32 tensor on the placement's device, if the file
    /// has it.
    pub fn optional_bias(&mut self, name: &str, n: usize) -> Result<Option<Tensor>, TrainError> {
        if self.has(name) {
            let bias = self.dequantized(name, &[n])?;
            Ok(Some(bias.to_device(&self.placement.device)?))
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(name: &str, ggml_type: GgmlType) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            dims: vec![32, 2],
            ggml_type,
            offset: 0,
            n_bytes: 0,
        }
    }

    #[test]
    fn types_the_trainer_cannot_use_are_named_before_anything_loads() {
        let path = Path::new("m.gguf");
        let ok = [tensor("a", GgmlType::Q4_K), tensor("b", GgmlType::F16)];
        assert!(check_types(path, &ok, BaseMode::Quantized, true).is_ok());

        let iq = [
            tensor("a", GgmlType::Q4_K),
            tensor("blk.0.ffn_up.weight", GgmlType::IQ4_NL),
        ];
        let message =
            |r: Result<(), TrainError>| r.err().map(|e| e.to_string()).unwrap_or_default();
        let msg = message(check_types(path, &iq, BaseMode::Dequantized, false));
        assert!(
            msg.contains("blk.0.ffn_up.weight") && msg.contains("IQ4_NL"),
            "{msg}"
        );
        assert!(msg.contains("llama-quantize"), "{msg}");

        // Q8_1 has no CUDA dequantize kernel: refused quantized on a GPU,
        // fine dequantized there and anywhere on the CPU.
        let q81 = [tensor("token_embd.weight", GgmlType::Q8_1)];
        let msg = message(check_types(path, &q81, BaseMode::Quantized, true));
        assert!(
            msg.contains("token_embd.weight") && msg.contains("train.base = 'dequantized'"),
            "{msg}"
        );
        assert!(check_types(path, &q81, BaseMode::Dequantized, true).is_ok());
        assert!(check_types(path, &q81, BaseMode::Quantized, false).is_ok());
    }
}
