//! The engine thread: owns the model, its context and the loaded adapters.
//!
//! A context borrows the model, but loading an adapter needs the model
//! mutably. The loop therefore serves requests with a context until an
//! adapter load arrives, drops the context, loads, and builds a new one.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::model::{LlamaLoraAdapter, LlamaModel};

use super::load::{self, Loaded};
use super::session::Session;
use super::{LocalEngineOptions, llama};
use crate::{AdapterInfo, EngineError, ModelInfo, Provenance};

pub use crate::command::{Command, Reply};

/// State shared between the handle and the thread.
pub struct Shared {
    /// Bumped by `cancel()`: requests from an older epoch stop.
    pub cancel_epoch: AtomicU64,
}

/// Adapters stay loaded as long as the model: llama.cpp frees them only with it.
#[derive(Default)]
struct Adapters {
    loaded: HashMap<PathBuf, (LlamaLoraAdapter, String)>,
    active: Option<AdapterInfo>,
}

pub fn run(
    options: LocalEngineOptions,
    commands: mpsc::Receiver<Command>,
    ready: mpsc::Sender<Result<ModelInfo, EngineError>>,
    shared: Arc<Shared>,
) {
    let Loaded { mut model, info } = match load::load_model(&options) {
        Ok(loaded) => loaded,
        Err(err) => {
            let _ = ready.send(Err(err));
            return;
        }
    };
    let mut adapters = Adapters::default();
    let mut ready = Some(ready);
    loop {
        let session = match new_session(&model, &options, &mut adapters) {
            Ok(session) => session,
            Err(err) => {
                tracing::error!("{err}");
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(err));
                }
                return;
            }
        };
        if let Some(ready) = ready.take() {
            let _ = ready.send(Ok(info.clone()));
        }
        let Some((path, scale, reply)) = serve(session, &commands, &shared, &info, &mut adapters)
        else {
            return;
        };
        // No context exists now, so the model can be borrowed mutably.
        let result = init_adapter(&mut model, &info, &path, &mut adapters).map(|sha256| {
            let active = AdapterInfo {
                path,
                scale,
                sha256,
            };
            adapters.active = Some(active.clone());
            active
        });
        let _ = reply.send(result);
    }
}

fn new_session<'m>(
    model: &'m LlamaModel,
    options: &LocalEngineOptions,
    adapters: &mut Adapters,
) -> Result<Session<'m>, EngineError> {
    let threads = options.effective_threads() as i32;
    let n_batch = options.n_batch.min(options.n_ctx).max(1);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(options.n_ctx))
        .with_n_batch(n_batch)
        .with_n_ubatch(n_batch)
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
        .with_flash_attention_policy(options.flash_attention.policy());
    let n_seq_max = options.parallel_sequences.max(1);
    // Only groups get the multi-sequence context: the chat's stays as it was.
    // Unified, so a prompt copied to every sequence shares its cells (a copy
    // between separate per-sequence caches would move the data).
    let params = if n_seq_max > 1 {
        params.with_n_seq_max(n_seq_max).with_kv_unified(true)
    } else {
        params
    };
    let backend = llama::backend()?;
    let mut ctx = model
        .new_context(backend, params)
        .map_err(|e| EngineError::Context {
            n_ctx: options.n_ctx,
            reason: e.to_string(),
        })?;
    if let Some(active) = &adapters.active
        && let Some((adapter, _)) = adapters.loaded.get_mut(&active.path)
    {
        ctx.lora_adapter_set(adapter, active.scale)
            .map_err(|e| EngineError::Adapter {
                path: active.path.clone(),
                reason: e.to_string(),
            })?;
    }
    Ok(Session {
        model,
        ctx,
        cached: Vec::new(),
        n_ctx: options.n_ctx as usize,
        n_batch: n_batch as usize,
        n_seq_max: n_seq_max as usize,
    })
}

