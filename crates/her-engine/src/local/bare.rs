//! The baseline `her bench engine` measures the engine against: llama-cpp-2
//! used directly, with the same context settings, the same sampler chain and
//! the same per-token work (sample, detokenize, check the stop strings, decode).

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;

use super::{FlashAttention, backend, sampler};
use crate::EngineError;
use her_core::generation::SamplingConfig;

/// What the bare loop runs.
#[derive(Debug, Clone)]
pub struct BareOptions {
    pub model: PathBuf,
    pub n_ctx: u32,
    pub n_batch: u32,
    pub threads: u32,
    /// Layers on the GPU (a `cuda` build), as the engine's `model.n_gpu_layers`.
    pub n_gpu_layers: u32,
    /// Flash attention on or off (the bench measures both).
    pub flash_attention: bool,
    pub sampling: SamplingConfig,
}

/// Tokens generated and their rate (from the first sampled token on).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BareResult {
    pub prompt_tokens: usize,
    pub tokens: usize,
    pub tokens_per_second: f64,
    /// Time inside llama.cpp's decode of generated tokens, and in the sampler.
    pub decode_ms: f64,
    pub sample_ms: f64,
}

/// Generates after `prompt` with a plain llama-cpp-2 decode loop.
pub fn bare_loop(options: &BareOptions, prompt: &str) -> Result<BareResult, EngineError> {
    let sampling = &options.sampling;
    let backend = backend()?;
    let model_params = LlamaModelParams::default().with_n_gpu_layers(options.n_gpu_layers);
    let model =
        LlamaModel::load_from_file(backend, &options.model, &model_params).map_err(|e| {
            EngineError::ModelLoad {
                path: options.model.clone(),
                reason: e.to_string(),
            }
        })?;
    let n_batch = options.n_batch.min(options.n_ctx);
    let threads = options.threads as i32;
    let ctx_params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(options.n_ctx))
        .with_n_batch(n_batch)
        .with_n_ubatch(n_batch)
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
        .with_flash_attention_policy(
            if options.flash_attention {
                FlashAttention::On
            } else {
                FlashAttention::Off
            }
            .policy(),
        );
    let mut ctx = model
        .new_context(backend, ctx_params)
        .map_err(|e| EngineError::Context {
            n_ctx: options.n_ctx,
            reason: e.to_string(),
        })?;
    let decode_err = |e: &dyn std::fmt::Display| EngineError::Decode(e.to_string());
    let vocab = model.vocab();
    let prompt = vocab.tokenize(prompt.as_bytes(), true, true);
    // The prompt goes in n_batch-sized pieces, logits for its last token only.
    let mut batch = LlamaBatch::new(n_batch as usize, 1);
    for (c, chunk) in prompt.chunks(n_batch.max(1) as usize).enumerate() {
        batch.clear();
        let first = c * n_batch.max(1) as usize;
        for (i, &t) in chunk.iter().enumerate() {
            let pos = first + i;
            batch
                .add(t, pos as i32, &[0], pos + 1 == prompt.len())
                .map_err(|e| decode_err(&e))?;
        }
        ctx.decode(&mut batch).map_err(|e| decode_err(&e))?;
    }
    let mut chain = sampler::build_chain(sampling, &model)?;
    let max = sampling.max_new_tokens as usize;
    let mut pos = prompt.len() as i32;
    let mut generated = 0usize;
    let mut start: Option<Instant> = None;
    let mut text = Vec::new();
    let (mut decode_time, mut sample_time) = (Duration::ZERO, Duration::ZERO);
    while generated < max {
        let sampling_started = Instant::now();
        let token = chain.sample(&ctx, -1);
        sample_time += sampling_started.elapsed();
        start.get_or_insert_with(Instant::now);
        if vocab.is_eog(token) {
            break;
        }
        generated += 1;
        text.extend(vocab.token_to_piece(token, true, None));
        let so_far = String::from_utf8_lossy(&text);
        if generated >= max || sampling.stop.iter().any(|s| so_far.contains(s.as_str())) {
            break;
        }
        batch.clear();
        batch
            .add(token, pos, &[0], true)
            .map_err(|e| decode_err(&e))?;
        let decode_started = Instant::now();
        ctx.decode(&mut batch).map_err(|e| decode_err(&e))?;
        decode_time += decode_started.elapsed();
        pos += 1;
    }
    let secs = start.map_or(0.0, |s| s.elapsed().as_secs_f64());
    let tokens_per_second = if secs > 0.0 {
        generated as f64 / secs
    } else {
        0.0
    };
    Ok(BareResult {
        prompt_tokens: prompt.len(),
        tokens: generated,
        tokens_per_second,
        decode_ms: decode_time.as_secs_f64() * 1e3,
        sample_ms: sample_time.as_secs_f64() * 1e3,
    })
}
