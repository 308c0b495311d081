//! Reading the layers and merging them, lowest to highest:
//! built-in defaults < studio `config.toml` < user config file < `HER_*`
//! environment variables < command-line overrides.

use std::io;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use crate::config::env::{self, ENV_PREFIX};
use crate::config::error::{ConfigError, Source};
use crate::config::schema::KEYS;
use crate::config::validate::{self, Entry};
use crate::config::{Config, DEFAULT_CONFIG_TOML, STUDIO_CONFIG_FILE, user_config_path};
use her_core::fsutil::read::{self, Kind};

/// Where the layers between the defaults and the command line come from.
/// Every part is injectable so tests need no real home directory or environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigSources {
    /// The studio folder's `config.toml`; `None` or a missing file is skipped.
    pub studio_file: Option<PathBuf>,
    /// The user's config file; `None` or a missing file is skipped.
    pub user_file: Option<PathBuf>,
    /// Environment variables (name, value); only `HER_*` ones are read.
    pub env: Vec<(String, String)>,
}

impl ConfigSources {
    /// The real sources: `<studio_dir>/config.toml`, the user's config file
    /// and this process's `HER_*` environment variables (sorted by name so
    /// the first error reported does not depend on environment order).
    pub fn from_process(studio_dir: &Path) -> Self {
        let mut env: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(name, value)| {
                let name = name.into_string().ok()?;
                // Lossy: a non-UTF-8 value then fails validation with a readable message.
                name.starts_with(ENV_PREFIX)
                    .then(|| (name, value.to_string_lossy().into_owned()))
            })
            .collect();
        env.sort();
        Self {
            studio_file: Some(studio_dir.join(STUDIO_CONFIG_FILE)),
            user_file: user_config_path(),
            env,
        }
    }
}

/// The merged settings and the layer that set each key.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedConfig {
    pub config: Config,
    /// Every key as `section.key`, in `config.toml` order, with the layer
    /// that set its final value.
    pub provenance: Vec<(String, Source)>,
    /// What was skipped on the way (an unreachable user config folder), for
    /// the log once it is open.
    pub warnings: Vec<String>,
}

impl LoadedConfig {
    /// The layer that set a dotted key, e.g. `source_of("sampling.top_p")`.
    pub fn source_of(&self, dotted_key: &str) -> Option<&Source> {
        self.provenance
            .iter()
            .find(|(key, _)| key == dotted_key)
            .map(|(_, source)| source)
    }
}

/// Loads and merges every layer. `overrides` are command-line settings as
/// (`section.key`, value text), applied last in order.
///
/// Each layer is validated on its own, so an error names the file, variable
/// or flag that introduced the bad value; a missing file is skipped.
pub fn load(
    sources: &ConfigSources,
    overrides: &[(String, String)],
) -> Result<LoadedConfig, ConfigError> {
    // Slot per schema key: current value and the layer that set it.
    let mut slots: Vec<Option<(Value, Source)>> = vec![None; KEYS.len()];
    let mut apply = |entries: Vec<(Entry, Source)>| {
        for ((index, value), source) in entries {
            if let Some(slot) = slots.get_mut(index) {
                *slot = Some((value, source));
            }
        }
    };

    let defaults_path = Path::new("<built-in defaults>");
    apply(file_layer(
        Source::Default,
        defaults_path,
        Some(DEFAULT_CONFIG_TOML.to_owned()),
    )?);
    if let Some(path) = &sources.studio_file {
        apply(file_layer(
            Source::StudioFile(path.clone()),
            path,
            read_optional(path)?,
        )?);
    }
    let mut warnings = Vec::new();
    if let Some(path) = &sources.user_file {
        apply(file_layer(
            Source::UserFile(path.clone()),
            path,
            read_user_config(path, &mut warnings)?,
        )?);
    }
    apply(env::env_layer(&sources.env)?);
    apply(env::flag_layer(overrides)?);

    let mut merged = Table::new();
    let mut provenance = Vec::with_capacity(KEYS.len());
    for (spec, slot) in KEYS.iter().zip(slots) {
        // A key missing from the defaults shows up as a Build error below.
        let Some((value, source)) = slot else {
            continue;
        };
        if let Value::Table(section) = merged
            .entry(spec.section)
            .or_insert_with(|| Value::Table(Table::new()))
        {
            section.insert(spec.key.to_owned(), value);
        }
        provenance.push((spec.dotted(), source));
    }
    let config: Config = merged
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Build {
            message: e.message().to_owned(),
        })?;

    let loaded = LoadedConfig {
        config,
        provenance,
        warnings,
    };
    check_cross_fields(&loaded)?;
    Ok(loaded)
}

/// Rules between keys, checked on the merged result (a layer may fix what a
/// lower one broke); the error blames the highest layer involved.
fn check_cross_fields(loaded: &LoadedConfig) -> Result<(), ConfigError> {
    let model = &loaded.config.model;
    if model.n_batch > model.n_ctx {
        let layer = ["model.n_batch", "model.n_ctx"]
            .iter()
            .filter_map(|key| loaded.source_of(key))
            .max_by_key(|source| source.priority())
            .cloned()
            .unwrap_or(Source::Default);
        return Err(ConfigError::Invalid {
            layer,
            key: "model.n_batch".to_owned(),
            message: format!(
                "'model.n_batch' ({}) must not exceed 'model.n_ctx' ({})",
                model.n_batch, model.n_ctx
            ),
        });
    }
    Ok(())
}

/// `None` when the file does not exist; other read failures are errors.
fn read_optional(path: &Path) -> Result<Option<String>, ConfigError> {
    read::optional_text(path, Kind::Config).map_err(|cause| ConfigError::Read { cause })
}

/// The user's config file. A folder on its path that cannot be reached (an
/// unreadable `$HOME`, or one that is a file) means no user config, with a
/// warning: the studio must still open. A file that is there but cannot be
/// read is an error, as for the studio's.
fn read_user_config(
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<Option<String>, ConfigError> {
    match std::fs::metadata(path) {
        Ok(_) => read_optional(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => {
            warnings.push(format!(
                "the user config '{}' cannot be reached ({e}); continuing without it",
                path.display()
            ));
            Ok(None)
        }
    }
}

fn file_layer(
    layer: Source,
    path: &Path,
    text: Option<String>,
) -> Result<Vec<(Entry, Source)>, ConfigError> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    let table = parse_toml(path, &text)?;
    let entries = validate::validate_table(&layer, &table)?;
    Ok(entries.into_iter().map(|e| (e, layer.clone())).collect())
}

pub(crate) fn parse_toml(path: &Path, text: &str) -> Result<Table, ConfigError> {
    text.parse::<Table>().map_err(|e| ConfigError::InvalidToml {
        path: path.to_owned(),
        position: e.span().and_then(|span| line_column(text, span.start)),
        message: e.message().trim().replace('\n', "; "),
    })
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> Option<(usize, usize)> {
    let before = text.get(..offset)?;
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..)?.chars().count() + 1;
    Some((line, column))
}
