//! Order-preserving access to JSON text.
//!
//! serde_json without `preserve_order` sorts object keys, which would
//! reorder a card's `extensions` on export. So cards are validated once by
//! serde_json, minified, and then walked as text: objects are split into
//! (raw key, raw value) slices that can be written back byte for byte.
//! The walk is iterative, so deeply nested input cannot overflow the stack.

use std::path::Path;

use serde::Serialize;

use super::CardError;

/// Drops whitespace outside strings. The input must be valid JSON.
pub(crate) fn minify(valid: &str) -> String {
    let mut out = String::with_capacity(valid.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in valid.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

/// Index just past the string starting at `start` (which holds '"').
fn string_end(s: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        match *s.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// Index just past the value starting at `start`, in minified JSON.
fn value_end(s: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    loop {
        let Some(&b) = s.get(i) else {
            return (depth == 0 && i > start).then_some(i);
        };
        match b {
            b'"' => {
                i = string_end(s, i)?;
                if depth == 0 {
                    return Some(i);
                }
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                if depth == 0 {
                    // A scalar ends where its container closes.
                    return (i > start).then_some(i);
                }
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            b',' if depth == 0 => return (i > start).then_some(i),
            _ => {}
        }
        i += 1;
    }
}

/// Splits `{"k":v,...}` into (raw key with quotes, raw value) pairs.
fn split_members(obj: &str) -> Option<Vec<(&str, &str)>> {
    let s = obj.as_bytes();
    if s.first() != Some(&b'{') || s.last() != Some(&b'}') {
        return None;
    }
    let mut out = Vec::new();
    if s.len() == 2 {
        return Some(out);
    }
    let mut i = 1;
    loop {
        if s.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(s, i)?;
        if s.get(key_end) != Some(&b':') {
            return None;
        }
        let value_start = key_end + 1;
        let end = value_end(s, value_start)?;
        out.push((obj.get(i..key_end)?, obj.get(value_start..end)?));
        match s.get(end)? {
            b',' => i = end + 1,
            b'}' if end + 1 == s.len() => return Some(out),
            _ => return None,
        }
    }
}

/// Splits `[a,b,...]` into raw element slices.
fn split_elements(arr: &str) -> Option<Vec<&str>> {
    let s = arr.as_bytes();
    if s.first() != Some(&b'[') || s.last() != Some(&b']') {
        return None;
    }
    let mut out = Vec::new();
    if s.len() == 2 {
        return Some(out);
    }
    let mut i = 1;
    loop {
        let end = value_end(s, i)?;
        out.push(arr.get(i..end)?);
        match s.get(end)? {
            b',' => i = end + 1,
            b']' if end + 1 == s.len() => return Some(out),
            _ => return None,
        }
    }
}

/// What a raw JSON value is, for error messages.
pub(crate) fn kind(raw: &str) -> &'static str {
    match raw.as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// One member of an object: decoded key, raw key (with quotes), raw value.
#[derive(Debug, Clone)]
pub(crate) struct Member<'a> {
    pub key: String,
    pub raw_key: &'a str,
    pub raw: &'a str,
}

/// A JSON object from minified text, with the field path used in errors
/// ("data.character_book.entries[3]").
#[derive(Debug, Clone)]
pub(crate) struct Obj<'a> {
    path: &'a Path,
    pub prefix: String,
    pub members: Vec<Member<'a>>,
}

impl<'a> Obj<'a> {
    /// Reads an object; `prefix` names it in errors ("" for the top level).
    pub fn parse(raw: &'a str, path: &'a Path, prefix: &str) -> Result<Self, CardError> {
        let field_error = |problem: String| CardError::Field {
            path: path.to_path_buf(),
            field: if prefix.is_empty() {
                "(top level)".into()
            } else {
                prefix.to_string()
            },
            problem,
        };
        if !raw.starts_with('{') {
            return Err(field_error(format!("must be an object, got {}", kind(raw))));
        }
        let pairs = split_members(raw)
            .ok_or_else(|| field_error("could not be split into fields".into()))?;
        let mut members: Vec<Member<'a>> = Vec::with_capacity(pairs.len());
        for (raw_key, value) in pairs {
            let key: String = serde_json::from_str(raw_key).map_err(|e| {
                field_error(format!("has a key {raw_key} that cannot be read: {e}"))
            })?;
            if members.iter().any(|m| m.key == key) {
                let field = join(prefix, &key);
                return Err(CardError::Field {
                    path: path.to_path_buf(),
                    field,
                    problem: "appears twice".into(),
                });
            }
            members.push(Member {
                key,
                raw_key,
                raw: value,
            });
        }
        Ok(Obj {
            path,
            prefix: prefix.to_string(),
            members,
        })
    }

    pub fn path(&self) -> &'a Path {
        self.path
    }

    pub fn field(&self, key: &str) -> String {
        join(&self.prefix, key)
    }

    fn error(&self, key: &str, problem: String) -> CardError {
        CardError::Field {
            path: self.path.to_path_buf(),
            field: self.field(key),
            problem,
        }
    }

    /// The raw value; `null` counts as absent, as many card writers emit it.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.members
            .iter()
            .find(|m| m.key == key)
            .map(|m| m.raw)
            .filter(|raw| *raw != "null")
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    fn decode_string(&self, key: &str, raw: &str) -> Result<String, CardError> {
        serde_json::from_str(raw)
            .map_err(|e| self.error(key, format!("is not a valid string: {e}")))
    }

    pub fn string(&self, key: &str) -> Result<Option<String>, CardError> {
        match self.get(key) {
            None => Ok(None),
            Some(raw) if raw.starts_with('"') => self.decode_string(key, raw).map(Some),
            Some(raw) => Err(self.error(key, format!("must be a string, got {}", kind(raw)))),
        }
    }

    pub fn text(&self, key: &str) -> Result<String, CardError> {
        Ok(self.string(key)?.unwrap_or_default())
    }

    /// An array of strings; absent means empty.
    pub fn strings(&self, key: &str) -> Result<Vec<String>, CardError> {
        let Some(raw) = self.get(key) else {
            return Ok(Vec::new());
        };
        let items = if raw.starts_with('[') {
            split_elements(raw)
        } else {
            None
        };
        let Some(items) = items else {
            return Err(self.error(
                key,
                format!("must be an array of strings, got {}", kind(raw)),
            ));
        };
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                if item.starts_with('"') {
                    self.decode_string(key, item)
                } else {
                    Err(self.error(
                        key,
                        format!(
                            "must be an array of strings, but item '{i}' is {}",
                            kind(item)
                        ),
                    ))
                }
            })
            .collect()
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, CardError> {
        match self.get(key) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(raw) => Err(self.error(key, format!("must be true or false, got {}", kind(raw)))),
        }
    }

    /// An integer; `100.0` is accepted since some editors write whole numbers as floats.
    pub fn int(&self, key: &str) -> Result<Option<i64>, CardError> {
        let Some(raw) = self.get(key) else {
            return Ok(None);
        };
        let not_int = || {
            self.error(
                key,
                format!("must be a whole number, got '{}'", shorten(raw)),
            )
        };
        if kind(raw) != "a number" {
            return Err(self.error(key, format!("must be a whole number, got {}", kind(raw))));
        }
        let number: serde_json::Number = serde_json::from_str(raw).map_err(|_| not_int())?;
        if let Some(i) = number.as_i64() {
            return Ok(Some(i));
        }
        match number.as_f64() {
            Some(f) if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 => {
                Ok(Some(f as i64))
            }
            _ => Err(not_int()),
        }
    }

    pub fn u32(&self, key: &str) -> Result<Option<u32>, CardError> {
        match self.int(key)? {
            None => Ok(None),
            Some(i) => u32::try_from(i).map(Some).map_err(|_| {
                self.error(
                    key,
                    format!("must be a whole number from 0 to {}, got '{i}'", u32::MAX),
                )
            }),
        }
    }

    pub fn object(&self, key: &str) -> Result<Option<Obj<'a>>, CardError> {
        match self.get(key) {
            None => Ok(None),
            Some(raw) => Obj::parse(raw, self.path, &self.field(key)).map(Some),
        }
    }

    /// An array of objects (absent means empty), refusing more than `max` items.
    pub fn objects(&self, key: &str, max: usize) -> Result<Vec<Obj<'a>>, CardError> {
        let Some(raw) = self.get(key) else {
            return Ok(Vec::new());
        };
        let items = if raw.starts_with('[') {
            split_elements(raw)
        } else {
            None
        };
        let Some(items) = items else {
            return Err(self.error(
                key,
                format!("must be an array of objects, got {}", kind(raw)),
            ));
        };
        if items.len() > max {
            return Err(self.error(
                key,
                format!("has '{}' items; the limit is '{max}'", items.len()),
            ));
        }
        let field = self.field(key);
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| Obj::parse(item, self.path, &format!("{field}[{i}]")))
            .collect()
    }

    /// The object's text, keeping only members `keep` accepts; "" when none remain.
    pub fn rebuild(&self, mut keep: impl FnMut(&Member<'a>) -> bool) -> String {
        let mut out = ObjWriter::compact();
        for m in self.members.iter().filter(|m| keep(m)) {
            out.raw_key(m.raw_key, m.raw);
        }
        if out.is_empty() {
            String::new()
        } else {
            out.finish()
        }
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn shorten(raw: &str) -> String {
    raw.chars().take(40).collect()
}

/// Writes a JSON object field by field, in the order given. With `pretty`,
/// each field goes on its own line at `depth`; nested values stay compact,
/// so raw text (a card's `extensions`) is written exactly as stored.
#[derive(Debug)]
pub(crate) struct ObjWriter {
    out: String,
    empty: bool,
    indent: Option<usize>,
}

impl ObjWriter {
    pub fn compact() -> Self {
        ObjWriter {
            out: "{".into(),
            empty: true,
            indent: None,
        }
    }

    pub fn pretty(depth: usize) -> Self {
        ObjWriter {
            out: "{".into(),
            empty: true,
            indent: Some(depth),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// Adds a field whose key is already JSON text (quotes included).
    pub fn raw_key(&mut self, raw_key: &str, raw_value: &str) {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        if let Some(depth) = self.indent {
            self.out.push('\n');
            self.out.push_str(&"  ".repeat(depth + 1));
        }
        self.out.push_str(raw_key);
        self.out.push(':');
        if self.indent.is_some() {
            self.out.push(' ');
        }
        self.out.push_str(raw_value);
    }

    pub fn raw(&mut self, key: &str, raw_value: &str) -> Result<(), serde_json::Error> {
        let key = serde_json::to_string(key)?;
        self.raw_key(&key, raw_value);
        Ok(())
    }

    pub fn value<T: Serialize + ?Sized>(
        &mut self,
        key: &str,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        let raw = serde_json::to_string(value)?;
        self.raw(key, &raw)
    }

    pub fn finish(mut self) -> String {
        if let Some(depth) = self.indent
            && !self.empty
        {
            self.out.push('\n');
            self.out.push_str(&"  ".repeat(depth));
        }
        self.out.push('}');
        self.out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn minify_keeps_strings() {
        let text = "{ \"a b\" : [1, 2.50, \"x \\\" y\"],\n\t\"c\": {} }";
        assert_eq!(minify(text), r#"{"a b":[1,2.50,"x \" y"],"c":{}}"#);
    }

    #[test]
    fn members_and_elements_split() {
        let text = r#"{"z":1,"a":{"b":[1,{"c":"]}"}]},"q\"":"x,y","n":null}"#;
        let members = split_members(text).unwrap();
        let keys: Vec<&str> = members.iter().map(|m| m.0).collect();
        assert_eq!(keys, [r#""z""#, r#""a""#, r#""q\"""#, r#""n""#]);
        assert_eq!(members[1].1, r#"{"b":[1,{"c":"]}"}]}"#);
        assert_eq!(
            split_elements(r#"[1,"a",[2,3],{}]"#).unwrap(),
            ["1", r#""a""#, "[2,3]", "{}"]
        );
        assert_eq!(split_elements("[]").unwrap(), Vec::<&str>::new());
    }

    #[test]
    fn typed_access_names_the_field() {
        let path = Path::new("c.json");
        let text = r#"{"data":{"tags":["a",3],"n":1.0,"m":-1,"s":null}}"#;
        let top = Obj::parse(text, path, "").unwrap();
        let data = top.object("data").unwrap().unwrap();
        let err = data.strings("tags").unwrap_err().to_string();
        assert!(
            err.contains("'data.tags'") && err.contains("item '1' is a number"),
            "{err}"
        );
        assert_eq!(data.int("n").unwrap(), Some(1));
        assert!(data.u32("m").unwrap_err().to_string().contains("'data.m'"));
        assert_eq!(data.string("s").unwrap(), None);
    }
}
