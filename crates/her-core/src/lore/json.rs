//! Reading the fields of one JSON object with errors that name the entry and
//! the field, accepting what real exports contain: `null` for "unset",
//! whole numbers written as floats. Fields not read are what is left for
//! `extra_fields`.

use std::path::Path;

use serde_json::Value;

use super::error::LoreError;
use super::model::JsonObject;
use super::validate::{Field, out_of_range, range};

pub struct Reader<'a> {
    obj: &'a JsonObject,
    used: Vec<String>,
    path: &'a Path,
    /// The entry as errors name it; empty for the book itself.
    entry: String,
    /// Field prefix in errors ("extensions.").
    prefix: String,
}

pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'a> Reader<'a> {
    pub fn new(obj: &'a JsonObject, path: &'a Path, entry: String) -> Reader<'a> {
        Reader {
            obj,
            used: Vec::new(),
            path,
            entry,
            prefix: String::new(),
        }
    }

    /// A reader for a nested object, naming its fields `prefix.field`.
    pub fn nested(&self, obj: &'a JsonObject, prefix: &str) -> Reader<'a> {
        Reader {
            obj,
            used: Vec::new(),
            path: self.path,
            entry: self.entry.clone(),
            prefix: format!("{}{prefix}.", self.prefix),
        }
    }

    pub fn error(&self, key: &str, problem: impl Into<String>) -> LoreError {
        let field = format!("{}{key}", self.prefix);
        if self.entry.is_empty() {
            LoreError::Field {
                path: self.path.to_path_buf(),
                field,
                problem: problem.into(),
            }
        } else {
            LoreError::Entry {
                path: self.path.to_path_buf(),
                entry: self.entry.clone(),
                field,
                problem: problem.into(),
            }
        }
    }

    fn wrong(&self, key: &str, expected: &str, v: &Value) -> LoreError {
        self.error(key, format!("must be {expected}, got {}", kind(v)))
    }

    pub fn has(&self, key: &str) -> bool {
        self.obj.contains_key(key)
    }

    /// The value, marking the field read; `null` reads as absent.
    pub fn get(&mut self, key: &str) -> Option<&'a Value> {
        let v = self.obj.get(key)?;
        self.used.push(key.to_string());
        (!v.is_null()).then_some(v)
    }

    pub fn bool(&mut self, key: &str) -> Result<Option<bool>, LoreError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong(key, "true or false", v)),
        }
    }

    pub fn string(&mut self, key: &str) -> Result<Option<String>, LoreError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.wrong(key, "a string", v)),
        }
    }

    pub fn number(&mut self, key: &str) -> Result<Option<f64>, LoreError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|f| f.is_finite())
                .map(Some)
                .ok_or_else(|| self.error(key, "must be a finite number")),
            Some(v) => Err(self.wrong(key, "a number", v)),
        }
    }

    /// A whole number (`3` or `3.0`).
    pub fn int(&mut self, key: &str) -> Result<Option<i64>, LoreError> {
        match self.get(key) {
            None => Ok(None),
            Some(v @ Value::Number(n)) => n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                        .map(|f| f as i64)
                })
                .map(Some)
                .ok_or_else(|| self.error(key, format!("must be a whole number, got '{v}'"))),
            Some(v) => Err(self.wrong(key, "a whole number", v)),
        }
    }

    /// A whole number within `field`'s range.
    pub fn uint(&mut self, key: &str, field: Field) -> Result<Option<u32>, LoreError> {
        let Some(n) = self.int(key)? else {
            return Ok(None);
        };
        let (min, max) = range(field);
        u32::try_from(n)
            .ok()
            .filter(|n| (min..=max).contains(n))
            .map(Some)
            .ok_or_else(|| self.error(key, out_of_range(field, n)))
    }

    pub fn strings(&mut self, key: &str) -> Result<Option<Vec<String>>, LoreError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(self.error(
                        &format!("{key}[{i}]"),
                        format!("must be a string, got {}", kind(other)),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(v) => Err(self.wrong(key, "an array of strings", v)),
        }
    }

    pub fn object(&mut self, key: &str) -> Result<Option<&'a JsonObject>, LoreError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(v) => Err(self.wrong(key, "an object", v)),
        }
    }

    /// The fields not read, in the object's order.
    pub fn rest(&self) -> JsonObject {
        self.obj
            .iter()
            .filter(|(k, _)| !self.used.iter().any(|u| u == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// A number written the way JavaScript writes it: whole numbers without
/// a fraction.
pub fn number_value(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Value::from(n as i64)
    } else {
        Value::from(n)
    }
}
