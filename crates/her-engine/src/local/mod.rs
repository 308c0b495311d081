//! The llama.cpp backend: a handle that sends commands to one engine thread.

mod banned;
pub mod bare;
mod flash;
mod group;
mod llama;
mod load;
pub mod sampler;
mod session;
mod vocab;
mod worker;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Instant;

pub use flash::FlashAttention;
pub use llama::{backend, devices, supports_gpu_offload};
pub use load::{SUPPORTED_ARCHITECTURES, check_model_file, fingerprint, sha256_file};
pub use session::{log_softmax_at, tokens_sha256};
pub use vocab::Vocab;

use crate::command::CommandQueue;
use worker::{Command, Shared};

use super::{Backend, EngineError, GroupReply, GroupRequest, ModelInfo, Pending};
use her_core::generation::SamplingConfig;

/// llama.cpp's limit on sequences per context (`LLAMA_MAX_SEQ`).
pub const MAX_PARALLEL_SEQUENCES: u32 = 256;

/// How to load the model and size its context.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalEngineOptions {
    pub model_path: PathBuf,
    /// Layers to offload to the GPU (needs the `cuda` build).
    pub n_gpu_layers: u32,
    pub n_ctx: u32,
    pub n_batch: u32,
    /// 0 = one per available core.
    pub threads: u32,
    pub use_mmap: bool,
    /// Flash attention in every context (see [`FlashAttention`]).
    pub flash_attention: FlashAttention,
    /// Sequences one context can decode together (`generate_group`). 1, the
    /// chat's, keeps the plain single-sequence context; more makes a unified
    /// KV cache of `n_ctx` cells shared by all sequences.
    pub parallel_sequences: u32,
}

impl LocalEngineOptions {
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        Self {
            model_path: model_path.into(),
            n_gpu_layers: 0,
            n_ctx: 4096,
            n_batch: 512,
            threads: 0,
            use_mmap: true,
            flash_attention: FlashAttention::Auto,
            parallel_sequences: 1,
        }
    }

    /// Options for decoding groups of `group` replies of at most
    /// `max_new_tokens` each: a prompt that fits the single-sequence window
    /// still fits, as the prompt's cells are shared and each extra sequence
    /// only needs room for its reply.
    pub fn for_groups(&self, group: u32, max_new_tokens: u32) -> Self {
        let group = group.clamp(1, MAX_PARALLEL_SEQUENCES);
        let extra = (group - 1).saturating_mul(max_new_tokens);
        Self {
            n_ctx: self.n_ctx.saturating_add(extra),
            // One decode carries a token of every sequence.
            n_batch: self.n_batch.max(group),
            parallel_sequences: group,
            ..self.clone()
        }
    }

    pub fn effective_threads(&self) -> u32 {
        if self.threads > 0 {
            return self.threads;
        }
        std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
    }
}

/// Runs a GGUF model with llama.cpp on a dedicated thread.
pub struct LocalEngine {
    commands: Mutex<Option<mpsc::Sender<Command>>>,
    shared: Arc<Shared>,
    info: ModelInfo,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl LocalEngine {
    /// Loads the model (blocking) and starts the engine thread.
    pub fn start(options: LocalEngineOptions) -> Result<Self, EngineError> {
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            cancel_epoch: AtomicU64::new(0),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("her-engine".into())
            .spawn(move || worker::run(options, rx, ready_tx, thread_shared))
            .map_err(|e| EngineError::ModelLoad {
                path: PathBuf::new(),
                reason: format!("cannot start the engine thread: {e}"),
            })?;
        let info = match ready_rx.recv() {
            Ok(Ok(info)) => info,
            Ok(Err(err)) => {
                let _ = thread.join();
                return Err(err);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(EngineError::EngineStopped);
            }
        };
        Ok(Self {
            commands: Mutex::new(Some(tx)),
            shared,
            info,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// One reply per seed to `prompt`, decoded together as parallel
    /// sequences (the prompt is evaluated once): what RL rollouts need.
    /// Each member samples with its own chain seeded from its seed; the same
    /// prompt, settings and seeds give the same replies (a member's numbers
    /// can depend on its neighbours in the KV cache, so not on its seed
    /// alone). The engine must have been started with
    /// `parallel_sequences >= seeds.len()`. `cancel()` stops the group: the
    /// unfinished members end with `FinishReason::Cancelled`.
    pub fn generate_group(
        &self,
        prompt: String,
        sampling: SamplingConfig,
        seeds: Vec<u32>,
    ) -> Pending<Vec<GroupReply>> {
        let epoch = self.epoch();
        let request = GroupRequest {
            prompt,
            sampling,
            seeds,
        };
        self.request(|reply| Command::GenerateGroup {
            request,
            epoch,
            received: Instant::now(),
            reply,
        })
    }
}

impl CommandQueue for LocalEngine {
    fn send(&self, command: Command) -> Result<(), EngineError> {
        let guard = self
            .commands
            .lock()
            .map_err(|_| EngineError::EngineStopped)?;
        guard
            .as_ref()
            .ok_or(EngineError::EngineStopped)?
            .send(command)
            .map_err(|_| EngineError::EngineStopped)
    }

    fn epoch(&self) -> u64 {
        self.shared.cancel_epoch.load(Ordering::SeqCst)
    }

    fn bump_epoch(&self) {
        self.shared.cancel_epoch.fetch_add(1, Ordering::SeqCst);
    }

    fn info(&self) -> ModelInfo {
        self.info.clone()
    }
}

impl Drop for LocalEngine {
    fn drop(&mut self) {
        // Stop any running generation, close the queue, and wait so the model's
        // memory is released before the next engine loads.
        self.cancel();
        if let Ok(mut commands) = self.commands.lock() {
            commands.take();
        }
        if let Ok(mut thread) = self.thread.lock()
            && let Some(handle) = thread.take()
        {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_options_make_room_for_every_reply_and_leave_the_chat_alone() {
        let chat = LocalEngineOptions::new("m.gguf");
        assert_eq!(chat.parallel_sequences, 1);
        assert_eq!(chat.for_groups(1, 64), chat);
        let group = chat.for_groups(8, 64);
        assert_eq!(group.parallel_sequences, 8);
        assert_eq!(group.n_ctx, chat.n_ctx + 7 * 64);
        assert_eq!(group.n_batch, chat.n_batch);
        let mut small_batch = chat.clone();
        small_batch.n_batch = 4;
        assert_eq!(small_batch.for_groups(8, 64).n_batch, 8);
        assert_eq!(
            chat.for_groups(10_000, 1).parallel_sequences,
            MAX_PARALLEL_SEQUENCES
        );
    }
}
