//! Where a setting came from, and everything that can go wrong loading one.

use std::fmt;
use std::path::PathBuf;

/// The layer that set a key (lowest priority first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in defaults (the embedded `config.toml`).
    Default,
    /// `config.toml` in the studio folder.
    StudioFile(PathBuf),
    /// The user's config file, e.g. `~/.config/her-studio/config.toml`.
    UserFile(PathBuf),
    /// A `HER_*` environment variable (its name).
    Env(String),
    /// A command-line override (its dotted key).
    Flag(String),
}

impl Source {
    /// Higher wins; used to blame the right layer for cross-field errors.
    pub fn priority(&self) -> u8 {
        match self {
            Source::Default => 0,
            Source::StudioFile(_) => 1,
            Source::UserFile(_) => 2,
            Source::Env(_) => 3,
            Source::Flag(_) => 4,
        }
    }

    /// How error messages name the layer: a file is just its quoted path.
    pub fn location(&self) -> String {
        match self {
            Source::StudioFile(p) | Source::UserFile(p) => format!("'{}'", p.display()),
            other => other.to_string(),
        }
    }
}

/// The long form, for `her doctor`.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("built-in defaults"),
            Source::StudioFile(p) => write!(f, "studio config '{}'", p.display()),
            Source::UserFile(p) => write!(f, "user config '{}'", p.display()),
            Source::Env(name) => write!(f, "environment variable '{name}'"),
            Source::Flag(key) => write!(f, "command-line override '{key}'"),
        }
    }
}

/// Everything that can go wrong while loading settings. Each message names
/// the layer (file, variable or flag), the key and what was expected.
///
/// The layer field is called `layer` because thiserror treats a field named
/// `source` as the wrapped error.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read (a folder, a FIFO, too large, not UTF-8…).
    #[error("config error: {cause}")]
    Read {
        cause: her_core::fsutil::read::ReadError,
    },

    #[error("config error in '{}': invalid TOML{}: {message}", .path.display(), position_text(.position))]
    InvalidToml {
        path: PathBuf,
        /// 1-based (line, column), when the parser reported one.
        position: Option<(usize, usize)>,
        message: String,
    },

    #[error("config error in {}: unknown section '{section}'; expected one of: {}", .layer.location(), .expected.join(", "))]
    UnknownSection {
        layer: Source,
        section: String,
        expected: Vec<String>,
    },

    #[error("config error in {}: unknown key '{key}'; expected one of: {}", .layer.location(), .expected.join(", "))]
    UnknownKey {
        layer: Source,
        /// Dotted, e.g. `sampling.temprature`.
        key: String,
        /// Valid keys of that section (or dotted keys when no section was given).
        expected: Vec<String>,
    },

    #[error("config error in environment variable '{name}': it matches no setting; expected one of: {}", .expected.join(", "))]
    UnknownEnvVar { name: String, expected: Vec<String> },

    #[error("config error in {}: '{key}' must be {expected}, found {found}", .layer.location())]
    WrongType {
        layer: Source,
        key: String,
        expected: String,
        /// e.g. `a string 'hot'`.
        found: String,
    },

    /// Also covers bad enum values and empty strings.
    #[error("config error in {}: '{key}' must not contain a NUL character (\\u0000)", .layer.location())]
    Nul { layer: Source, key: String },

    #[error("config error in {}: '{key}' must be {expected}, found '{value}'", .layer.location())]
    OutOfRange {
        layer: Source,
        key: String,
        value: String,
        expected: String,
    },

    /// A rule between keys, e.g. `model.n_batch <= model.n_ctx`; blames the
    /// highest layer that set either key.
    #[error("config error in {}: {message}", .layer.location())]
    Invalid {
        layer: Source,
        key: String,
        message: String,
    },

    /// The merged, validated settings did not deserialize into `Config`.
    /// Only a mismatch between the schema and the structs can cause this.
    #[error("config error: the merged settings do not fit the configuration type: {message}")]
    Build { message: String },
}

fn position_text(position: &Option<(usize, usize)>) -> String {
    match position {
        Some((line, column)) => format!(" at line {line}, column {column}"),
        None => String::new(),
    }
}
