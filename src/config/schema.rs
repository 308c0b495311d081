//! The list of every setting: its section, key, type and allowed values.
//!
//! Validation, environment-variable matching, error hints and the
//! "every key is documented" test all read this one table, so adding a
//! setting means adding a line here, a field in the struct and an entry in
//! `config.toml`.

/// What a setting holds and which values are allowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    /// A float; integers are accepted too (`temperature = 1`).
    Float {
        min: f64,
        max: f64,
        min_exclusive: bool,
    },
    Int {
        min: i64,
        max: i64,
    },
    Bool,
    Str {
        non_empty: bool,
    },
    /// An array of non-empty strings.
    StrList,
    /// An array of names from a fixed list (repeats allowed).
    NameList {
        values: &'static [&'static str],
    },
    /// An array of `{ token = ID, bias = B }` / `{ text = "…", bias = B }`
    /// tables; B in -100..=100 or -inf.
    LogitBias,
    /// A string from a fixed list; `note` is appended to the error hint.
    Enum {
        values: &'static [&'static str],
        note: &'static str,
    },
}

impl Kind {
    /// The "what was expected" half of an error message.
    pub(crate) fn expected(&self) -> String {
        match *self {
            Kind::Float {
                min,
                max,
                min_exclusive: false,
            } => format!("a number in {min:?}..={max:?}"),
            Kind::Float {
                min,
                max,
                min_exclusive: true,
            } => format!("a number in ({min}, {max}]"),
            Kind::Int { min, max } => format!("an integer in {min}..={max}"),
            Kind::Bool => "true or false".to_owned(),
            Kind::Str { non_empty: true } => "a non-empty string".to_owned(),
            Kind::Str { non_empty: false } => "a string".to_owned(),
            Kind::StrList => "an array of non-empty strings".to_owned(),
            Kind::NameList { values } => format!("an array of names from: {}", values.join(", ")),
            Kind::LogitBias => "an array of tables { token = ID, bias = B } or { text = \"…\", \
                                bias = B }, B in -100..=100 or -inf"
                .to_owned(),
            Kind::Enum { values, note } => {
                let quoted: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
                let list = match quoted.as_slice() {
                    [only] => only.clone(),
                    _ => format!("one of {}", quoted.join(", ")),
                };
                if note.is_empty() {
                    list
                } else {
                    format!("{list} {note}")
                }
            }
        }
    }
}

/// One setting, addressed as `section.key`.
#[derive(Debug, PartialEq)]
pub(crate) struct KeySpec {
    pub section: &'static str,
    pub key: &'static str,
    pub kind: Kind,
}

impl KeySpec {
    pub(crate) fn dotted(&self) -> String {
        format!("{}.{}", self.section, self.key)
    }

    /// `HER_<SECTION>_<KEY>`, upper-case.
    pub(crate) fn env_var(&self) -> String {
        format!(
            "{}{}_{}",
            crate::config::env::ENV_PREFIX,
            self.section.to_ascii_uppercase(),
            self.key.to_ascii_uppercase()
        )
    }
}

/// Section names in the order `config.toml` lists them.
pub(crate) const SECTIONS: &[&str] = &[
    "model", "sampling", "chat", "paths", "log", "backend", "judge", "prefs", "train", "rl", "kto",
    "eval", "lore", "memory", "limits", "keys",
];

/// Remappable actions of the TUI (`[keys]`); the TUI's action table must match (tested there).
pub const KEY_ACTIONS: &[&str] = &[
    "quit",
    "help",
    "submit",
    "newline",
    "editor",
    "history_prev",
    "history_next",
    "focus_input",
    "focus_transcript",
    "select_prev",
    "select_next",
    "page_up",
    "page_down",
    "bottom",
    "stop",
    "regenerate",
    "swipe_prev",
    "swipe_next",
    "continue",
    "edit",
    "delete",
    "pin",
    "rate_up",
    "rate_down",
    "rate_1",
    "rate_2",
    "rate_3",
    "rate_4",
    "rate_5",
    "rate",
    "arena",
    "toggle_plan",
    "toggle_thoughts",
    "toggle_raw",
    "toggle_tree",
    "token_probabilities",
    "close",
    "pick_left",
    "pick_right",
    "tie",
    "both_bad",
    "skip",
    "undo",
];

