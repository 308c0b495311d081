//! Settings for `her`: types, layered loading and validation.
//!
//! Layers, lowest to highest: built-in defaults (the crate's `config.toml`,
//! embedded) < the studio folder's `config.toml` < the user's config file <
//! `HER_<SECTION>_<KEY>` environment variables < command-line overrides.
//! See [`load`] and `config.toml` for every key, its range and its default.

mod engine_options;
mod env;
mod error;
mod layers;
pub(crate) mod schema;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use env::{ENV_IGNORED, ENV_PREFIX, env_var_for};
pub use error::{ConfigError, Source};
pub use layers::{ConfigSources, LoadedConfig, load};
pub use schema::KEY_ACTIONS;
// The request vocabulary lives with the core; `[sampling]` is its serialized form.
pub use crate::generation::{LogitBias, PromptVariant, SAMPLER_NAMES, SamplingConfig};
pub use crate::story::{LoreConfig, MemoryConfig};

/// The documented defaults, also usable as a template for a new config file.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../config.toml");

/// File name of the studio folder's and the user's config file.
pub const STUDIO_CONFIG_FILE: &str = "config.toml";

/// Default log file name inside [`user_data_dir`].
pub const LOG_FILE_NAME: &str = "her.log";

fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "her-studio")
}

/// The user's config file, e.g. `~/.config/her-studio/config.toml` on Linux.
pub fn user_config_path() -> Option<PathBuf> {
    project_dirs().map(|dirs| dirs.config_dir().join(STUDIO_CONFIG_FILE))
}

/// The user's data directory, e.g. `~/.local/share/her-studio` (default log location).
pub fn user_data_dir() -> Option<PathBuf> {
    project_dirs().map(|dirs| dirs.data_dir().to_owned())
}

/// All settings. Field docs give the ranges; `config.toml` documents them too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub model: ModelConfig,
    pub sampling: SamplingConfig,
    pub chat: ChatConfig,
    pub paths: PathsConfig,
    pub log: LogConfig,
    pub backend: BackendConfig,
    pub judge: JudgeConfig,
    pub prefs: PrefsConfig,
    pub train: TrainConfig,
    pub rl: RlConfig,
    pub kto: KtoConfig,
    pub eval: EvalConfig,
    pub limits: LimitsConfig,
    pub lore: LoreConfig,
    pub memory: MemoryConfig,
    /// TUI key bindings by action name; "" keeps the built-in chords.
    #[serde(default = "default_keys")]
    pub keys: BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            model: ModelConfig::default(),
            sampling: SamplingConfig::default(),
            chat: ChatConfig::default(),
            paths: PathsConfig::default(),
            log: LogConfig::default(),
            backend: BackendConfig::default(),
            judge: JudgeConfig::default(),
            prefs: PrefsConfig::default(),
            train: TrainConfig::default(),
            rl: RlConfig::default(),
            kto: KtoConfig::default(),
            eval: EvalConfig::default(),
            limits: LimitsConfig::default(),
            lore: LoreConfig::default(),
            memory: MemoryConfig::default(),
            keys: default_keys(),
        }
    }
}

fn default_keys() -> BTreeMap<String, String> {
    schema::KEY_ACTIONS
        .iter()
        .map(|a| ((*a).to_owned(), String::new()))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// GGUF file; relative paths resolve against the studio folder.
    pub path: PathBuf,
    /// 0..=1000, 999 = all layers. Only used by the CUDA build.
    pub n_gpu_layers: u32,
    /// Context window in tokens, 256..=1_048_576.
    pub n_ctx: u32,
    /// Prompt batch size, 1..=n_ctx.
    pub n_batch: u32,
    /// 0 = auto (physical cores), else 1..=1024.
    pub threads: u32,
    pub use_mmap: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("assets/models/SmolLM2-135M-Instruct.Q4_1.gguf"),
            n_gpu_layers: 0,
            n_ctx: 4096,
            n_batch: 512,
            threads: 0,
            use_mmap: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatConfig {
    /// Default character file stem.
    pub character: String,
    /// The user's persona name when a character does not set one.
    pub user_name: String,
    pub prompt_variant: PromptVariant,
    /// TUI colours: "dark", "light", or a file assets/themes/NAME.toml.
    pub theme: String,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            character: "elizabeth-bennet".to_owned(),
            user_name: "User".to_owned(),
            prompt_variant: PromptVariant::Training,
            theme: "dark".to_owned(),
        }
    }
}