/// Serves commands until the queue closes (`None`) or an adapter that is not
/// loaded yet is asked for (returned, to be loaded without a context).
fn serve(
    mut session: Session<'_>,
    commands: &mpsc::Receiver<Command>,
    shared: &Shared,
    info: &ModelInfo,
    adapters: &mut Adapters,
) -> Option<(PathBuf, f32, Reply<AdapterInfo>)> {
    while let Ok(command) = commands.recv() {
        match command {
            Command::Generate {
                request,
                events,
                epoch,
                received,
            } => {
                let provenance = Provenance {
                    model: info.name.clone(),
                    model_fingerprint: info.fingerprint.clone(),
                    adapter: adapters.active.clone(),
                    seed: request.sampling.seed,
                    prompt_sha256: String::new(),
                    prompt_tokens_sha256: String::new(),
                    dropped_turns: 0,
                    sampling: Some(request.sampling.clone()),
                    unapplied: Vec::new(),
                };
                session.generate(&request, &events, shared, epoch, provenance, received);
            }
            Command::GenerateGroup {
                request,
                epoch,
                received,
                reply,
            } => {
                let provenance = Provenance {
                    model: info.name.clone(),
                    model_fingerprint: info.fingerprint.clone(),
                    adapter: adapters.active.clone(),
                    seed: 0,
                    prompt_sha256: String::new(),
                    prompt_tokens_sha256: String::new(),
                    dropped_turns: 0,
                    sampling: Some(request.sampling.clone()),
                    unapplied: Vec::new(),
                };
                let cancelled =
                    || shared.cancel_epoch.load(Ordering::SeqCst) != epoch || reply.is_closed();
                let result = session.generate_group(&request, cancelled, &provenance, received);
                let _ = reply.send(result);
            }
            Command::Score {
                prompt,
                completion,
                reply,
            } => {
                let _ = reply.send(session.score(&prompt, &completion));
            }
            Command::Tokenize { text, reply } => {
                let ids = session.tokenize(&text, false).iter().map(|t| t.0).collect();
                let _ = reply.send(Ok(ids));
            }
            Command::LoadAdapter { path, scale, reply } => {
                let key = load::canonical(&path);
                let Some((adapter, sha256)) = adapters.loaded.get_mut(&key) else {
                    return Some((key, scale, reply));
                };
                // Already loaded: switch in place. The cache was computed with other weights.
                let result = session
                    .ctx
                    .lora_adapter_set(adapter, scale)
                    .map(|()| AdapterInfo {
                        path: key.clone(),
                        scale,
                        sha256: sha256.clone(),
                    })
                    .map_err(|e| EngineError::Adapter {
                        path: key,
                        reason: e.to_string(),
                    });
                session.reset();
                if let Ok(active) = &result {
                    adapters.active = Some(active.clone());
                }
                let _ = reply.send(result);
            }
            Command::ClearAdapter { reply } => {
                let result = match adapters.active.take() {
                    Some(active) => match adapters.loaded.get_mut(&active.path) {
                        Some((adapter, _)) => {
                            session.ctx.lora_adapter_remove(adapter).map_err(|e| {
                                EngineError::Adapter {
                                    path: active.path.clone(),
                                    reason: e.to_string(),
                                }
                            })
                        }
                        None => Ok(()),
                    },
                    None => Ok(()),
                };
                session.reset();
                let _ = reply.send(result);
            }
        }
    }
    None
}

fn init_adapter(
    model: &mut LlamaModel,
    info: &ModelInfo,
    path: &PathBuf,
    adapters: &mut Adapters,
) -> Result<String, EngineError> {
    load::check_adapter_file(path, &info.architecture)?;
    let sha256 = load::sha256_file(path).map_err(|e| EngineError::Adapter {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let adapter = model
        .lora_adapter_init(path)
        .map_err(|e| EngineError::Adapter {
            path: path.clone(),
            reason: format!("llama.cpp refused it ({e}); details in the log file"),
        })?;
    adapters
        .loaded
        .insert(path.clone(), (adapter, sha256.clone()));
    Ok(sha256)
}
