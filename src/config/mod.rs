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
pub use her_engine::FlashAttention;
pub use layers::{ConfigSources, LoadedConfig, load};
pub use schema::KEY_ACTIONS;
// The request vocabulary lives with the core; `[sampling]` is its serialized form.
pub use her_core::generation::{LogitBias, PromptVariant, SAMPLER_NAMES, SamplingConfig};
pub use her_core::story::{LoreConfig, MemoryConfig};
pub use her_train::settings::{KtoConfig, RlConfig, TrainConfig};

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
    /// 0..=1000, 999 = all layers (the default). Only used by a GPU build.
    pub n_gpu_layers: u32,
    /// Context window in tokens, 256..=1_048_576.
    pub n_ctx: u32,
    /// Prompt batch size, 1..=n_ctx.
    pub n_batch: u32,
    /// 0 = auto (physical cores), else 1..=1024.
    pub threads: u32,
    pub use_mmap: bool,
    /// auto (llama.cpp decides per device), on or off.
    pub flash_attention: FlashAttention,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("assets/models/SmolLM2-135M-Instruct.Q4_1.gguf"),
            n_gpu_layers: 999,
            n_ctx: 4096,
            n_batch: 512,
            threads: 0,
            use_mmap: true,
            flash_attention: FlashAttention::Auto,
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
    /// Likely tokens kept per generated token for the probability view
    /// (`f6`; the local engine or llama-server); 0 computes none.
    pub token_candidates: u32,
    /// Send the character's earlier `<system_thinking>` plans back in its
    /// history (HER leaves them out).
    pub history_plan: bool,
    /// Send the character's earlier `<role_thinking>` back (HER keeps them).
    pub history_thoughts: bool,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            character: "elizabeth-bennet".to_owned(),
            user_name: "User".to_owned(),
            prompt_variant: PromptVariant::Training,
            theme: "dark".to_owned(),
            token_candidates: 5,
            history_plan: false,
            history_thoughts: true,
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
            session_mb: her_core::fsutil::read::DEFAULT_SESSION_MB,
            dataset_mb: her_core::fsutil::read::DEFAULT_DATASET_MB,
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
    pub fn story_config(&self, studio_dir: &Path) -> her_core::story::StoryConfig {
        her_core::story::StoryConfig {
            lore_dir: her_core::lore::lore_dir(&self.characters_dir(studio_dir)),
            lore: self.lore.clone(),
            memory: self.memory.clone(),
            max_context: (self.model.n_ctx as usize)
                .saturating_sub(self.sampling.max_new_tokens as usize)
                .max(1),
            // The estimate until the caller has the model's vocabulary
            // (`AppContext::story_tokens`, the TUI once the model loads).
            tokens: her_core::story::TokenCounter::estimate(),
            history: her_core::prompt::HistoryLayers {
                plan: self.chat.history_plan,
                thoughts: self.chat.history_thoughts,
            },
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
