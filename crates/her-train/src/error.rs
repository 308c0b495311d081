//! Training errors: each names the file, tensor or value at fault.

use her_core::fsutil::IoError;
use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TrainError {
    #[error(transparent)]
    Io(#[from] IoError),

    /// Not a GGUF, truncated or malformed: her-gguf's message names the file.
    #[error(transparent)]
    Gguf(her_gguf::GgufError),

    #[error(
        "'{}' has architecture '{arch}', which the trainer does not support (supported: llama, qwen2, qwen3)",
        path.display()
    )]
    UnsupportedArch { path: PathBuf, arch: String },

    #[error("'{}' lacks the metadata key '{key}'", path.display())]
    MissingMetadata { path: PathBuf, key: String },

    #[error("'{}': metadata '{key}' has the unusable value '{value}': {detail}", path.display())]
    BadMetadata {
        path: PathBuf,
        key: String,
        value: String,
        detail: String,
    },

    #[error("'{}' lacks the tensor '{tensor}'", path.display())]
    MissingTensor { path: PathBuf, tensor: String },

    #[error("'{}': tensor '{tensor}' has shape '{found:?}', expected '{expected:?}'", path.display())]
    TensorShape {
        path: PathBuf,
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    #[error(
        "'{}' has tensor '{tensor}' ({count} unused in all), which the trainer's forward does not use: this model variant is not supported",
        path.display()
    )]
    UnsupportedTensor {
        path: PathBuf,
        tensor: String,
        count: usize,
    },

    #[error("'{}': cannot read tensor '{tensor}': {detail}", path.display())]
    TensorRead {
        path: PathBuf,
        tensor: String,
        detail: String,
    },

    #[error("'{}': tensor '{tensor}' has type {ggml_type}: {detail}", path.display())]
    UnsupportedType {
        path: PathBuf,
        tensor: String,
        ggml_type: String,
        detail: String,
    },

    #[error("invalid LoRA setting '{field}' = '{value}': {detail}")]
    InvalidLora {
        field: &'static str,
        value: String,
        detail: String,
    },

    #[error(
        "unknown LoRA target '{value}' (use q, k, v, o, gate, up, down or their PEFT names such as self_attn.q_proj)"
    )]
    UnknownTarget { value: String },

    #[error("LoRA adapter '{}': {detail}", path.display())]
    LoraFile { path: PathBuf, detail: String },

    #[error("no LoRA is attached: call attach_lora first")]
    NoLora,

    #[error("bad training input '{what}': {detail}")]
    Input { what: &'static str, detail: String },

    #[error("tensor computation failed: {0}")]
    Candle(candle_core::Error),

    /// The memory plan says the run would run out of memory: refused
    /// before the model loads, with the table and what would fit.
    #[error(
        "this run does not fit in memory; change the settings (or train.memory_limit_gib) and start again\n{0}"
    )]
    DoesNotFit(Box<crate::plan::PlanReport>),
}

// By hand, not `#[from]`: the message already shows the cause, so it must
// not also be the `source()` (an error chain would print it twice).
impl From<candle_core::Error> for TrainError {
    fn from(cause: candle_core::Error) -> Self {
        Self::Candle(cause)
    }
}

/// Why a training run (SFT, DPO, KTO, or RL's update side) failed: the one
/// error type of the training loop.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Model(#[from] TrainError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenizer::TokenizerError),
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error(transparent)]
    Run(#[from] crate::run::RunError),
    #[error(transparent)]
    Peft(#[from] crate::peft::PeftError),
    #[error(transparent)]
    Diverged(#[from] crate::guard::Diverged),
    #[error(transparent)]
    NonFiniteWrite(#[from] crate::guard::NonFiniteWrite),
    #[error("{0}")]
    Setup(String),
}
