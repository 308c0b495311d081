//! Checking one layer's values against the schema, before it is merged, so an
//! error names the layer that introduced the bad value.

use toml::{Table, Value};

use crate::config::error::{ConfigError, Source};
use crate::config::schema::{self, KeySpec, Kind};

/// One validated setting: its index in `schema::KEYS` and its normalised value
/// (integers given for floats become floats).
pub(crate) type Entry = (usize, Value);

/// Validates a parsed TOML file (or the embedded defaults).
pub(crate) fn validate_table(layer: &Source, table: &Table) -> Result<Vec<Entry>, ConfigError> {
    let mut entries = Vec::new();
    for (section, value) in table {
        if !schema::is_section(section) {
            return Err(ConfigError::UnknownSection {
                layer: layer.clone(),
                section: section.clone(),
                expected: schema::section_names(),
            });
        }
        let Value::Table(keys) = value else {
            return Err(ConfigError::WrongType {
                layer: layer.clone(),
                key: section.clone(),
                expected: format!("a table ([{section}])"),
                found: describe(value),
            });
        };
        for (key, value) in keys {
            let Some((index, spec)) = schema::find(section, key) else {
                return Err(ConfigError::UnknownKey {
                    layer: layer.clone(),
                    key: format!("{section}.{key}"),
                    expected: schema::keys_in(section),
                });
            };
            entries.push((index, check_value(layer, spec, value)?));
        }
    }
    Ok(entries)
}

/// Parses the text of an environment variable or command-line override
/// according to the key's type, then validates it like a file value.
///
/// Strings are taken verbatim; string lists are either a TOML array literal
/// (`["a", "b"]`) or comma-separated (`a, b`, items trimmed, empty text = empty
/// list); booleans accept true/false, 1/0, yes/no, on/off.
pub(crate) fn value_from_text(
    layer: &Source,
    spec: &KeySpec,
    text: &str,
) -> Result<Value, ConfigError> {
    let trimmed = text.trim();
    let parsed = match spec.kind {
        Kind::Float { .. } => trimmed.parse::<f64>().ok().map(Value::Float),
        Kind::Int { .. } => trimmed.parse::<i64>().ok().map(Value::Integer),
        Kind::Bool => parse_bool(trimmed).map(Value::Boolean),
        // Leading/trailing spaces may be meaningful in a name or path.
        Kind::Str { .. } => Some(Value::String(text.to_owned())),
        Kind::Enum { .. } => Some(Value::String(trimmed.to_owned())),
        Kind::StrList | Kind::NameList { .. } => parse_list(trimmed),
        // Only the TOML array form: a comma list cannot hold tables.
        Kind::LogitBias if trimmed.starts_with('[') || trimmed.is_empty() => parse_list(trimmed),
        Kind::LogitBias => None,
    };
    let Some(value) = parsed else {
        return Err(ConfigError::WrongType {
            layer: layer.clone(),
            key: spec.dotted(),
            expected: spec.kind.expected(),
            found: format!("'{text}'"),
        });
    };
    check_value(layer, spec, &value)
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn parse_list(text: &str) -> Option<Value> {
    if text.starts_with('[') {
        // Reuse the TOML parser so quoting and escapes work as in a file.
        let mut table = format!("v = {text}").parse::<Table>().ok()?;
        return table.remove("v");
    }
    if text.is_empty() {
        return Some(Value::Array(Vec::new()));
    }
    Some(Value::Array(
        text.split(',')
            .map(|item| Value::String(item.trim().to_owned()))
            .collect(),
    ))
}

/// Checks type and range; returns the normalised value.
pub(crate) fn check_value(
    layer: &Source,
    spec: &KeySpec,
    value: &Value,
) -> Result<Value, ConfigError> {
    let wrong_type = |found: String| ConfigError::WrongType {
        layer: layer.clone(),
        key: spec.dotted(),
        expected: spec.kind.expected(),
        found,
    };
    let out_of_range = || ConfigError::OutOfRange {
        layer: layer.clone(),
        key: spec.dotted(),
        value: show(value),
        expected: spec.kind.expected(),
    };
    // A NUL cuts a path or a name short where it reaches the OS or C code.
    if holds_nul(value) {
        return Err(ConfigError::Nul {
            layer: layer.clone(),
            key: spec.dotted(),
        });
    }
    match spec.kind {
        Kind::Float {
            min,
            max,
            min_exclusive,
        } => {
            let x = match value {
                Value::Float(x) => *x,
                Value::Integer(i) => *i as f64,
                other => return Err(wrong_type(describe(other))),
            };
            // Written so that NaN fails too.
            let above_min = if min_exclusive { x > min } else { x >= min };
            if !(above_min && x <= max) {
                return Err(out_of_range());
            }
            Ok(Value::Float(x))
        }
        Kind::Int { min, max } => match value {
            Value::Integer(i) if (min..=max).contains(i) => Ok(value.clone()),
            Value::Integer(_) => Err(out_of_range()),
            other => Err(wrong_type(describe(other))),
        },
        Kind::Bool => match value {
            Value::Boolean(_) => Ok(value.clone()),
            other => Err(wrong_type(describe(other))),
        },
        Kind::Str { non_empty } => match value {
            Value::String(s) if non_empty && s.is_empty() => Err(out_of_range()),
            Value::String(_) => Ok(value.clone()),
            other => Err(wrong_type(describe(other))),
        },
        Kind::Enum { values, .. } => match value {
            Value::String(s) if values.contains(&s.as_str()) => Ok(value.clone()),
            Value::String(_) => Err(out_of_range()),
            other => Err(wrong_type(describe(other))),
        },
        Kind::StrList => {
            let Value::Array(items) = value else {
                return Err(wrong_type(describe(value)));
            };
            for item in items {
                match item {
                    Value::String(s) if s.is_empty() => return Err(out_of_range()),
                    Value::String(_) => {}
                    other => {
                        return Err(wrong_type(format!(
                            "an array containing {}",
                            describe(other)
                        )));
                    }
                }
            }
            Ok(value.clone())
        }
        Kind::NameList { values } => {
            let Value::Array(items) = value else {
                return Err(wrong_type(describe(value)));
            };
            for item in items {
                match item {
                    Value::String(s) if values.contains(&s.as_str()) => {}
                    // Name the one bad entry, not the whole list.
                    Value::String(s) => {
                        return Err(ConfigError::OutOfRange {
                            layer: layer.clone(),
                            key: spec.dotted(),
                            value: s.clone(),
                            expected: format!("one of {}", values.join(", ")),
                        });
                    }
                    other => {
                        return Err(wrong_type(format!(
                            "an array containing {}",
                            describe(other)
                        )));
                    }
                }
            }
            Ok(value.clone())
        }
        Kind::LogitBias => {
            let Value::Array(items) = value else {
                return Err(wrong_type(describe(value)));
            };
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(
                    check_bias_entry(item).map_err(|expected| ConfigError::OutOfRange {
                        layer: layer.clone(),
                        key: spec.dotted(),
                        value: show(item),
                        expected,
                    })?,
                );
            }
            Ok(Value::Array(out))
        }
    }
}

