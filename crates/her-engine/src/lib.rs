//! The inference engine: a [`Backend`] trait, the llama.cpp and
//! OpenAI-compatible implementations, and the dialogue layer on top of them.
//!
//! Callers build a [`GenerateRequest`] and receive an [`EventStream`] of text
//! pieces, live statistics and a final [`Finished`] event. Everything that
//! touches llama.cpp lives on one dedicated thread (see [`local`]); an
//! OpenAI-compatible server is reached through [`remote`].

mod command;
pub mod detok;
pub mod dialogue;
mod error;
pub mod fit;
pub mod local;
pub mod remote;
mod reply;
pub mod stop;
mod types;

pub use error::EngineError;
pub use local::{FlashAttention, LocalEngine, LocalEngineOptions};
pub use remote::{RemoteEngine, RemoteError, RemoteOptions};
pub use reply::{EventStream, Pending};
pub use types::*;

use std::path::PathBuf;

/// What every backend offers: local llama.cpp or a remote
/// OpenAI-compatible server. Methods return at once; results arrive
/// through the returned stream or future, so callers never block a UI thread.
pub trait Backend: Send + Sync {
    /// Starts a generation. Requests are served in order.
    fn generate(&self, request: GenerateRequest) -> EventStream;
    /// Cancels the running generation and any queued before this call.
    fn cancel(&self);
    /// Per-token log-probabilities of `completion` following `prompt`.
    fn score(&self, prompt: String, completion: String) -> Pending<Vec<TokenLogprob>>;
    /// Token ids of `text` as the model would see it in a prompt.
    fn tokenize(&self, text: String) -> Pending<Vec<i32>>;
    /// Makes a LoRA adapter active for every following request.
    fn load_adapter(&self, path: PathBuf, scale: f32) -> Pending<AdapterInfo>;
    /// Returns to the bare base model.
    fn clear_adapter(&self) -> Pending<()>;
    /// What is loaded and where it runs.
    fn model_info(&self) -> ModelInfo;
}
