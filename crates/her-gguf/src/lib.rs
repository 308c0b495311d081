//! GGUF files: a header reader for model inspection, a small F32 writer, and
//! tiny random Qwen3 / LoRA fixtures (with a byte-level BPE vocab) for tests.
//!
//! Format reference: ggml's `docs/gguf.md` (versions 2 and 3, little-endian).

mod bpe_corpus;
pub mod file;
pub mod fixture;
pub mod read;
mod rng;
pub mod tokenizer_bpe;
pub mod types;
pub mod value;
pub mod write;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_corrupt;

use her_core::fsutil::IoError;
use std::path::PathBuf;

pub use file::{GgufFile, TensorInfo};
pub use fixture::{LinearShape, TinyModelSpec, write_tiny_lora, write_tiny_qwen3};
pub use read::inspect;
pub use tokenizer_bpe::{BpeVocab, SpecialTokenIds, tiny_bpe_vocab};
pub use types::{GgmlType, llama_ftype_name};
pub use value::{GgufArray, GgufValue};
pub use write::GgufWriter;

/// File magic: the bytes "GGUF".
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// Errors from reading or writing GGUF files; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("'{}' is not a GGUF file ({found}); download a .gguf model or check the path", path.display())]
    NotGguf { path: PathBuf, found: String },
    #[error("'{}' is GGUF version '{version}', which is not supported (only versions 2 and 3 are){}",
        path.display(),
        if *big_endian { "; it looks like a big-endian file, convert it to little-endian" } else { "" })]
    UnsupportedVersion {
        path: PathBuf,
        version: u32,
        big_endian: bool,
    },
    #[error("'{}' is truncated: {detail}; the download is probably incomplete", path.display())]
    Truncated { path: PathBuf, detail: String },
    #[error("'{}' has a malformed GGUF header: {detail}", path.display())]
    Malformed { path: PathBuf, detail: String },
    #[error("'{}': tensor '{tensor}' has unknown ggml type id '{type_id}' (a newer quantization this build does not know?)", path.display())]
    UnknownTensorType {
        path: PathBuf,
        tensor: String,
        type_id: u32,
    },
    #[error("cannot write '{}': {detail}", path.display())]
    InvalidWrite { path: PathBuf, detail: String },
}

impl GgufError {
    /// The file the error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            GgufError::Io(err) => &err.path,
            GgufError::NotGguf { path, .. }
            | GgufError::UnsupportedVersion { path, .. }
            | GgufError::Truncated { path, .. }
            | GgufError::Malformed { path, .. }
            | GgufError::UnknownTensorType { path, .. }
            | GgufError::InvalidWrite { path, .. } => path,
        }
    }
}

/// Round `n` up to a multiple of `align` (a power of two), `None` on overflow.
pub(crate) fn align_up(n: u64, align: u64) -> Option<u64> {
    let mask = align.checked_sub(1)?;
    Some(n.checked_add(mask)? & !mask)
}