/// Relative paths resolve against the studio folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsConfig {
    pub characters: PathBuf,
    pub sessions: PathBuf,
    pub models: PathBuf,
    /// Preference logs: annotation answers, judge verdicts.
    pub prefs: PathBuf,
    /// Training runs: settings, metrics, checkpoints, adapters.
    pub runs: PathBuf,
    /// Evaluations (`her eval`): results, per-scene judgements, charts.
    pub evals: PathBuf,
}

impl Default for PathsConfig {
    fn default() -> Self {
        Self {
            characters: PathBuf::from("characters"),
            sessions: PathBuf::from("sessions"),
            models: PathBuf::from("assets/models"),
            prefs: PathBuf::from("prefs"),
            runs: PathBuf::from("runs"),
            evals: PathBuf::from("evals"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub level: LogLevel,
    /// Empty = `her.log` in the user's data directory; see [`Config::log_file`].
    pub file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// The name tracing filters understand.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// Where the actor's replies come from, and how to reach a server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    pub kind: BackendKind,
    /// The server's address without `/v1`, e.g. `http://127.0.0.1:8080`.
    pub base_url: String,
    /// Model name sent with each request; "" = the server's first model.
    pub model: String,
    /// Name of the environment variable holding the API key; "" = no key.
    pub api_key_env: String,
    /// 1..=600 seconds.
    pub connect_timeout_secs: u32,
    /// 1..=3600 seconds without a byte from the server.
    pub read_timeout_secs: u32,
    /// 0..=10 retries of transient failures before the first token.
    pub retries: u32,
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self {
            kind: BackendKind::Local,
            base_url: "http://127.0.0.1:8080".to_owned(),
            model: String::new(),
            api_key_env: "OPENAI_API_KEY".to_owned(),
            connect_timeout_secs: 10,
            read_timeout_secs: 300,
            retries: 3,
        }
    }
}

/// Which backend `her judge` uses; the timeouts and retries are `[backend]`'s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeConfig {
    pub kind: JudgeKind,
    /// GGUF for `kind = "local"`; empty = `model.path`.
    pub model_path: PathBuf,
    /// For `kind = "openai"`; empty = `backend.base_url`.
    pub base_url: String,
    /// For `kind = "openai"`; empty = the server's first model.
    pub model: String,
    /// For `kind = "openai"`; empty = no key.
    pub api_key_env: String,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        Self {
            kind: JudgeKind::Actor,
            model_path: PathBuf::new(),
            base_url: String::new(),
            model: String::new(),
            api_key_env: "OPENAI_API_KEY".to_owned(),
        }
    }
}

/// `actor` shares the chat's backend settings; the others name their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JudgeKind {
    #[default]
    Actor,
    Local,
    Openai,
}

/// Preference collection: who is rating.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefsConfig {
    /// Annotator id stored with every rating; "" = the login name ($USER).
    pub annotator: String,
}

impl PrefsConfig {
    /// The configured id, else the login name, else "me".
    pub fn annotator_id(&self) -> String {
        if !self.annotator.trim().is_empty() {
            return self.annotator.trim().to_string();
        }
        std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "me".to_string())
    }
}

/// llama.cpp in-process, or an OpenAI-compatible server (vLLM, llama-server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    #[default]
    Local,
    Openai,
}

