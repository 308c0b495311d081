//! `HER_<SECTION>_<KEY>` environment variables and `section.key` command-line
//! overrides: both are text that is parsed by the key's type.

use crate::config::error::{ConfigError, Source};
use crate::config::schema::{self, KeySpec};
use crate::config::validate::{self, Entry};

/// Every settings variable starts with this.
pub const ENV_PREFIX: &str = "HER_";

/// `HER_*` variables that are not settings and are ignored here instead of
/// being rejected as unknown. `HER_LOG` is reserved for a `RUST_LOG`-style
/// filter that the logging setup reads itself.
pub const ENV_IGNORED: &[&str] = &["HER_LOG", "HER_STUDIO"];

/// The variable that sets a dotted key, e.g. `sampling.top_p` → `HER_SAMPLING_TOP_P`.
pub fn env_var_for(dotted_key: &str) -> Option<String> {
    let (section, key) = dotted_key.split_once('.')?;
    schema::find(section, key).map(|(_, spec)| spec.env_var())
}

/// Validates the environment layer. Variables without the prefix are skipped;
/// a later duplicate wins, like a later file line would.
pub(crate) fn env_layer(env: &[(String, String)]) -> Result<Vec<(Entry, Source)>, ConfigError> {
    let mut entries = Vec::new();
    for (name, text) in env {
        if !name.starts_with(ENV_PREFIX) || ENV_IGNORED.contains(&name.as_str()) {
            continue;
        }
        // Keys contain underscores, so match whole names instead of splitting.
        let Some((index, spec)) = schema::KEYS
            .iter()
            .enumerate()
            .find(|(_, spec)| spec.env_var() == *name)
        else {
            return Err(ConfigError::UnknownEnvVar {
                name: name.clone(),
                expected: env_suggestions(name),
            });
        };
        let layer = Source::Env(name.clone());
        let value = validate::value_from_text(&layer, spec, text)?;
        entries.push(((index, value), layer));
    }
    Ok(entries)
}

/// Same section's variables if the name starts with one, else one pattern per section.
fn env_suggestions(name: &str) -> Vec<String> {
    let in_section: Vec<String> = schema::SECTIONS
        .iter()
        .map(|section| format!("{ENV_PREFIX}{}_", section.to_ascii_uppercase()))
        .find(|prefix| name.starts_with(prefix.as_str()))
        .map(|prefix| {
            schema::KEYS
                .iter()
                .map(KeySpec::env_var)
                .filter(|var| var.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    if !in_section.is_empty() {
        return in_section;
    }
    schema::SECTIONS
        .iter()
        .map(|section| format!("{ENV_PREFIX}{}_*", section.to_ascii_uppercase()))
        .collect()
}

/// Validates command-line overrides given as (`section.key`, value text).
pub(crate) fn flag_layer(
    overrides: &[(String, String)],
) -> Result<Vec<(Entry, Source)>, ConfigError> {
    let mut entries = Vec::new();
    for (dotted, text) in overrides {
        let layer = Source::Flag(dotted.clone());
        let Some((section, key)) = dotted.split_once('.') else {
            return Err(ConfigError::UnknownKey {
                layer,
                key: dotted.clone(),
                expected: schema::dotted_keys(),
            });
        };
        if !schema::is_section(section) {
            return Err(ConfigError::UnknownSection {
                layer,
                section: section.to_owned(),
                expected: schema::section_names(),
            });
        }
        let Some((index, spec)) = schema::find(section, key) else {
            return Err(ConfigError::UnknownKey {
                layer,
                key: dotted.clone(),
                expected: schema::keys_in(section),
            });
        };
        let value = validate::value_from_text(&layer, spec, text)?;
        entries.push(((index, value), layer));
    }
    Ok(entries)
}
