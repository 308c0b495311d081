//! Reading base weights from a GGUF file, checking every shape. The header
//! comes from her-gguf (bounded: every tensor's extent was checked against
//! the file size); the stored bytes become candle `QTensor`s.

use her_core::fsutil::IoError;
use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor, ggml_file};
use candle_core::{Device, Tensor};
use her_gguf::{GgmlType, GgufError, GgufFile, TensorInfo};

use super::BaseMode;
use super::frozen::FrozenWeight;
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

    /// The tensor as stored, with candle's dimension order (GGUF's reversed:
    /// (out, in) for a weight).
    pub fn qtensor(&mut self, info: &TensorInfo) -> Result<QTensor, TrainError> {
        let path = self.header.path().to_path_buf();
        let read_error = |detail: String| TrainError::TensorRead {
            path: path.clone(),
            tensor: info.name.clone(),
            detail,
        };
        let dtype = candle_dtype(info.ggml_type).ok_or_else(|| {
            read_error(format!(
                "the trainer cannot compute with type '{}'",
                info.ggml_type
            ))
        })?;
        let bytes = self
            .header
            .read_tensor_data(&mut self.file, info)
            .map_err(gguf_error)?;
        ggml_file::qtensor_from_ggml(dtype, &bytes, candle_dims(info), &Device::Cpu)
            .map_err(|e| read_error(e.to_string()))
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

pub(crate) struct GgufTensors {
    path: PathBuf,
    pub gguf: Gguf,
    mode: BaseMode,
    /// Names read so far, to catch tensors the forward would ignore.
    used: BTreeSet<String>,
}

impl GgufTensors {
    pub fn open(path: &Path, mode: BaseMode) -> Result<Self, TrainError> {
        Ok(Self {
            path: path.to_path_buf(),
            gguf: Gguf::open(path)?,
            mode,
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

    /// The tensor as stored, with its candle shape ((out, in) for a weight).
    fn qtensor(&mut self, name: &str, expected: &[usize]) -> Result<QTensor, TrainError> {
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
        self.gguf.qtensor(&info)
    }

    fn dequantized(&mut self, name: &str, expected: &[usize]) -> Result<Tensor, TrainError> {
        let q = self.qtensor(name, expected)?;
        q.dequantize(&Device::Cpu)
            .map_err(|e| TrainError::TensorRead {
                path: self.path.clone(),
                tensor: name.to_owned(),
                detail: e.to_string(),
            })
    }

    /// A frozen matrix in the requested base mode.
    pub fn frozen(&mut self, name: &str, expected: [usize; 2]) -> Result<FrozenWeight, TrainError> {
        Ok(match self.mode {
            BaseMode::Quantized => {
                FrozenWeight::Quantized(Arc::new(self.qtensor(name, &expected)?))
            }
            BaseMode::Dequantized => FrozenWeight::Dense(self.dequantized(name, &expected)?),
        })
    }

    /// A vector (norm weight) as f32 values.
    pub fn vector(&mut self, name: &str, n: usize) -> Result<Vec<f32>, TrainError> {
        Ok(self.dequantized(name, &[n])?.to_vec1::<f32>()?)
    }

    /// A bias as a (n,) f32 tensor, if the file has it.
    pub fn optional_bias(&mut self, name: &str, n: usize) -> Result<Option<Tensor>, TrainError> {
        if self.has(name) {
            Ok(Some(self.dequantized(name, &[n])?))
        } else {
            Ok(None)
        }
    }
}
