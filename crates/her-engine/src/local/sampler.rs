//! The sampler chain built from the sampling settings.

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::logit_bias::LlamaLogitBias;

use crate::EngineError;
use her_core::generation::{LogitBias, SAMPLER_NAMES, SamplingConfig};

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
    let in_range = |name: &str, x: f32, lo: f32, hi: f32| {
        if (lo..=hi).contains(&x) {
            Ok(())
        } else {
            bad(format!("{name} must be in {lo}..={hi}, found '{x}'"))
        }
    };
    in_range("dry_multiplier", s.dry_multiplier, 0.0, 100.0)?;
    in_range("dry_base", s.dry_base, 1.0, 10.0)?;
    in_range("xtc_probability", s.xtc_probability, 0.0, 1.0)?;
    in_range("xtc_threshold", s.xtc_threshold, 0.0, 1.0)?;
    in_range("top_n_sigma", s.top_n_sigma, 0.0, 100.0)?;
    if !(s.typical_p > 0.0 && s.typical_p <= 1.0) {
        return bad(format!(
            "typical_p must be in (0, 1], found '{}'",
            s.typical_p
        ));
    }
    // llama.cpp's DRY aborts the process on a NUL byte in a breaker.
    if let Some(b) = s
        .dry_sequence_breakers
        .iter()
        .find(|b| b.is_empty() || b.contains('\0'))
    {
        return bad(format!(
            "dry_sequence_breakers must be non-empty strings without NUL, found {b:?}"
        ));
    }
    if let Some(name) = s
        .order
        .iter()
        .find(|n| !SAMPLER_NAMES.contains(&n.as_str()))
    {
        return bad(format!(
            "order: unknown sampler '{name}'; expected names from: {}",
            SAMPLER_NAMES.join(", ")
        ));
    }
    if let Some(b) = s.logit_bias.iter().find(|b| !bias_ok(b)) {
        return bad(format!(
            "logit_bias: '{b}' needs one of token/text and a bias in -100..=100 or -inf"
        ));
    }
    if s.banned_phrases.iter().any(String::is_empty) {
        return bad("banned_phrases must not contain an empty string".to_string());
    }
    Ok(())
}

fn bias_ok(b: &LogitBias) -> bool {
    let target = match (&b.token, &b.text) {
        (Some(_), None) => true,
        (None, Some(text)) => !text.is_empty(),
        _ => false,
    };
    target && (b.bias == f32::NEG_INFINITY || (-100.0..=100.0).contains(&b.bias))
}

/// The `sampling.logit_bias` entries as token biases: ids checked against the
/// vocabulary, texts tokenized with it (every token of the text gets the bias).
pub fn logit_biases(
    s: &SamplingConfig,
    model: &LlamaModel,
) -> Result<Vec<LlamaLogitBias>, EngineError> {
    let n_vocab = model.n_vocab();
    let mut out = Vec::new();
    for entry in &s.logit_bias {
        match (entry.token, &entry.text) {
            (Some(id), _) => {
                let token = i32::try_from(id).ok().filter(|&t| t < n_vocab).ok_or_else(|| {
                    EngineError::InvalidSampling(format!(
                        "logit_bias: token {id} is not in the model's vocabulary (ids 0..{n_vocab})"
                    ))
                })?;
                out.push(LlamaLogitBias::new(LlamaToken(token), entry.bias));
            }
            (None, Some(text)) => {
                let tokens = model.vocab().tokenize(text.as_bytes(), false, false);
                if tokens.is_empty() {
                    return Err(EngineError::InvalidSampling(format!(
                        "logit_bias: the text {text:?} gives no tokens in the model's vocabulary"
                    )));
                }
                out.extend(
                    tokens
                        .into_iter()
                        .map(|t| LlamaLogitBias::new(t, entry.bias)),
                );
            }
            (None, None) => {
                return Err(EngineError::InvalidSampling(format!(
                    "logit_bias: '{entry}' names neither a token nor a text"
                )));
            }
        }
    }
    Ok(out)
}

/// A grammar sampler, or a clear error. llama.cpp reports GBNF syntax errors
/// only on stderr, so callers pass grammars built by her-studio itself.
pub fn grammar(model: &LlamaModel, gbnf: &str) -> Result<LlamaSampler, EngineError> {
    LlamaSampler::grammar(model, gbnf, "root")
        .map_err(|e| EngineError::InvalidSampling(format!("grammar rejected by llama.cpp: {e}")))
}