/// Mini-CoSER evaluation (`her eval`, and the gate after `her train sft --gate`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Turns per scene at most (the Environment's included).
    pub rounds: u32,
    /// Seeds per scene: sampling.seed, sampling.seed + 1, ….
    pub seeds: u32,
    /// Longest turn in tokens.
    pub max_new_tokens: u32,
    /// "model" (asked under a grammar) or "random" (seeded).
    pub next_speaker: String,
    /// Keep the Environment narrator of scenes that have one.
    pub environment: bool,
    /// Bootstrap resamples for the confidence intervals.
    pub resamples: u32,
    /// Judge GGUF; empty = the chat model (model.path).
    pub judge_model: PathBuf,
    /// Share of a turn's word trigrams found in one earlier turn from which
    /// the rules call it a repeat.
    pub repetition_overlap: f64,
    /// Share of calibration pairs per dimension a judge must get right
    /// (flawed scored lower) before the gate trusts it.
    pub calibration_storyline_consistency: f64,
    pub calibration_anthropomorphism: f64,
    pub calibration_character_fidelity: f64,
    pub calibration_storyline_quality: f64,
}

impl EvalConfig {
    /// The calibration thresholds in the judge's dimension order.
    pub fn calibration_thresholds(&self) -> [f64; 4] {
        [
            self.calibration_storyline_consistency,
            self.calibration_anthropomorphism,
            self.calibration_character_fidelity,
            self.calibration_storyline_quality,
        ]
    }
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            rounds: 8,
            seeds: 3,
            max_new_tokens: 256,
            next_speaker: "model".to_owned(),
            environment: true,
            resamples: 1000,
            judge_model: PathBuf::new(),
            repetition_overlap: 0.5,
            calibration_storyline_consistency: 0.75,
            calibration_anthropomorphism: 0.75,
            calibration_character_fidelity: 0.75,
            calibration_storyline_quality: 0.75,
        }
    }
}

/// LoRA fine-tuning (`her train`).
/// Size limits of the files that may grow large (see `fsutil::read`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest session file opened, MiB.
    pub session_mb: u64,
    /// Largest dataset, queue or preference log read, MiB.
    pub dataset_mb: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            session_mb: crate::fsutil::read::DEFAULT_SESSION_MB,
            dataset_mb: crate::fsutil::read::DEFAULT_DATASET_MB,
        }
    }
}

