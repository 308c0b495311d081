//! The result of [`crate::inspect`]: header data and accessors.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use her_core::fsutil::IoError;

use crate::GgufError;
use crate::types::{GgmlType, llama_ftype_name};
use crate::value::{GgufArray, GgufValue};

/// One tensor described in the header.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions in GGUF `ne` order (fastest-varying first; a PyTorch
    /// (out, in) weight has `[in, out]`).
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset of the data relative to the start of the data section.
    pub offset: u64,
    /// Size of the data in bytes (without alignment padding).
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().fold(1u64, |acc, &d| acc.saturating_mul(d))
    }
}

/// The parsed header of a GGUF file.
#[derive(Debug, Clone)]
pub struct GgufFile {
    pub(crate) path: PathBuf,
    pub(crate) version: u32,
    pub(crate) file_size: u64,
    pub(crate) alignment: u64,
    pub(crate) data_offset: u64,
    pub(crate) data_end: u64,
    pub(crate) kvs: Vec<(String, GgufValue)>,
    pub(crate) tensors: Vec<TensorInfo>,
}

impl GgufFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// GGUF format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Size of the file in bytes.
    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    /// Tensor data alignment (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute offset of the tensor data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// End of the last tensor's data, relative to `data_offset`.
    pub fn data_len(&self) -> u64 {
        self.data_end
    }

    /// Metadata in file order.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, &GgufValue)> {
        self.kvs.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn metadata_len(&self) -> usize {
        self.kvs.len()
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.kvs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)?.as_str()
    }

    /// Any integer value that fits in a u32.
    pub fn get_u32(&self, key: &str) -> Option<u32> {
        u32::try_from(self.get(key)?.as_i128()?).ok()
    }

    /// Any integer value that fits in a u64.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        u64::try_from(self.get(key)?.as_i128()?).ok()
    }

    /// An f32 or f64 value (f64 narrowed).
    pub fn get_f32(&self, key: &str) -> Option<f32> {
        match *self.get(key)? {
            GgufValue::F32(v) => Some(v),
            GgufValue::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    pub fn get_bool(&self, key: &str) -> Option<bool> {
        match *self.get(key)? {
            GgufValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn get_array(&self, key: &str) -> Option<&GgufArray> {
        match self.get(key)? {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn get_str_array(&self, key: &str) -> Option<&[String]> {
        match self.get_array(key)? {
            GgufArray::String(v) => Some(v),
            _ => None,
        }
    }

    /// `general.architecture`, e.g. "llama" or "qwen3".
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    /// An architecture-scoped integer, e.g. `arch_u32("block_count")` reads
    /// `qwen3.block_count`.
    pub fn arch_u32(&self, suffix: &str) -> Option<u32> {
        self.get_u32(&format!("{}.{suffix}", self.architecture()?))
    }

    /// `general.file_type` as a raw llama.cpp `LLAMA_FTYPE` value.
    pub fn file_type(&self) -> Option<u32> {
        self.get_u32("general.file_type")
    }

    /// `general.file_type` as a name, e.g. "Q4_1"; `None` if absent or unknown.
    pub fn file_type_name(&self) -> Option<&'static str> {
        llama_ftype_name(self.file_type()?)
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The stored bytes of `tensor` (one of this header's), read from
    /// `file`, this file opened by the caller. Bounded: [`crate::inspect`]
    /// checked every tensor's extent against the file's size; a file that
    /// changed since is an error, never a longer read.
    pub fn read_tensor_data(
        &self,
        file: &mut (impl Read + Seek),
        tensor: &TensorInfo,
    ) -> Result<Vec<u8>, GgufError> {
        let malformed = || GgufError::Malformed {
            path: self.path.clone(),
            detail: format!("tensor '{}' is not in this file's data", tensor.name),
        };
        let end = tensor
            .offset
            .checked_add(tensor.n_bytes)
            .filter(|&end| end <= self.data_end)
            .ok_or_else(malformed)?;
        let len = usize::try_from(end - tensor.offset).map_err(|_| malformed())?;
        let io_err = |cause| GgufError::Io(IoError::new("read", &self.path, cause));
        file.seek(SeekFrom::Start(self.data_offset + tensor.offset))
            .map_err(io_err)?;
        let mut bytes = vec![0u8; len];
        file.read_exact(&mut bytes).map_err(io_err)?;
        Ok(bytes)
    }

    /// Number of tensors per ggml type name, e.g. {"F32": 61, "Q4_1": 211}.
    pub fn tensor_type_summary(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for t in &self.tensors {
            *out.entry(t.ggml_type.name()).or_insert(0) += 1;
        }
        out
    }

    /// Total number of tensor elements (weights).
    pub fn parameter_count(&self) -> u64 {
        self.tensors
            .iter()
            .fold(0u64, |acc, t| acc.saturating_add(t.n_elements()))
    }
}