pub(crate) const PROMPT_VARIANTS: &[&str] = &["training", "evaluation"];
pub(crate) const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];
pub(crate) const FLASH_ATTENTION: &[&str] = &["auto", "on", "off"];
pub(crate) const BACKEND_KINDS: &[&str] = &["local", "openai"];
pub(crate) const JUDGE_KINDS: &[&str] = &["actor", "local", "openai"];
pub(crate) const TRAIN_BASES: &[&str] = &["quantized", "dequantized"];
pub(crate) const TRAIN_LOSS_ON: &[&str] = &["last", "all"];
pub(crate) const TRAIN_DEVICES: &[&str] = &["cpu", "cuda"];
pub(crate) const KTO_REFERENCE_POINTS: &[&str] = &["mismatched", "batch_mean"];
pub(crate) const EVAL_NEXT_SPEAKERS: &[&str] = &["model", "random"];

const fn spec(section: &'static str, key: &'static str, kind: Kind) -> KeySpec {
    KeySpec { section, key, kind }
}

const fn float(min: f64, max: f64) -> Kind {
    Kind::Float {
        min,
        max,
        min_exclusive: false,
    }
}

const fn int(min: i64, max: i64) -> Kind {
    Kind::Int { min, max }
}

/// A float above `min` (exclusive) up to `max`.
const fn float_open(min: f64, max: f64) -> Kind {
    Kind::Float {
        min,
        max,
        min_exclusive: true,
    }
}

const NON_EMPTY: Kind = Kind::Str { non_empty: true };