/// LoRA fine-tuning (`her train`). A run's `run.json` stores these; keys
/// added since an older run wrote its file take their defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub rank: u32,
    pub alpha: f64,
    pub dropout: f64,
    /// Projections to adapt: q, k, v, o, gate, up, down.
    pub targets: Vec<String>,
    /// "quantized" keeps the GGUF weights quantized (QLoRA); "dequantized" uses f32.
    pub base: String,
    /// "cpu", or "cuda" in a build with the `cuda` feature.
    pub device: String,
    pub learning_rate: f64,
    pub warmup_steps: u32,
    pub epochs: u32,
    /// 0 = as many steps as the epochs take.
    pub max_steps: u32,
    pub batch_size: u32,
    pub grad_accum: u32,
    /// 0 = no clipping.
    pub max_grad_norm: f64,
    /// Steps in a row whose loss or gradient norm is not finite (each is
    /// skipped) before the run stops.
    #[serde(default = "default_max_nonfinite_steps")]
    pub max_nonfinite_steps: u32,
    pub weight_decay: f64,
    /// Final learning rate as a fraction of the peak (cosine decay).
    pub lr_floor: f64,
    pub max_seq_len: u32,
    pub eval_fraction: f64,
    /// Recompute each layer's activations in the backward pass instead of
    /// keeping them (and the loss head's logits): much less memory for about half again the time.
    pub activation_checkpointing: bool,
    /// Steps between held-out evaluations (0 = only at the end).
    pub eval_every: u32,
    /// Steps between checkpoints (0 = only at the end and on ctrl+c).
    pub checkpoint_every: u32,
    pub seed: u32,
    /// Hugging Face id of the model the GGUF was converted from, written as
    /// the PEFT export's `base_model_name_or_path`; empty = the id the GGUF
    /// names, else a placeholder.
    pub hf_base_model: String,
    /// SFT: several samples per row of `max_seq_len` positions, each
    /// attending only to itself (TRL's padding-free packing).
    pub packing: bool,
    /// SFT: "last" (the final assistant turn, HER's layout) or "all"
    /// (every assistant turn).
    pub loss_on: String,
    /// SFT: export the checkpoint with the lowest held-out loss instead of
    /// the final weights.
    pub load_best_model_at_end: bool,
    /// SFT: stop after this many held-out evaluations without an
    /// improvement (0 = never).
    pub early_stopping_patience: u32,
    /// SFT: how much lower than the best a held-out loss must be to count
    /// as an improvement for early stopping.
    pub early_stopping_threshold: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            rank: 16,
            alpha: 32.0,
            dropout: 0.05,
            targets: ["q", "k", "v", "o", "gate", "up", "down"]
                .map(String::from)
                .to_vec(),
            base: "quantized".into(),
            device: "cpu".into(),
            learning_rate: 2e-4,
            warmup_steps: 10,
            epochs: 3,
            max_steps: 0,
            batch_size: 4,
            grad_accum: 1,
            max_grad_norm: 1.0,
            max_nonfinite_steps: default_max_nonfinite_steps(),
            weight_decay: 0.0,
            lr_floor: 0.1,
            max_seq_len: 1024,
            eval_fraction: 0.1,
            activation_checkpointing: false,
            eval_every: 20,
            checkpoint_every: 50,
            seed: 42,
            hf_base_model: String::new(),
            packing: true,
            loss_on: "last".into(),
            load_best_model_at_end: true,
            early_stopping_patience: 0,
            early_stopping_threshold: 0.0,
        }
    }
}

/// Run folders written before the setting existed read as the default.
fn default_max_nonfinite_steps() -> u32 {
    3
}

/// KTO (`her train kto`) as TRL's `KTOTrainer` defines it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KtoConfig {
    /// Weight of the desirable replies' losses (TRL's `desirable_weight`).
    pub desirable_weight: f64,
    /// Weight of the undesirable replies' losses (TRL's `undesirable_weight`).
    pub undesirable_weight: f64,
    /// How z₀, the reference point, is estimated: "mismatched" (TRL and the
    /// KTO paper: the policy's KL to the reference on the batch's prompts
    /// paired with other samples' completions) or "batch_mean" (the clamped
    /// mean of the batch's own rewards).
    pub reference_point: String,
}

impl Default for KtoConfig {
    fn default() -> Self {
        Self {
            desirable_weight: 1.0,
            undesirable_weight: 1.0,
            reference_point: "mismatched".into(),
        }
    }
}

/// Online reward-weighted RL (`her train rl`, GRPO family). The LoRA,
/// optimizer and checkpoint settings come from `[train]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RlConfig {
    /// Optimizer steps (rounds of rollouts and one update).
    pub steps: u32,
    /// Prompts per step.
    pub prompts_per_step: u32,
    /// Replies sampled per prompt (the group advantages are normalised in).
    pub group_size: u32,
    pub temperature: f64,
    pub max_new_tokens: u32,
    /// Weight of the per-token KL penalty to the reference.
    pub kl_beta: f64,
    /// PPO clip range of the probability ratio.
    pub clip_epsilon: f64,
    /// Gradient steps on each batch of rollouts (1 = on-policy).
    pub updates_per_batch: u32,
    /// Divide advantages by the group's standard deviation (GRPO); false
    /// keeps only the mean subtracted (Dr. GRPO).
    pub scale_advantages: bool,
    /// Reload the engine's model every N adapter swaps (llama.cpp frees
    /// adapters only with the model).
    pub reload_every: u32,
    /// Weights of the reward parts; 0 turns a part off.
    pub reward_judge: f64,
    pub reward_format: f64,
    pub reward_layout: f64,
    pub reward_contains: f64,
    pub reward_human: f64,
    /// The text the `contains` reward looks for.
    pub contains_text: String,
    /// Rollouts the layout monitor looks back over.
    pub layout_window: u32,
    /// Warn when one think/act/speech layout takes this share of the window.
    pub layout_warn_share: f64,
}

