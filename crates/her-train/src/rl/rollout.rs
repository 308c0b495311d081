//! The rollout side of RL: the llama.cpp engine samples the replies with the
//! adapter being trained, which is swapped in after every update; the model
//! is reloaded now and then because llama.cpp frees adapters only with it.
//! A group's replies are decoded together, as parallel sequences of one
//! context (`LocalEngine::generate_group`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use her_core::generation::SamplingConfig;
use her_engine::dialogue::stream_reply;
use her_engine::{
    Backend, EngineError, FinishReason, GenerateRequest, LocalEngine, LocalEngineOptions,
};

/// One sampled reply.
#[derive(Debug, Clone)]
pub struct Sampled {
    /// Text after the prefill.
    pub reply: String,
    /// The sampled ids (a final end-of-generation token not included).
    pub tokens: Vec<i32>,
    pub reason: FinishReason,
    pub seed: u32,
}

/// The engine that writes rollouts, and which adapter file it runs.
pub struct RolloutEngine {
    options: LocalEngineOptions,
    /// `None` only between dropping a model and loading it again.
    engine: Option<LocalEngine>,
    swaps_since_reload: u32,
    reload_every: u32,
    current: Option<PathBuf>,
    pub reloads: u32,
}

impl RolloutEngine {
    /// `options` are the chat's; the engine gets room for `group` parallel
    /// replies of at most `max_new_tokens` each.
    pub fn start(
        options: &LocalEngineOptions,
        group: u32,
        max_new_tokens: u32,
        reload_every: u32,
    ) -> Result<Self, EngineError> {
        let options = options.for_groups(group, max_new_tokens);
        let engine = LocalEngine::start(options.clone())?;
        Ok(Self {
            options,
            engine: Some(engine),
            swaps_since_reload: 0,
            reload_every: reload_every.max(1),
            current: None,
            reloads: 0,
        })
    }

    pub fn engine(&self) -> Result<&LocalEngine, EngineError> {
        self.engine.as_ref().ok_or(EngineError::EngineStopped)
    }

    /// Makes `adapter` (a new file each time) the active one; the file of
    /// the one before is deleted once it is no longer loaded.
    pub async fn swap_to(&mut self, adapter: &Path) -> Result<(), EngineError> {
        if self.swaps_since_reload >= self.reload_every {
            // The old model (and every adapter it holds) goes before the new one loads.
            self.engine = None;
            self.engine = Some(LocalEngine::start(self.options.clone())?);
            self.swaps_since_reload = 0;
            self.reloads += 1;
        }
        self.engine()?
            .load_adapter(adapter.to_path_buf(), 1.0)
            .await?;
        self.swaps_since_reload += 1;
        if let Some(old) = self.current.replace(adapter.to_path_buf())
            && old != adapter
        {
            let _ = std::fs::remove_file(&old);
        }
        Ok(())
    }
}

/// `seeds.len()` replies to one prompt, decoded together (the prompt is
/// evaluated once); returns them and the seconds spent. The engine needs
/// `parallel_sequences >= seeds.len()` (see `RolloutEngine::start`).
pub async fn sample(
    engine: &LocalEngine,
    prompt: &str,
    sampling: &SamplingConfig,
    seeds: &[u32],
) -> Result<(Vec<Sampled>, f64), EngineError> {
    let began = Instant::now();
    let replies = engine
        .generate_group(prompt.to_string(), sampling.clone(), seeds.to_vec())
        .await?;
    let out = replies
        .into_iter()
        .zip(seeds)
        .map(|(r, &seed)| Sampled {
            reply: r.text,
            tokens: r.finished.tokens,
            reason: r.finished.reason,
            seed,
        })
        .collect();
    Ok((out, began.elapsed().as_secs_f64()))
}

/// The same replies' settings, one after the other as the chat generates
/// (the prompt's KV cache is reused between them): the baseline
/// `her bench rl` compares [`sample`] with.
pub async fn sample_serial(
    backend: &dyn Backend,
    prompt: &str,
    sampling: &SamplingConfig,
    seeds: &[u32],
) -> Result<(Vec<Sampled>, f64), EngineError> {
    let began = Instant::now();
    let mut out = Vec::with_capacity(seeds.len());
    for &seed in seeds {
        let mut s = sampling.clone();
        s.seed = seed;
        let outcome =
            stream_reply(backend, GenerateRequest::new(prompt.to_string(), s), |_| {}).await?;
        out.push(Sampled {
            reply: outcome.reply,
            tokens: outcome.finished.tokens,
            reason: outcome.finished.reason,
            seed,
        });
    }
    Ok((out, began.elapsed().as_secs_f64()))
}

/// A seed for (run seed, step, prompt, member): distinct and reproducible.
pub fn rollout_seed(seed: u32, step: u64, prompt: usize, member: usize) -> u32 {
    let mut x = u64::from(seed)
        ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (prompt as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        ^ (member as u64).wrapping_mul(0x1656_67B1_9E37_79F9);
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    (x & 0xFFFF_FFFF) as u32
}
