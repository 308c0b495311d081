//! The sampler chain built from the sampling settings.

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;

use crate::config::SamplingConfig;
use crate::engine::EngineError;

/// Checks values the llama.cpp samplers would misbehave on. The config loader
/// validates files and flags; this guards requests built at run time (`/sampling`).
pub fn validate(s: &SamplingConfig) -> Result<(), EngineError> {
    let bad = |what: String| Err(EngineError::InvalidSampling(what));
    let (t, p, mp, rp) = (
        f64::from(s.temperature),
        f64::from(s.top_p),
        f64::from(s.min_p),
        f64::from(s.repeat_penalty),
    );
    if !t.is_finite() || t < 0.0 {
        return bad(format!("temperature must be >= 0, found '{t}'"));
    }
    if !(p > 0.0 && p <= 1.0) {
        return bad(format!("top_p must be in (0, 1], found '{p}'"));
    }
    if !(0.0..=1.0).contains(&mp) {
        return bad(format!("min_p must be in 0..=1, found '{mp}'"));
    }
    if !rp.is_finite() || rp <= 0.0 {
        return bad(format!("repeat_penalty must be > 0, found '{rp}'"));
    }
    if s.max_new_tokens == 0 {
        return bad("max_new_tokens must be at least 1".to_string());
    }
    Ok(())
}

/// A grammar sampler, or a clear error. llama.cpp reports GBNF syntax errors
/// only on stderr, so callers pass grammars built by her-studio itself.
pub fn grammar(model: &LlamaModel, gbnf: &str) -> Result<LlamaSampler, EngineError> {
    LlamaSampler::grammar(model, gbnf, "root")
        .map_err(|e| EngineError::InvalidSampling(format!("grammar rejected by llama.cpp: {e}")))
}

/// [grammar →] penalties → top-k → top-p → min-p → temperature → seeded draw
/// (or greedy at temperature 0), in llama.cpp's usual order. Filters that are
/// switched off are left out of the chain entirely.
pub fn build_chain(s: &SamplingConfig, n_vocab: i32) -> LlamaSampler {
    build_chain_with(s, n_vocab, None)
}

pub fn build_chain_with(
    s: &SamplingConfig,
    n_vocab: i32,
    grammar: Option<LlamaSampler>,
) -> LlamaSampler {
    let mut chain: Vec<LlamaSampler> = grammar.into_iter().collect();
    if (s.repeat_penalty - 1.0).abs() > f32::EPSILON {
        chain.push(LlamaSampler::penalties(
            n_vocab,
            i32::try_from(s.repeat_last_n).unwrap_or(i32::MAX),
            s.repeat_penalty,
            0.0,
            0.0,
        ));
    }
    if s.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
        return LlamaSampler::chain_simple(chain);
    }
    if s.top_k > 0 {
        chain.push(LlamaSampler::top_k(
            i32::try_from(s.top_k).unwrap_or(i32::MAX),
        ));
    }
    if s.top_p < 1.0 {
        chain.push(LlamaSampler::top_p(s.top_p, 1));
    }
    if s.min_p > 0.0 {
        chain.push(LlamaSampler::min_p(s.min_p, 1));
    }
    chain.push(LlamaSampler::temp(s.temperature));
    chain.push(LlamaSampler::dist(s.seed));
    LlamaSampler::chain_simple(chain)
}

/// Whether the chain has a repetition penalty that should see the prompt.
pub fn uses_penalties(s: &SamplingConfig) -> bool {
    (s.repeat_penalty - 1.0).abs() > f32::EPSILON
}