impl Default for RlConfig {
    fn default() -> Self {
        Self {
            steps: 50,
            prompts_per_step: 2,
            group_size: 4,
            temperature: 1.0,
            max_new_tokens: 192,
            kl_beta: 0.04,
            clip_epsilon: 0.2,
            updates_per_batch: 1,
            scale_advantages: true,
            reload_every: 8,
            reward_judge: 1.0,
            reward_format: 0.5,
            reward_layout: 0.1,
            reward_contains: 0.0,
            reward_human: 0.0,
            contains_text: "<role_action>".into(),
            layout_window: 64,
            layout_warn_share: 0.8,
        }
    }
}

impl Config {
    /// Absolute paths are kept, `~/…` is the home directory, anything else
    /// is relative to the studio folder (not the working directory, so `her`
    /// behaves the same wherever it is started).
    pub fn resolve_path(&self, studio_dir: &Path, p: &Path) -> PathBuf {
        if p.is_absolute() {
            return p.to_owned();
        }
        let mut components = p.components();
        if components.next() == Some(Component::Normal("~".as_ref())) {
            if let Some(base) = directories::BaseDirs::new() {
                return base.home_dir().join(components.as_path());
            }
        }
        studio_dir.join(p)
    }

    /// The resolved `model.path`.
    pub fn model_path(&self, studio_dir: &Path) -> PathBuf {
        self.resolve_path(studio_dir, &self.model.path)
    }

    pub fn characters_dir(&self, studio_dir: &Path) -> PathBuf {
        self.resolve_path(studio_dir, &self.paths.characters)
    }

    /// What a session's story (lore, memory, note) needs from the config.
    pub fn story_config(&self, studio_dir: &Path) -> crate::story::StoryConfig {
        crate::story::StoryConfig {
            lore_dir: crate::lore::lore_dir(&self.characters_dir(studio_dir)),
            lore: self.lore.clone(),
            memory: self.memory.clone(),
            max_context: (self.model.n_ctx as usize)
                .saturating_sub(self.sampling.max_new_tokens as usize)
                .max(1),
        }
    }

    pub fn sessions_dir(&self, studio_dir: &Path) -> PathBuf {
        self.resolve_path(studio_dir, &self.paths.sessions)
    }

    pub fn runs_dir(&self, studio_dir: &Path) -> PathBuf {
        self.resolve_path(studio_dir, &self.paths.runs)
    }

    pub fn evals_dir(&self, studio_dir: &Path) -> PathBuf {
        self.resolve_path(studio_dir, &self.paths.evals)
    }

    pub fn prefs_dir(&self, studio_dir: &Path) -> PathBuf {
        self.resolve_path(studio_dir, &self.paths.prefs)
    }

    pub fn models_dir(&self, studio_dir: &Path) -> PathBuf {
        self.resolve_path(studio_dir, &self.paths.models)
    }

    /// The resolved `log.file`, or `her.log` in [`user_data_dir`] when it is
    /// empty; `None` only if there is no home directory to put it in.
    pub fn log_file(&self, studio_dir: &Path) -> Option<PathBuf> {
        if self.log.file.as_os_str().is_empty() {
            user_data_dir().map(|dir| dir.join(LOG_FILE_NAME))
        } else {
            Some(self.resolve_path(studio_dir, &self.log.file))
        }
    }
}
