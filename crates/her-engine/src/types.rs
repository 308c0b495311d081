//! Requests, events and descriptions shared by all backends.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use her_core::generation::{AdapterInfo, PromptSource, Provenance, SamplingConfig};

/// One generation.
#[derive(Clone)]
pub struct GenerateRequest {
    pub prompt: Arc<dyn PromptSource>,
    pub sampling: SamplingConfig,
    /// Turns dropped for the previous reply of this conversation: starting from
    /// there keeps the KV cache valid.
    pub min_skip: usize,
    /// A GBNF grammar (root rule `root`) the output must follow, e.g. to
    /// force a judge's verdict or a speaker's name.
    pub grammar: Option<String>,
    /// For each generated token, the `candidates` most likely tokens at
    /// that position with their probabilities (`Finished::choices`; 0: none).
    pub candidates: usize,
}

impl GenerateRequest {
    pub fn new(prompt: impl PromptSource + 'static, sampling: SamplingConfig) -> Self {
        Self {
            prompt: Arc::new(prompt),
            sampling,
            min_skip: 0,
            grammar: None,
            candidates: 0,
        }
    }
}

impl fmt::Debug for GenerateRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenerateRequest")
            .field("droppable_turns", &self.prompt.droppable_turns())
            .field("sampling", &self.sampling)
            .field("min_skip", &self.min_skip)
            .field("grammar", &self.grammar.is_some())
            .field("candidates", &self.candidates)
            .finish()
    }
}

/// Everything a generation reports, in order: `Started`, then `Text` and
/// `Stats` interleaved, then exactly one `Finished` or `Failed`.
#[derive(Debug, Clone)]
// `Finished` is sent once per generation; boxing it would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Event {
    Started(Started),
    Text(String),
    Stats(LiveStats),
    Finished(Finished),
    Failed(super::EngineError),
}

/// How the prompt was prepared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    pub prompt_tokens: usize,
    /// Tokens whose KV entries were reused from the previous request.
    pub reused_tokens: usize,
    /// Tokens actually evaluated for this prompt.
    pub evaluated_tokens: usize,
    /// Oldest history turns dropped to fit the context window.
    pub dropped_turns: usize,
    /// The reply budget after fitting (may be less than asked).
    pub max_new_tokens: usize,
}

/// Progress while a reply streams.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LiveStats {
    pub generated_tokens: usize,
    pub tokens_per_second: f64,
    pub context_used: usize,
    pub n_ctx: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A stop string completed (it is not part of the text).
    StopString,
    /// The model produced an end-of-generation token.
    EndOfGeneration,
    /// `max_new_tokens` reached.
    MaxTokens,
    /// The caller cancelled.
    Cancelled,
    /// The context window is full.
    ContextFull,
}

impl fmt::Display for FinishReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::StopString => "stop string",
            Self::EndOfGeneration => "end of generation",
            Self::MaxTokens => "max tokens",
            Self::Cancelled => "cancelled",
            Self::ContextFull => "context full",
        })
    }
}

/// The end of a generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finished {
    pub reason: FinishReason,
    pub stop_string: Option<String>,
    /// Every sampled token id except a final end-of-generation token (RL and
    /// scoring need the exact ids; text does not always re-tokenize the same).
    pub tokens: Vec<i32>,
    pub stats: GenerationStats,
    pub provenance: Provenance,
    /// One per token of `tokens` when the request asked for candidates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<TokenChoice>,
}