/// One logit-bias table, normalised (an integer bias becomes a float), or
/// what it should have been.
fn check_bias_entry(item: &Value) -> Result<Value, String> {
    let Value::Table(table) = item else {
        return Err("a table { token = ID, bias = B } or { text = \"…\", bias = B }".into());
    };
    if let Some(extra) = table
        .keys()
        .find(|k| !["token", "text", "bias"].contains(&k.as_str()))
    {
        return Err(format!(
            "a table with 'token' or 'text' and 'bias' (no '{extra}')"
        ));
    }
    let mut out = toml::Table::new();
    match (table.get("token"), table.get("text")) {
        (Some(Value::Integer(id)), None) if (0..=i64::from(i32::MAX)).contains(id) => {
            out.insert("token".into(), Value::Integer(*id));
        }
        (None, Some(Value::String(text))) if !text.is_empty() => {
            out.insert("text".into(), Value::String(text.clone()));
        }
        (Some(_), Some(_)) => return Err("either 'token' or 'text', not both".into()),
        (Some(_), None) => return Err("'token' as a token id, 0 or more".into()),
        (None, Some(_)) => return Err("'text' as a non-empty string".into()),
        (None, None) => return Err("a 'token' id or a 'text'".into()),
    }
    let bias = match table.get("bias") {
        Some(Value::Float(b)) => *b,
        Some(Value::Integer(b)) => *b as f64,
        _ => return Err("a numeric 'bias' (-100..=100, or -inf to ban)".into()),
    };
    if !(bias == f64::NEG_INFINITY || (-100.0..=100.0).contains(&bias)) {
        return Err("a 'bias' in -100..=100, or -inf to ban".into());
    }
    out.insert("bias".into(), Value::Float(bias));
    Ok(Value::Table(out))
}

fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        _ => false,
    }
}

/// A value as it appears inside quotes in a message: strings raw, the rest as TOML.
pub(crate) fn show(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// e.g. `a string 'hot'`, for the "found" half of a type error.
pub(crate) fn describe(value: &Value) -> String {
    let kind = match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        // A table's text can be long; the type says enough.
        Value::Table(_) => return "a table".to_owned(),
    };
    format!("{kind} '{}'", show(value))
}
