//! The vocabulary of a generation, shared by every layer: the sampler
//! settings, the prompt layout, a prompt the engine may shorten, the active
//! adapter and what produced a reply. Pure data; the engine interprets it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::chatml;

/// f32 because llama.cpp's samplers take f32. Missing fields take their
/// defaults so session logs written before a field existed still read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingConfig {
    /// 0.0..=5.0, 0 = greedy.
    pub temperature: f32,
    /// (0, 1].
    pub top_p: f32,
    /// 0 = off, else 1..=100_000.
    pub top_k: u32,
    /// 0..=1.
    pub min_p: f32,
    /// 1.0 = off; 0.5..=3.0.
    pub repeat_penalty: f32,
    /// 0..=65_536 tokens.
    pub repeat_last_n: u32,
    /// 1..=131_072.
    pub max_new_tokens: u32,
    pub seed: u32,
    /// Extra stop strings, each non-empty.
    pub stop: Vec<String>,
    /// DRY ("don't repeat yourself") strength; 0 = off, else up to 100.
    pub dry_multiplier: f32,
    /// How fast the DRY penalty grows with the repeat's length: 1.0..=10.
    pub dry_base: f32,
    /// Repeats up to this many tokens go unpenalised: 0..=1000.
    pub dry_allowed_length: u32,
    /// How many recent tokens DRY searches; 0 = DRY off.
    pub dry_penalty_last_n: u32,
    /// Strings a repeat may not extend across, each non-empty and without NUL
    /// (llama.cpp aborts on a NUL).
    pub dry_sequence_breakers: Vec<String>,
    /// XTC ("exclude top choices") chance per token: 0..=1, 0 = off.
    pub xtc_probability: f32,
    /// XTC drops every choice above this probability but the least likely one; > 0.5 = off.
    pub xtc_threshold: f32,
    /// Keep tokens within n standard deviations of the top logit; 0 = off.
    pub top_n_sigma: f32,
    /// Locally typical sampling: (0, 1], 1 = off.
    pub typical_p: f32,
    /// Added to chosen tokens' logits before every other sampler.
    pub logit_bias: Vec<LogitBias>,
    /// The samplers in the order they run (names from [`SAMPLER_NAMES`]);
    /// a sampler left out does not run. The draw always comes last.
    pub order: Vec<String>,
    /// Strings the reply must never contain (ASCII letters match either case):
    /// on a match the engine rewinds to where the phrase began and resamples.
    pub banned_phrases: Vec<String>,
    /// Rewinds one reply may spend on banned phrases; after that, matches are let through (and logged).
    pub banned_phrase_retries: u32,
}

/// Sampler names `sampling.order` accepts, in the default order (llama.cpp's).
pub const SAMPLER_NAMES: &[&str] = &[
    "penalties",
    "dry",
    "top_n_sigma",
    "top_k",
    "typical_p",
    "top_p",
    "min_p",
    "xtc",
    "temperature",
];

/// One `sampling.logit_bias` entry: a token id or a text (every token of its
/// tokenization gets the bias), and the bias; `-inf` bans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogitBias {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(with = "bias_value")]
    pub bias: f32,
}

impl std::fmt::Display for LogitBias {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.token, &self.text) {
            (Some(id), _) => write!(f, "token {id} → {}", self.bias),
            (None, Some(text)) => write!(f, "text {text:?} → {}", self.bias),
            (None, None) => write!(f, "(nothing) → {}", self.bias),
        }
    }
}

/// JSON has no infinities: a ban (`-inf`) is written as the string "-inf" so
/// session logs that record the sampling settings read back.
mod bias_value {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bias: &f32, s: S) -> Result<S::Ok, S::Error> {
        if bias.is_finite() {
            s.serialize_f32(*bias)
        } else {
            s.serialize_str(if *bias < 0.0 { "-inf" } else { "inf" })
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Number(f64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
        match Written::deserialize(d)? {
            Written::Number(x) => Ok(x as f32),
            Written::Text(t) if t == "-inf" => Ok(f32::NEG_INFINITY),
            Written::Text(t) => Err(serde::de::Error::custom(format!(
                "a bias must be a number or \"-inf\", found {t:?}"
            ))),
        }
    }
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            temperature: 0.7,
            top_p: 0.9,
            top_k: 40,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            max_new_tokens: 1024,
            seed: 42,
            stop: vec![chatml::IM_END.to_owned(), chatml::IM_START.to_owned()],
            dry_multiplier: 0.0,
            dry_base: 1.75,
            dry_allowed_length: 2,
            dry_penalty_last_n: 64,
            dry_sequence_breakers: ["\n", ":", "\"", "*"].map(str::to_owned).to_vec(),
            xtc_probability: 0.0,
            xtc_threshold: 0.1,
            top_n_sigma: 0.0,
            typical_p: 1.0,
            logit_bias: Vec::new(),
            order: SAMPLER_NAMES.iter().map(|n| (*n).to_owned()).collect(),
            banned_phrases: Vec::new(),
            banned_phrase_retries: 32,
        }
    }
}

/// Which system-prompt layout to build (HER's training or evaluation format).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptVariant {
    #[default]
    Training,
    Evaluation,
}

impl PromptVariant {
    pub fn as_str(self) -> &'static str {
        match self {
            PromptVariant::Training => "training",
            PromptVariant::Evaluation => "evaluation",
        }
    }
}

/// A prompt that can be shortened by dropping its oldest history turns.
///
/// The prompt builder knows how to re-render a conversation without its first
/// turns (for example moving the conversation header to the new first turn);
/// the engine only decides how many to drop, by counting real tokens.
pub trait PromptSource: Send + Sync {
    /// The full prompt text with the `skip` oldest droppable turns left out.
    fn render(&self, skip: usize) -> String;
    /// How many turns may be dropped at most (never the system prompt or the newest turn).
    fn droppable_turns(&self) -> usize;
}

impl PromptSource for String {
    fn render(&self, _skip: usize) -> String {
        self.clone()
    }
    fn droppable_turns(&self) -> usize {
        0
    }
}

/// What produced a reply: enough to reproduce it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub model: String,
    pub model_fingerprint: String,
    pub adapter: Option<AdapterInfo>,
    pub seed: u32,
    /// sha256 of the exact prompt text evaluated (after any dropped turns).
    #[serde(default)]
    pub prompt_sha256: String,
    /// sha256 of the prompt's token ids (see `local::tokens_sha256`).
    #[serde(default)]
    pub prompt_tokens_sha256: String,
    /// Oldest turns left out to fit the context window.
    #[serde(default)]
    pub dropped_turns: usize,
    /// The sampler settings of this generation (`None` in logs written
    /// before they were recorded).
    #[serde(default)]
    pub sampling: Option<SamplingConfig>,
    /// Settings the backend could not apply, as `sampling.KEY` (a server
    /// without that sampler, or one that rejected the field): the reply was
    /// sampled without them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unapplied: Vec<String>,
}

/// The active LoRA adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterInfo {
    pub path: PathBuf,
    pub scale: f32,
    /// sha256 of the adapter file.
    pub sha256: String,
}