/// A generated token and the most likely tokens at its position, under the
/// model's own distribution (softmax of the logits, before any sampler):
/// what `score()` reports for the same prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenChoice {
    /// The token drawn, and its bytes (a piece can be part of a character).
    pub token: i32,
    pub bytes: Vec<u8>,
    pub probability: f64,
    /// Most likely first; the drawn token is among them only if it is that likely.
    pub candidates: Vec<Candidate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub token: i32,
    pub bytes: Vec<u8>,
    pub probability: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    pub evaluated_prompt_tokens: usize,
    pub generated_tokens: usize,
    /// Request received to first token sampled.
    pub time_to_first_token_ms: f64,
    /// Prompt evaluation time.
    pub prompt_ms: f64,
    /// Generation time after the first token.
    pub generation_ms: f64,
    pub tokens_per_second: f64,
    pub context_used: usize,
    /// Time inside llama.cpp's decode of generated tokens, and inside the
    /// sampler chain: where a slow decode's time goes (`her bench engine`).
    #[serde(default)]
    pub decode_ms: f64,
    #[serde(default)]
    pub sample_ms: f64,
}

/// Several replies to one prompt, decoded together as parallel sequences
/// (see `LocalEngine::generate_group`): one reply per seed.
#[derive(Debug, Clone)]
pub struct GroupRequest {
    /// The exact prompt text (no turns are dropped: it must fit as it is).
    pub prompt: String,
    /// Shared by every member; its `seed` is ignored in favour of `seeds`.
    pub sampling: SamplingConfig,
    pub seeds: Vec<u32>,
}

/// One member of a group: its text as `generate` would have streamed it,
/// and the final event `generate` would have sent.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupReply {
    pub text: String,
    pub finished: Finished,
}

/// Log-probability of one completion token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    pub token: i32,
    pub piece: String,
    pub logprob: f64,
}

/// A compute device llama.cpp can use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub name: String,
    pub description: String,
    pub backend: String,
    pub memory_total: usize,
    pub memory_free: usize,
}

/// What is loaded and where it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub name: String,
    /// Quick identity of the file: sha256 of its size, first and last MiB.
    pub fingerprint: String,
    pub architecture: String,
    pub file_type: String,
    pub file_size: u64,
    pub n_params: u64,
    pub n_layer: u32,
    pub n_embd: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
    pub n_vocab: u32,
    pub n_ctx_train: u32,
    pub n_ctx: u32,
    pub chat_template: ChatTemplateFamily,
    pub devices: Vec<DeviceInfo>,
    /// Layers asked to be offloaded and how many actually run on a GPU.
    pub n_gpu_layers_requested: u32,
    pub n_gpu_layers_offloaded: u32,
    /// Whether contexts ask for flash attention (`model.flash_attention` not
    /// "off"; llama.cpp still leaves it off on a device without the kernel).
    pub flash_attention: bool,
    pub threads: u32,
}

/// The chat format the model's embedded template follows. HER prompts are
/// always rendered as ChatML by hand; this only warns about mismatches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatTemplateFamily {
    ChatMl,
    Llama3,
    Gemma,
    Mistral,
    Other,
    Missing,
}

impl ChatTemplateFamily {
    /// Classifies a Jinja template by the markers it uses.
    pub fn detect(template: Option<&str>) -> Self {
        let Some(t) = template else {
            return Self::Missing;
        };
        if t.contains("<|im_start|>") {
            Self::ChatMl
        } else if t.contains("<|start_header_id|>") {
            Self::Llama3
        } else if t.contains("<start_of_turn>") {
            Self::Gemma
        } else if t.contains("[INST]") {
            Self::Mistral
        } else {
            Self::Other
        }
    }
}

impl fmt::Display for ChatTemplateFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ChatMl => "ChatML",
            Self::Llama3 => "Llama 3",
            Self::Gemma => "Gemma",
            Self::Mistral => "Mistral",
            Self::Other => "other",
            Self::Missing => "none",
        })
    }
}

/// Tokens per second since the first token (0 before it), for the live and
/// final statistics of both backends.
pub fn tokens_per_second(tokens: usize, since: Option<std::time::Instant>) -> f64 {
    let secs = since.map_or(0.0, |t| t.elapsed().as_secs_f64());
    if secs > 0.0 {
        tokens as f64 / secs
    } else {
        0.0
    }
}
