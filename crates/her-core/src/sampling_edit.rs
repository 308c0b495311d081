//! Changing and reading sampler settings as a writer does in the chat:
//! `key=value` edits and presets (partial `[sampling]` tables) applied over
//! the settings in force, and the chain in effect described in the order
//! the samplers run.

use std::path::Path;

use serde_json::{Map, Value};

use crate::generation::{SAMPLER_NAMES, SamplingConfig};

/// Why an edit or a preset could not be applied: the key and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EditError(pub String);

/// `value` as written after `key=`: JSON when it reads as JSON (numbers,
/// `true`, `["dry", "temperature"]`, `"text"`), a plain string otherwise;
/// for a list key, a comma-separated plain value is a list of strings.
fn parse_value(value: &str, current: Option<&Value>) -> Value {
    if let Ok(parsed) = serde_json::from_str::<Value>(value) {
        return parsed;
    }
    match current {
        Some(Value::Array(_)) => Value::Array(
            value
                .split(',')
                .map(|s| Value::String(s.trim().to_owned()))
                .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
                .collect(),
        ),
        _ => Value::String(value.to_owned()),
    }
}

/// `base` with `changes` applied; every key must be a sampling key and
/// every value must have its type (ranges are the engine's to check).
pub fn apply(
    base: &SamplingConfig,
    changes: Map<String, Value>,
) -> Result<SamplingConfig, EditError> {
    let mut current = match serde_json::to_value(base) {
        Ok(Value::Object(map)) => map,
        _ => return Err(EditError("the sampling settings could not be read".into())),
    };
    for (key, value) in changes {
        if !current.contains_key(&key) {
            return Err(EditError(format!(
                "unknown sampling key '{key}' (keys: {})",
                current.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        current.insert(key, value);
    }
    serde_json::from_value(Value::Object(current))
        .map_err(|e| EditError(format!("a value has the wrong type: {e}")))
}

/// `base` with `key=value` edits applied (as `/sampling` takes them).
pub fn apply_edits(base: &SamplingConfig, edits: &[&str]) -> Result<SamplingConfig, EditError> {
    let known = match serde_json::to_value(base) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let mut changes = Map::new();
    for edit in edits {
        let Some((key, value)) = edit.split_once('=') else {
            return Err(EditError(format!("'{edit}' should be key=value")));
        };
        let key = key.trim();
        let parsed = parse_value(value.trim(), known.get(key));
        changes.insert(key.to_owned(), parsed);
    }
    apply(base, changes).map_err(|EditError(e)| EditError(format!("{e} (in {})", edits.join(" "))))
}

/// `base` with a preset file's keys applied: TOML with sampling keys at the
/// top level (or under `[sampling]`).
pub fn apply_preset(base: &SamplingConfig, toml_text: &str) -> Result<SamplingConfig, EditError> {
    let table: toml::Table =
        toml::from_str(toml_text).map_err(|e| EditError(format!("not a preset: {e}")))?;
    let table = match table.get("sampling") {
        Some(toml::Value::Table(inner)) if table.len() == 1 => inner.clone(),
        _ => table,
    };
    let json = serde_json::to_value(&table).map_err(|e| EditError(format!("not a preset: {e}")))?;
    match json {
        Value::Object(changes) => apply(base, changes),
        _ => Err(EditError(
            "not a preset: expected a table of sampling keys".into(),
        )),
    }
}

/// A named preset: a partial `[sampling]` table from a `NAME.toml` file.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    pub name: String,
    pub text: String,
}

/// The presets in `dirs` (`NAME.toml` files; a name found in an earlier
/// folder wins), sorted by name, and a line per file that could not be
/// read. A missing folder has none.
pub fn read_presets(dirs: &[&Path]) -> (Vec<Preset>, Vec<String>) {
    let mut found: Vec<Preset> = Vec::new();
    let mut warnings = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut paths: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        for path in paths {
            let Some(name) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
                continue;
            };
            if found.iter().any(|p| p.name == name) {
                continue;
            }
            match crate::fsutil::read::bytes(&path, crate::fsutil::read::Kind::Config) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => found.push(Preset { name, text }),
                    Err(_) => warnings.push(format!("preset '{}': not UTF-8 text", path.display())),
                },
                Err(e) => warnings.push(format!("preset: {e}")),
            }
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    (found, warnings)
}

/// The chain in effect, one line a sampler in the order they run, each
/// with its settings or why it does nothing; logit bias first, banned
/// phrases and the draw last.
pub fn describe_chain(s: &SamplingConfig) -> Vec<String> {
    let mut out = Vec::new();
    if s.logit_bias.is_empty() {
        out.push("logit bias: none".to_owned());
    } else {
        let each: Vec<String> = s.logit_bias.iter().map(ToString::to_string).collect();
        out.push(format!("logit bias: {}", each.join(", ")));
    }
    for (i, name) in s.order.iter().enumerate() {
        out.push(format!("{}. {}", i + 1, describe_sampler(s, name)));
    }
    let left_out: Vec<&str> = SAMPLER_NAMES
        .iter()
        .copied()
        .filter(|n| !s.order.iter().any(|o| o == n))
        .collect();
    if !left_out.is_empty() {
        out.push(format!(
            "not in sampling.order (never run): {}",
            left_out.join(", ")
        ));
    }
    out.push(if s.banned_phrases.is_empty() {
        "banned phrases: none".to_owned()
    } else {
        format!(
            "banned phrases: {} (rewind and resample, at most {} times a reply)",
            s.banned_phrases
                .iter()
                .map(|p| format!("{p:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            s.banned_phrase_retries
        )
    });
    out.push(if s.temperature <= 0.0 {
        "draw: greedy (temperature 0)".to_owned()
    } else {
        format!("draw: seeded random, seed {}", s.seed)
    });
    out
}

fn describe_sampler(s: &SamplingConfig, name: &str) -> String {
    let off = |why: &str| format!("{name}: off ({why})");
    match name {
        "penalties" if s.repeat_penalty == 1.0 => off("repeat_penalty = 1"),
        "penalties" => format!(
            "penalties: repeat ×{} over the last {} tokens",
            s.repeat_penalty, s.repeat_last_n
        ),
        "dry" if s.dry_multiplier == 0.0 || s.dry_penalty_last_n == 0 => {
            off("dry_multiplier = 0 or dry_penalty_last_n = 0")
        }
        "dry" => format!(
            "dry: multiplier {}, base {}, allowed length {}, last {} tokens, breakers {:?}",
            s.dry_multiplier,
            s.dry_base,
            s.dry_allowed_length,
            s.dry_penalty_last_n,
            s.dry_sequence_breakers
        ),
        "top_n_sigma" if s.top_n_sigma <= 0.0 => off("top_n_sigma = 0"),
        "top_n_sigma" => format!("top_n_sigma: {}σ of the top logit", s.top_n_sigma),
        "top_k" if s.top_k == 0 => off("top_k = 0"),
        "top_k" => format!("top_k: {}", s.top_k),
        "typical_p" if s.typical_p >= 1.0 => off("typical_p = 1"),
        "typical_p" => format!("typical_p: {}", s.typical_p),
        "top_p" if s.top_p >= 1.0 => off("top_p = 1"),
        "top_p" => format!("top_p: {}", s.top_p),
        "min_p" if s.min_p <= 0.0 => off("min_p = 0"),
        "min_p" => format!("min_p: {}", s.min_p),
        "xtc" if s.xtc_probability <= 0.0 || s.xtc_threshold > 0.5 => {
            off("xtc_probability = 0 or xtc_threshold > 0.5")
        }
        "xtc" => format!(
            "xtc: probability {}, threshold {}",
            s.xtc_probability, s.xtc_threshold
        ),
        "temperature" => format!("temperature: {}", s.temperature),
        other => format!("{other}: unknown sampler"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_reach_every_key_with_its_type_and_name_what_is_wrong() {
        let base = SamplingConfig::default();
        let s = apply_edits(
            &base,
            &[
                "dry_multiplier=0.8",
                "xtc_probability=0.5",
                "order=dry,temperature",
                "seed=7",
            ],
        );
        let s = s.unwrap_or_default();
        assert_eq!(s.dry_multiplier, 0.8);
        assert_eq!(s.xtc_probability, 0.5);
        assert_eq!(s.order, ["dry", "temperature"]);
        assert_eq!(s.seed, 7);
        let json = apply_edits(
            &base,
            &[r#"banned_phrases=["shivers down", "ministrations"]"#],
        );
        assert_eq!(json.unwrap_or_default().banned_phrases.len(), 2);

        let unknown = apply_edits(&base, &["temprature=1"]).err().map(|e| e.0);
        assert!(unknown.is_some_and(|e| e.contains("unknown sampling key 'temprature'")));
        let typed = apply_edits(&base, &["top_k=many"]).err().map(|e| e.0);
        assert!(typed.is_some_and(|e| e.contains("wrong type") && e.contains("top_k=many")));
        let shape = apply_edits(&base, &["top_k"]).err().map(|e| e.0);
        assert!(shape.is_some_and(|e| e.contains("key=value")));
    }

    #[test]
    fn a_preset_changes_only_its_keys() {
        let base = SamplingConfig {
            seed: 9,
            ..SamplingConfig::default()
        };
        let preset = "temperature = 1.1\nmin_p = 0.05\ndry_multiplier = 0.8\n";
        let s = apply_preset(&base, preset).unwrap_or_default();
        assert_eq!((s.temperature, s.min_p, s.dry_multiplier), (1.1, 0.05, 0.8));
        assert_eq!(s.seed, 9, "keys the preset does not name stay");
        let nested = apply_preset(&base, "[sampling]\ntop_k = 0\n").unwrap_or_default();
        assert_eq!(nested.top_k, 0);
        let bad = apply_preset(&base, "colour = 3\n").err().map(|e| e.0);
        assert!(bad.is_some_and(|e| e.contains("unknown sampling key 'colour'")));
    }

    #[test]
    fn the_chain_reads_in_order_and_says_what_is_off() {
        let s = SamplingConfig {
            order: vec!["dry".into(), "min_p".into(), "temperature".into()],
            dry_multiplier: 0.8,
            banned_phrases: vec!["shivers".into()],
            ..SamplingConfig::default()
        };
        let chain = describe_chain(&s);
        assert!(chain[0].starts_with("logit bias"));
        assert!(chain[1].starts_with("1. dry: multiplier 0.8"), "{chain:?}");
        assert_eq!(chain[2], "2. min_p: off (min_p = 0)");
        assert_eq!(chain[3], "3. temperature: 0.7");
        assert!(
            chain[4].contains("never run") && chain[4].contains("top_k"),
            "{chain:?}"
        );
        assert!(chain[5].contains("\"shivers\""));
        assert!(chain[6].starts_with("draw: seeded random"));
    }
}
