//! Reading base weights from a GGUF file, checking every shape.

use her_core::fsutil::IoError;
use std::collections::BTreeSet;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::QTensor;
use candle_core::quantized::gguf_file::Content;
use candle_core::{Device, Tensor};

use super::BaseMode;
use super::frozen::FrozenWeight;
use crate::error::TrainError;

pub(crate) struct GgufTensors {
    path: PathBuf,
    reader: BufReader<File>,
    pub content: Content,
    mode: BaseMode,
    /// Names read so far, to catch tensors the forward would ignore.
    used: BTreeSet<String>,
}

/// Opens a GGUF (refusing FIFOs and devices) and reads its header; the
/// reader stays positioned for the tensors.
pub(crate) fn read_gguf(path: &Path) -> Result<(BufReader<File>, Content), TrainError> {
    let file = her_core::fsutil::read::open_regular(path)
        .map(|(file, _)| file)
        .map_err(|e| TrainError::Io(IoError::new("open", path.to_path_buf(), e.into())))?;
    let mut reader = BufReader::new(file);
    let content = Content::read(&mut reader).map_err(|e| TrainError::Gguf {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    Ok((reader, content))
}

impl GgufTensors {
    pub fn open(path: &Path, mode: BaseMode) -> Result<Self, TrainError> {
        let (reader, content) = read_gguf(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            reader,
            content,
            mode,
            used: BTreeSet::new(),
        })
    }

    /// Fails on any tensor the model did not read: a bias, rope-frequency
    /// table or extra norm we skipped would make the forward silently wrong.
    pub fn ensure_all_used(&self) -> Result<(), TrainError> {
        let mut unused: Vec<&String> = self
            .content
            .tensor_infos
            .keys()
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
        self.content.tensor_infos.contains_key(name)
    }

    /// The tensor as stored, with its candle shape ((out, in) for a weight).
    fn qtensor(&mut self, name: &str, expected: &[usize]) -> Result<QTensor, TrainError> {
        let info =
            self.content
                .tensor_infos
                .get(name)
                .ok_or_else(|| TrainError::MissingTensor {
                    path: self.path.clone(),
                    tensor: name.to_owned(),
                })?;
        if info.shape.dims() != expected {
            return Err(TrainError::TensorShape {
                path: self.path.clone(),
                tensor: name.to_owned(),
                expected: expected.to_vec(),
                found: info.shape.dims().to_vec(),
            });
        }
        self.used.insert(name.to_owned());
        self.content
            .tensor(&mut self.reader, name, &Device::Cpu)
            .map_err(|e| TrainError::TensorRead {
                path: self.path.clone(),
                tensor: name.to_owned(),
                detail: e.to_string(),
            })
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