/// Every setting, in `config.toml` order (provenance is listed in this order).
pub(crate) const KEYS: &[KeySpec] = &[
    spec("model", "path", NON_EMPTY),
    spec("model", "n_gpu_layers", int(0, 1000)),
    spec("model", "n_ctx", int(256, 1_048_576)),
    // The n_batch <= n_ctx cross-check happens after merging.
    spec("model", "n_batch", int(1, 1_048_576)),
    spec("model", "threads", int(0, 1024)),
    spec("model", "use_mmap", Kind::Bool),
    spec(
        "model",
        "flash_attention",
        Kind::Enum {
            values: FLASH_ATTENTION,
            note: "",
        },
    ),
    spec("sampling", "temperature", float(0.0, 5.0)),
    spec(
        "sampling",
        "top_p",
        Kind::Float {
            min: 0.0,
            max: 1.0,
            min_exclusive: true,
        },
    ),
    spec("sampling", "top_k", int(0, 100_000)),
    spec("sampling", "min_p", float(0.0, 1.0)),
    spec("sampling", "repeat_penalty", float(0.5, 3.0)),
    spec("sampling", "repeat_last_n", int(0, 65_536)),
    spec("sampling", "max_new_tokens", int(1, 131_072)),
    spec("sampling", "seed", int(0, u32::MAX as i64)),
    spec("sampling", "stop", Kind::StrList),
    spec("sampling", "dry_multiplier", float(0.0, 100.0)),
    spec("sampling", "dry_base", float(1.0, 10.0)),
    spec("sampling", "dry_allowed_length", int(0, 1000)),
    spec("sampling", "dry_penalty_last_n", int(0, 1_048_576)),
    // NUL is refused for every string key; llama.cpp's DRY would abort on one.
    spec("sampling", "dry_sequence_breakers", Kind::StrList),
    spec("sampling", "xtc_probability", float(0.0, 1.0)),
    spec("sampling", "xtc_threshold", float(0.0, 1.0)),
    spec("sampling", "top_n_sigma", float(0.0, 100.0)),
    spec("sampling", "typical_p", float_open(0.0, 1.0)),
    spec("sampling", "logit_bias", Kind::LogitBias),
    spec(
        "sampling",
        "order",
        Kind::NameList {
            values: crate::config::SAMPLER_NAMES,
        },
    ),
    spec("sampling", "banned_phrases", Kind::StrList),
    spec("sampling", "banned_phrase_retries", int(0, 10_000)),
    spec("chat", "character", NON_EMPTY),
    spec("chat", "user_name", NON_EMPTY),
    spec("chat", "theme", NON_EMPTY),
    spec("chat", "token_candidates", int(0, 20)),
    spec("chat", "history_plan", Kind::Bool),
    spec("chat", "history_thoughts", Kind::Bool),
    spec(
        "chat",
        "prompt_variant",
        Kind::Enum {
            values: PROMPT_VARIANTS,
            note: "",
        },
    ),
    spec("paths", "characters", NON_EMPTY),
    spec("paths", "sessions", NON_EMPTY),
    spec("paths", "models", NON_EMPTY),
    spec("paths", "prefs", NON_EMPTY),
    spec("paths", "runs", NON_EMPTY),
    spec("paths", "evals", NON_EMPTY),
    spec(
        "log",
        "level",
        Kind::Enum {
            values: LOG_LEVELS,
            note: "",
        },
    ),
    // Empty means "her.log in the user's data directory".
    spec("log", "file", Kind::Str { non_empty: false }),
    spec(
        "backend",
        "kind",
        Kind::Enum {
            values: BACKEND_KINDS,
            note: "",
        },
    ),
    // Checked to be an http(s) URL when the remote backend starts.
    spec("backend", "base_url", NON_EMPTY),
    spec("backend", "model", Kind::Str { non_empty: false }),
    // A variable's name, never the key itself.
    spec("backend", "api_key_env", Kind::Str { non_empty: false }),
    spec("backend", "connect_timeout_secs", int(1, 600)),
    spec("backend", "read_timeout_secs", int(1, 3600)),
    spec("backend", "retries", int(0, 10)),
    spec(
        "judge",
        "kind",
        Kind::Enum {
            values: JUDGE_KINDS,
            note: "",
        },
    ),
    spec("judge", "model_path", Kind::Str { non_empty: false }),
    spec("judge", "base_url", Kind::Str { non_empty: false }),
    spec("judge", "model", Kind::Str { non_empty: false }),
    spec("judge", "api_key_env", Kind::Str { non_empty: false }),
    spec("prefs", "annotator", Kind::Str { non_empty: false }),
    spec("train", "rank", int(1, 1024)),
    spec("train", "alpha", float_open(0.0, 4096.0)),
    spec("train", "dropout", float(0.0, 0.9)),
    spec("train", "targets", Kind::StrList),
    spec(
        "train",
        "base",
        Kind::Enum {
            values: TRAIN_BASES,
            note: "",
        },
    ),
    spec(
        "train",
        "device",
        Kind::Enum {
            values: TRAIN_DEVICES,
            note: "(cuda needs a build with the cuda-train feature)",
        },
    ),
    spec(
        "train",
        "kernels",
        Kind::Enum {
            values: &her_train::model::Kernels::NAMES,
            note: "(fused runs on the CPU only)",
        },
    ),
    spec(
        "train",
        "dtype",
        Kind::Enum {
            values: &her_train::model::Precision::NAMES,
            note: "(bf16 runs on the portable kernels; on a GPU it needs compute capability 8.0)",
        },
    ),
    spec("train", "learning_rate", float_open(0.0, 1.0)),
    spec("train", "warmup_steps", int(0, 1_000_000)),
    spec("train", "epochs", int(1, 10_000)),
    spec("train", "max_steps", int(0, 100_000_000)),
    spec("train", "batch_size", int(1, 4096)),
    spec("train", "grad_accum", int(1, 4096)),
    spec("train", "max_grad_norm", float(0.0, 1e6)),
    spec("train", "max_nonfinite_steps", int(1, 1_000_000)),
    spec("train", "weight_decay", float(0.0, 1.0)),
    spec("train", "lr_floor", float(0.0, 1.0)),
    spec("train", "max_seq_len", int(16, 1_048_576)),
    spec("train", "eval_fraction", float(0.0, 0.5)),
    spec("train", "activation_checkpointing", Kind::Bool),
    spec("train", "eval_every", int(0, 100_000_000)),
    spec("train", "checkpoint_every", int(0, 100_000_000)),
    spec("train", "seed", int(0, u32::MAX as i64)),
    spec("train", "hf_base_model", Kind::Str { non_empty: false }),
    spec("train", "packing", Kind::Bool),
    spec(
        "train",
        "loss_on",
        Kind::Enum {
            values: TRAIN_LOSS_ON,
            note: "",
        },
    ),
    spec("train", "load_best_model_at_end", Kind::Bool),
    spec("train", "early_stopping_patience", int(0, 1_000_000)),
    spec("train", "early_stopping_threshold", float(0.0, 1e6)),
    spec("train", "memory_limit_gib", float(0.0, 1e6)),
    spec("rl", "steps", int(1, 100_000_000)),
    spec("rl", "prompts_per_step", int(1, 4096)),
    spec("rl", "group_size", int(2, 256)),
    spec("rl", "temperature", float_open(0.0, 10.0)),
    spec("rl", "max_new_tokens", int(1, 1_048_576)),
    spec("rl", "kl_beta", float(0.0, 100.0)),
    spec("rl", "clip_epsilon", float_open(0.0, 10.0)),
    spec("rl", "updates_per_batch", int(1, 64)),
    spec("rl", "scale_advantages", Kind::Bool),
    spec("rl", "reload_every", int(1, 1_000_000)),
    spec("rl", "reward_judge", float(0.0, 1000.0)),
    spec("rl", "reward_format", float(0.0, 1000.0)),
    spec("rl", "reward_layout", float(0.0, 1000.0)),
    spec("rl", "reward_contains", float(0.0, 1000.0)),
    spec("rl", "reward_human", float(0.0, 1000.0)),
    spec("rl", "contains_text", Kind::Str { non_empty: false }),
    spec("rl", "layout_window", int(1, 1_000_000)),
    spec("rl", "layout_warn_share", float_open(0.0, 1.0)),
    spec("kto", "desirable_weight", float_open(0.0, 1000.0)),
    spec("kto", "undesirable_weight", float_open(0.0, 1000.0)),
    spec(
        "kto",
        "reference_point",
        Kind::Enum {
            values: KTO_REFERENCE_POINTS,
            note: "",
        },
    ),
    spec("eval", "rounds", int(1, 1000)),
    spec("eval", "seeds", int(1, 1000)),
    spec("eval", "max_new_tokens", int(1, 131_072)),
    spec(
        "eval",
        "next_speaker",
        Kind::Enum {
            values: EVAL_NEXT_SPEAKERS,
            note: "",
        },
    ),
    spec("eval", "environment", Kind::Bool),
    spec("eval", "resamples", int(1, 1_000_000)),
    // Empty means "the chat model".
    spec("eval", "judge_model", Kind::Str { non_empty: false }),
    spec("limits", "session_mb", int(1, 1_048_576)),
    spec("limits", "dataset_mb", int(1, 1_048_576)),
    spec("eval", "repetition_overlap", float_open(0.0, 1.0)),
    spec("eval", "calibration_storyline_consistency", float(0.0, 1.0)),
    spec("eval", "calibration_anthropomorphism", float(0.0, 1.0)),
    spec("eval", "calibration_character_fidelity", float(0.0, 1.0)),
    spec("eval", "calibration_storyline_quality", float(0.0, 1.0)),
    spec("lore", "books", Kind::StrList),
    spec("lore", "scan_depth", int(0, 1000)),
    spec("lore", "budget", int(1, 10_000_000)),
    spec("lore", "budget_cap", int(0, 10_000_000)),
    spec("lore", "recursive", Kind::Bool),
    spec("lore", "max_recursion_steps", int(0, 100)),
    spec("lore", "case_sensitive", Kind::Bool),
    spec("lore", "match_whole_words", Kind::Bool),
    spec("lore", "include_names", Kind::Bool),
    spec("memory", "budget_tokens", int(0, 1_000_000)),
    spec("memory", "summary_threshold", float(0.0, 1.0)),
    spec("memory", "keep_recent", int(0, 10_000)),
    spec("memory", "summary_max_tokens", int(16, 131_072)),
    spec(
        "memory",
        "summarizer",
        Kind::Enum {
            values: &her_core::story::Summarizer::NAMES,
            note: "(judge: the [judge] backend writes it)",
        },
    ),
    spec("keys", "quit", Kind::Str { non_empty: false }),
    spec("keys", "help", Kind::Str { non_empty: false }),
    spec("keys", "submit", Kind::Str { non_empty: false }),
    spec("keys", "newline", Kind::Str { non_empty: false }),
    spec("keys", "editor", Kind::Str { non_empty: false }),
    spec("keys", "history_prev", Kind::Str { non_empty: false }),
    spec("keys", "history_next", Kind::Str { non_empty: false }),
    spec("keys", "focus_input", Kind::Str { non_empty: false }),
    spec("keys", "focus_transcript", Kind::Str { non_empty: false }),
    spec("keys", "select_prev", Kind::Str { non_empty: false }),
    spec("keys", "select_next", Kind::Str { non_empty: false }),
    spec("keys", "page_up", Kind::Str { non_empty: false }),
    spec("keys", "page_down", Kind::Str { non_empty: false }),
    spec("keys", "bottom", Kind::Str { non_empty: false }),
    spec("keys", "stop", Kind::Str { non_empty: false }),
    spec("keys", "regenerate", Kind::Str { non_empty: false }),
    spec("keys", "swipe_prev", Kind::Str { non_empty: false }),
    spec("keys", "swipe_next", Kind::Str { non_empty: false }),
    spec("keys", "continue", Kind::Str { non_empty: false }),
    spec("keys", "edit", Kind::Str { non_empty: false }),
    spec("keys", "delete", Kind::Str { non_empty: false }),
    spec("keys", "pin", Kind::Str { non_empty: false }),
    spec("keys", "rate_up", Kind::Str { non_empty: false }),
    spec("keys", "rate_down", Kind::Str { non_empty: false }),
    spec("keys", "rate_1", Kind::Str { non_empty: false }),
    spec("keys", "rate_2", Kind::Str { non_empty: false }),
    spec("keys", "rate_3", Kind::Str { non_empty: false }),
    spec("keys", "rate_4", Kind::Str { non_empty: false }),
    spec("keys", "rate_5", Kind::Str { non_empty: false }),
    spec("keys", "rate", Kind::Str { non_empty: false }),
    spec("keys", "arena", Kind::Str { non_empty: false }),
    spec("keys", "toggle_plan", Kind::Str { non_empty: false }),
    spec("keys", "toggle_thoughts", Kind::Str { non_empty: false }),
    spec("keys", "toggle_raw", Kind::Str { non_empty: false }),
    spec("keys", "toggle_tree", Kind::Str { non_empty: false }),
    spec(
        "keys",
        "token_probabilities",
        Kind::Str { non_empty: false },
    ),
    spec("keys", "close", Kind::Str { non_empty: false }),
    spec("keys", "pick_left", Kind::Str { non_empty: false }),
    spec("keys", "pick_right", Kind::Str { non_empty: false }),
    spec("keys", "tie", Kind::Str { non_empty: false }),
    spec("keys", "both_bad", Kind::Str { non_empty: false }),
    spec("keys", "skip", Kind::Str { non_empty: false }),
    spec("keys", "undo", Kind::Str { non_empty: false }),
];

pub(crate) fn find(section: &str, key: &str) -> Option<(usize, &'static KeySpec)> {
    KEYS.iter()
        .enumerate()
        .find(|(_, s)| s.section == section && s.key == key)
}

pub(crate) fn is_section(section: &str) -> bool {
    SECTIONS.contains(&section)
}

pub(crate) fn keys_in(section: &str) -> Vec<String> {
    KEYS.iter()
        .filter(|s| s.section == section)
        .map(|s| s.key.to_owned())
        .collect()
}

pub(crate) fn section_names() -> Vec<String> {
    SECTIONS.iter().map(|s| (*s).to_owned()).collect()
}

pub(crate) fn dotted_keys() -> Vec<String> {
    KEYS.iter().map(KeySpec::dotted).collect()
}
