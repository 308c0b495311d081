//! Engine errors: each names the file or value at fault and how to fix it.

use std::path::PathBuf;

use thiserror::Error;

use her_gguf::GgufError;

#[derive(Debug, Clone, Error)]
pub enum EngineError {
    #[error(
        "model file '{path}' does not exist; run `scripts/setup.sh` for the default model or set model.path (config.toml, HER_MODEL_PATH or --model)"
    )]
    ModelMissing { path: PathBuf },

    #[error("{0}")]
    BadModelFile(String),

    #[error(
        "model '{path}' has architecture '{architecture}', which her-studio does not run; supported: {supported}"
    )]
    UnsupportedArchitecture {
        path: PathBuf,
        architecture: String,
        supported: String,
    },

    #[error("llama.cpp could not load '{path}': {reason} (details in the log file)")]
    ModelLoad { path: PathBuf, reason: String },

    #[error("llama.cpp could not create a context of {n_ctx} tokens: {reason}")]
    Context { n_ctx: u32, reason: String },

    #[error(
        "the prompt needs {prompt_tokens} tokens but the context window (model.n_ctx) holds {n_ctx}; raise model.n_ctx or shorten the character's profile"
    )]
    PromptTooLong { prompt_tokens: usize, n_ctx: usize },

    #[error("invalid sampling setting: {0}")]
    InvalidSampling(String),

    #[error("adapter '{path}': {reason}")]
    Adapter { path: PathBuf, reason: String },

    #[error("llama.cpp failed while evaluating tokens: {0}")]
    Decode(String),

    #[error(
        "a group of {asked} replies needs {asked} parallel sequences but this engine has {max}; start it with LocalEngineOptions::parallel_sequences >= {asked}"
    )]
    TooManySequences { asked: usize, max: usize },

    #[error("{0} is not supported by this backend")]
    Unsupported(&'static str),

    #[error("the engine thread has stopped (see the log file)")]
    EngineStopped,

    #[error(transparent)]
    Remote(#[from] super::remote::RemoteError),
}

impl From<GgufError> for EngineError {
    fn from(err: GgufError) -> Self {
        Self::BadModelFile(err.to_string())
    }
}