/// The chain for these settings, without a grammar.
pub fn build_chain(s: &SamplingConfig, model: &LlamaModel) -> Result<LlamaSampler, EngineError> {
    build_chain_with(s, model, None)
}

/// [grammar →] logit bias → the samplers of `order` → seeded draw (or
/// greedy at temperature 0). Samplers whose settings switch them off are
/// left out, so the defaults give exactly the chain of before `order`
/// existed: penalties → top-k → top-p → min-p → temperature → draw.
pub fn build_chain_with(
    s: &SamplingConfig,
    model: &LlamaModel,
    grammar: Option<LlamaSampler>,
) -> Result<LlamaSampler, EngineError> {
    validate(s)?;
    let n_vocab = model.n_vocab();
    let mut chain: Vec<LlamaSampler> = grammar.into_iter().collect();
    let biases = logit_biases(s, model)?;
    if !biases.is_empty() {
        chain.push(LlamaSampler::logit_bias(n_vocab, &biases));
    }
    let greedy = s.temperature <= 0.0;
    for name in &s.order {
        if let Some(sampler) = ordered_sampler(name, s, model, greedy) {
            chain.push(sampler);
        }
    }
    chain.push(if greedy {
        LlamaSampler::greedy()
    } else {
        LlamaSampler::dist(s.seed)
    });
    Ok(LlamaSampler::chain_simple(chain))
}

/// One named sampler of `order`, or `None` when its settings switch it off
/// (or, under greedy decoding, when it could only trim the tail).
fn ordered_sampler(
    name: &str,
    s: &SamplingConfig,
    model: &LlamaModel,
    greedy: bool,
) -> Option<LlamaSampler> {
    let clamp = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    match name {
        "penalties" if uses_penalties(s) => Some(LlamaSampler::penalties(
            model.n_vocab(),
            clamp(s.repeat_last_n),
            s.repeat_penalty,
            0.0,
            0.0,
        )),
        "dry" if uses_dry(s) => Some(LlamaSampler::dry(
            model,
            s.dry_multiplier,
            s.dry_base,
            clamp(s.dry_allowed_length),
            clamp(s.dry_penalty_last_n),
            s.dry_sequence_breakers.iter().map(String::as_bytes),
        )),
        // XTC changes which token is likeliest, so it runs under greedy too.
        "xtc" if s.xtc_probability > 0.0 && s.xtc_threshold <= 0.5 => Some(LlamaSampler::xtc(
            s.xtc_probability,
            s.xtc_threshold,
            1,
            // Its own stream: the same seed as the draw would tie the two.
            s.seed ^ 0x5854_4321,
        )),
        _ if greedy => None,
        "top_n_sigma" if s.top_n_sigma > 0.0 => Some(LlamaSampler::top_n_sigma(s.top_n_sigma)),
        "top_k" if s.top_k > 0 => Some(LlamaSampler::top_k(clamp(s.top_k))),
        "typical_p" if s.typical_p < 1.0 => Some(LlamaSampler::typical(s.typical_p, 1)),
        "top_p" if s.top_p < 1.0 => Some(LlamaSampler::top_p(s.top_p, 1)),
        "min_p" if s.min_p > 0.0 => Some(LlamaSampler::min_p(s.min_p, 1)),
        "temperature" => Some(LlamaSampler::temp(s.temperature)),
        _ => None,
    }
}

fn in_order(s: &SamplingConfig, name: &str) -> bool {
    s.order.iter().any(|n| n == name)
}

/// Whether the chain has a repetition penalty.
pub fn uses_penalties(s: &SamplingConfig) -> bool {
    (s.repeat_penalty - 1.0).abs() > f32::EPSILON && in_order(s, "penalties")
}

/// Whether the chain has DRY.
pub fn uses_dry(s: &SamplingConfig) -> bool {
    s.dry_multiplier > 0.0 && s.dry_penalty_last_n > 0 && in_order(s, "dry")
}

/// How many trailing prompt tokens the chain must be shown (accepted) so
/// the repetition penalty and DRY see the prompt, as llama-server does.
pub fn prompt_history(s: &SamplingConfig) -> usize {
    let penalties = if uses_penalties(s) {
        s.repeat_last_n
    } else {
        0
    };
    let dry = if uses_dry(s) { s.dry_penalty_last_n } else { 0 };
    penalties.max(dry) as usize
}
