//! The remote backend: an OpenAI-compatible server (vLLM, llama-server…)
//! behind the same [`Backend`] trait as the local engine.
//!
//! Prompts are rendered here exactly as for llama.cpp and sent raw to
//! `/v1/completions` (never the chat endpoint), so the `<system_thinking>`
//! prefill and the HER layout reach the model untouched. A runtime thread of
//! its own serves one command at a time, in order, like the local engine's
//! thread; callers get the same events, results and errors.

mod adapters;
mod cancel;
mod error;
mod generate;
mod http;
mod probe;
mod probs;
mod samplers;
mod score;
pub mod sse;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

pub use error::RemoteError;
pub use http::{ApiKey, MASK, Redactor, redact};

use adapters::Active;
use cancel::Cancel;
use http::{Http, HttpOptions};
use probe::ServerInfo;
use score::tokenize;

use super::{AdapterInfo, Backend, EngineError, ModelInfo, Provenance};
use crate::command::{Command, CommandQueue};
use her_core::generation::SamplingConfig;

/// Where the server is and how to talk to it.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    pub base_url: String,
    /// "" = the server's first model.
    pub model: String,
    pub api_key: Option<ApiKey>,
    /// The environment variable the key was read from (for error hints).
    pub api_key_env: String,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub retries: u32,
}

impl RemoteOptions {
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: String::new(),
            api_key: None,
            api_key_env: String::new(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(300),
            retries: 3,
        }
    }
}

/// The value of the variable `name`, if it is set and not empty.
pub fn key_from_env(name: &str) -> Option<ApiKey> {
    if name.is_empty() {
        return None;
    }
    std::env::var(name)
        .ok()
        .filter(|k| !k.trim().is_empty())
        .map(|k| ApiKey::new(k.trim()))
}

/// What the worker knows while serving commands.
pub(crate) struct Ctx {
    http: Arc<Http>,
    server: ServerInfo,
    active: Active,
    adapter: Option<AdapterInfo>,
}

impl Ctx {
    /// The model requests name: a vLLM LoRA module replaces the base model.
    fn model_name(&self) -> String {
        match &self.active {
            Active::Model(name) => name.clone(),
            _ => self.server.model.clone(),
        }
    }

    fn provenance(&self, sampling: &SamplingConfig) -> Provenance {
        Provenance {
            model: self.model_name(),
            model_fingerprint: self.server.info.fingerprint.clone(),
            adapter: self.adapter.clone(),
            seed: sampling.seed,
            prompt_sha256: String::new(),
            prompt_tokens_sha256: String::new(),
            dropped_turns: 0,
            sampling: Some(sampling.clone()),
            unapplied: Vec::new(),
        }
    }
}

/// A connection to an OpenAI-compatible server.
pub struct RemoteEngine {
    runtime: Option<tokio::runtime::Runtime>,
    commands: mpsc::UnboundedSender<Command>,
    epochs: watch::Sender<u64>,
    info: ModelInfo,
}

impl RemoteEngine {
    /// Connects (blocking): lists the models, checks the configured one is
    /// served, and finds out what the server offers besides the OpenAI routes.
    pub fn start(options: RemoteOptions) -> Result<Self, EngineError> {
        let http = Arc::new(Http::new(HttpOptions {
            base_url: options.base_url.clone(),
            api_key: options.api_key.clone(),
            api_key_env: options.api_key_env.clone(),
            connect_timeout: options.connect_timeout,
            read_timeout: options.read_timeout,
            retries: options.retries,
        })?);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("her-remote")
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Unreachable {
                url: http.base_shown(),
                reason: format!("cannot start the network thread: {e}"),
            })?;
        // Waiting on a std channel (not block_on) works from inside another runtime too.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let probe_http = Arc::clone(&http);
        let model = options.model.clone();
        runtime.spawn(async move {
            let _ = ready_tx.send(probe::probe(&probe_http, &model).await);
        });
        let server = ready_rx.recv().map_err(|_| EngineError::EngineStopped)??;
        let info = server.info.clone();
        let (commands, rx) = mpsc::unbounded_channel();
        let (epochs, epoch_rx) = watch::channel(0u64);
        let ctx = Ctx {
            http,
            server,
            active: Active::Base,
            adapter: None,
        };
        runtime.spawn(serve(ctx, rx, epoch_rx));
        Ok(Self {
            runtime: Some(runtime),
            commands,
            epochs,
            info,
        })
    }
}

/// Serves commands one at a time, in the order they were sent.
async fn serve(
    mut ctx: Ctx,
    mut commands: mpsc::UnboundedReceiver<Command>,
    epochs: watch::Receiver<u64>,
) {
    while let Some(command) = commands.recv().await {
        match command {
            Command::Generate {
                request,
                events,
                epoch,
                received,
            } => {
                let cancel = Cancel::new(epochs.clone(), epoch, events.clone());
                generate::generate(&ctx, request, &events, cancel, received).await;
            }
            Command::GenerateGroup { reply, .. } => {
                let _ = reply.send(Err(EngineError::Unsupported(
                    "generating a group of replies",
                )));
            }
            Command::Score {
                prompt,
                completion,
                reply,
            } => {
                let _ = reply.send(score::score(&ctx, &prompt, &completion).await);
            }
            Command::Tokenize { text, reply } => {
                let model = ctx.model_name();
                let result = tokenize(&ctx.http, ctx.server.flavour, &model, &text, false).await;
                let _ = reply.send(result.map_err(EngineError::from));
            }
            Command::LoadAdapter { path, scale, reply } => {
                let result = adapters::load(
                    &ctx.http,
                    ctx.server.flavour,
                    &ctx.server.models,
                    &path,
                    scale,
                )
                .await;
                let result = result.map(|(active, info)| {
                    ctx.active = active;
                    ctx.adapter = Some(info.clone());
                    info
                });
                let _ = reply.send(result);
            }
            Command::ClearAdapter { reply } => {
                let result = adapters::clear(&ctx.http, ctx.server.flavour).await;
                if result.is_ok() {
                    ctx.active = Active::Base;
                    ctx.adapter = None;
                }
                let _ = reply.send(result);
            }
        }
    }
}

impl CommandQueue for RemoteEngine {
    fn send(&self, command: Command) -> Result<(), EngineError> {
        self.commands
            .send(command)
            .map_err(|_| EngineError::EngineStopped)
    }

    fn epoch(&self) -> u64 {
        *self.epochs.borrow()
    }

    fn bump_epoch(&self) {
        self.epochs.send_modify(|e| *e += 1);
    }

    fn info(&self) -> ModelInfo {
        self.info.clone()
    }
}

impl Drop for RemoteEngine {
    fn drop(&mut self) {
        self.cancel();
        // Never blocks, so dropping inside another runtime is fine; open
        // connections close and the server stops generating.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
