//! Key matching as SillyTavern does it (`WorldInfoBuffer.matchKeys`,
//! `parseRegexFromString`): a key written `/pattern/flags` is a JavaScript
//! regular expression run on the raw text; any other key is plain text,
//! lowercased unless case-sensitive, and with "whole words" on a single-word
//! key must sit between non-word characters (ASCII `\W`, as JavaScript's
//! regex without the `u` flag sees it).
//!
//! Plain keys of all entries go into two Aho-Corasick automata built once per
//! set of books (one over lowercased keys, one over case-sensitive ones), so a
//! scan reads each message once however many entries there are.

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, MatchKind};

/// Longest regex pattern accepted, in characters.
pub const MAX_REGEX_LEN: usize = 2000;
/// Compiled-program limits: keys are user data and must stay cheap.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
const FANCY_BACKTRACK_LIMIT: usize = 100_000;

/// A key's `/pattern/flags` parts if it is written as a regex the way
/// SillyTavern recognises one; anything else is a plain key.
pub fn regex_parts(key: &str) -> Option<(String, &str)> {
    let body = key.strip_prefix('/')?;
    let last = body.rfind('/')?;
    let (pattern, flags) = (&body[..last], &body[last + 1..]);
    if pattern.is_empty() || !flags.chars().all(|c| "gimsuy".contains(c)) {
        return None;
    }
    // The delimiter must be escaped inside the pattern.
    let bytes = pattern.as_bytes();
    let unescaped_slash = bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'/' && (i == 0 || bytes[i - 1] != b'\\'));
    if unescaped_slash {
        return None;
    }
    // A flag given twice is a JavaScript syntax error: not a regex then.
    let mut seen = String::new();
    for c in flags.chars() {
        if seen.contains(c) {
            return None;
        }
        seen.push(c);
    }
    Some((pattern.replace("\\/", "/"), flags))
}

/// What a key is once read.
pub enum KeyForm {
    Plain,
    Regex(JsRegex),
    /// Written as a regex but not compilable here; SillyTavern would treat it
    /// as plain text.
    BadRegex(String),
}

pub fn read_key(key: &str) -> KeyForm {
    match regex_parts(key) {
        None => KeyForm::Plain,
        Some((pattern, flags)) => match JsRegex::compile(&pattern, flags) {
            Ok(re) => KeyForm::Regex(re),
            Err(problem) => KeyForm::BadRegex(problem),
        },
    }
}

/// Checks a key for import: a regex key must compile.
pub fn check_key(key: &str) -> Result<(), String> {
    match read_key(key.trim()) {
        KeyForm::BadRegex(problem) => Err(problem),
        _ => Ok(()),
    }
}

/// A JavaScript regex compiled for Rust: the linear-time `regex` crate when
/// it can, fancy-regex (backtracking, bounded) for look-around and
/// back-references.
#[derive(Debug, Clone)]
pub enum JsRegex {
    Linear(regex::Regex),
    Backtracking(fancy_regex::Regex),
}

impl JsRegex {
    pub fn compile(pattern: &str, flags: &str) -> Result<JsRegex, String> {
        if pattern.chars().count() > MAX_REGEX_LEN {
            return Err(format!(
                "is a regex of more than {MAX_REGEX_LEN} characters"
            ));
        }
        let linear = regex::RegexBuilder::new(&translate(pattern, flags, Target::Linear))
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build();
        match linear {
            Ok(re) => Ok(JsRegex::Linear(re)),
            Err(linear_error) => {
                fancy_regex::RegexBuilder::new(&translate(pattern, flags, Target::Backtracking))
                    .backtrack_limit(FANCY_BACKTRACK_LIMIT)
                    .delegate_size_limit(REGEX_SIZE_LIMIT)
                    .delegate_dfa_size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map(JsRegex::Backtracking)
                    .map_err(|_| {
                        let message = linear_error.to_string();
                        let last = message
                            .lines()
                            .rev()
                            .find(|l| !l.trim().is_empty())
                            .unwrap_or("invalid syntax");
                        format!(
                            "is not a valid regex: {}",
                            last.trim().trim_start_matches("error: ")
                        )
                    })
            }
        }
    }

    /// Byte offset of the first match; a backtracking regex that exceeds its
    /// step limit counts as no match.
    pub fn find_start(&self, text: &str) -> Option<usize> {
        match self {
            JsRegex::Linear(re) => re.find(text).map(|m| m.start()),
            JsRegex::Backtracking(re) => re.find(text).ok().flatten().map(|m| m.start()),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Target {
    Linear,
    Backtracking,
}

const WORD: &str = "0-9A-Za-z_";

/// Rewrites JavaScript regex syntax into Rust's where they differ: ASCII
/// `\w \d \b` without the `u` flag, `.` excluding every line terminator,
/// `\cX`, `\0`, `[^]`, literal brackets and braces, the `y` flag.
fn translate(pattern: &str, flags: &str, target: Target) -> String {
    let unicode = flags.contains('u');
    let mut out = String::with_capacity(pattern.len() + 16);
    let inline: String = flags.chars().filter(|c| "ims".contains(*c)).collect();
    if !inline.is_empty() {
        out.push_str(&format!("(?{inline})"));
    }
    if flags.contains('y') {
        out.push_str(r"\A(?:");
    }
    let chars: Vec<char> = pattern.chars().collect();
    let mut in_class = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                let Some(&next) = chars.get(i + 1) else {
                    out.push_str(r"\\");
                    break;
                };
                i += 2;
                escape(&mut out, next, &chars, &mut i, in_class, unicode, target);
                continue;
            }
            '[' if in_class => out.push_str(r"\["),
            '[' => {
                if chars.get(i + 1) == Some(&'^') && chars.get(i + 2) == Some(&']') {
                    out.push_str(r"[\s\S]");
                    i += 3;
                    continue;
                }
                if chars.get(i + 1) == Some(&']') {
                    out.push_str(r"[^\s\S]");
                    i += 2;
                    continue;
                }
                in_class = true;
                out.push('[');
                if chars.get(i + 1) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '&' | '~' if in_class => {
                out.push('\\');
                out.push(c);
            }
            '.' if !in_class && !flags.contains('s') => out.push_str("[^\n\r\u{2028}\u{2029}]"),
            '{' if !in_class => match quantifier_len(&chars[i..]) {
                Some(len) => {
                    out.extend(&chars[i..i + len]);
                    i += len;
                    continue;
                }
                // JavaScript reads a brace that starts no quantifier literally.
                None => out.push_str(r"\{"),
            },
            '}' if !in_class => out.push_str(r"\}"),
            _ => out.push(c),
        }
        i += 1;
    }
    if flags.contains('y') {
        out.push(')');
    }
    out
}

fn escape(
    out: &mut String,
    next: char,
    chars: &[char],
    i: &mut usize,
    in_class: bool,
    unicode: bool,
    target: Target,
) {
    let bare = |class: &str, negated: bool| {
        if negated {
            format!("[^{class}]")
        } else if in_class {
            class.to_string()
        } else {
            format!("[{class}]")
        }
    };
    match next {
        'd' | 'D' | 'w' | 'W' if !unicode => {
            let class = if matches!(next, 'd' | 'D') {
                "0-9"
            } else {
                WORD
            };
            out.push_str(&bare(class, next.is_ascii_uppercase()));
        }
        'b' if in_class => out.push_str(r"\x08"),
        'b' | 'B' if !unicode => out.push_str(&ascii_boundary(next == 'B', target)),
        '/' => out.push('/'),
        '0' if !chars.get(*i).is_some_and(char::is_ascii_digit) => out.push_str(r"\x00"),
        'c' if chars.get(*i).is_some_and(char::is_ascii_alphabetic) => {
            let letter = chars[*i].to_ascii_uppercase() as u32;
            out.push_str(&format!(r"\x{{{:02X}}}", letter % 32));
            *i += 1;
        }
        // `\-` and friends: Rust accepts escaped punctuation as in JavaScript.
        other => {
            out.push('\\');
            out.push(other);
        }
    }
}

fn ascii_boundary(negated: bool, target: Target) -> String {
    match (target, negated) {
        (Target::Linear, false) => r"(?-u:\b)".into(),
        (Target::Linear, true) => r"(?-u:\B)".into(),
        (Target::Backtracking, false) => {
            format!("(?:(?<=[{WORD}])(?![{WORD}])|(?<![{WORD}])(?=[{WORD}]))")
        }
        (Target::Backtracking, true) => {
            format!("(?:(?<=[{WORD}])(?=[{WORD}])|(?<![{WORD}])(?![{WORD}]))")
        }
    }
}

/// Length of the `{n}`, `{n,}` or `{n,m}` quantifier starting here.
fn quantifier_len(rest: &[char]) -> Option<usize> {
    let close = rest.iter().position(|&c| c == '}')?;
    let inner: String = rest[1..close].iter().collect();
    let mut parts = inner.splitn(2, ',');
    let first = parts.next().unwrap_or("");
    let second = parts.next();
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    (!first.is_empty() && digits(first) && second.is_none_or(digits)).then_some(close + 1)
}

/// A word character for whole-word matching: ASCII letters, digits and `_`
/// (any byte of a multi-byte UTF-8 character is a boundary, as in
/// JavaScript's non-Unicode `\W`).
pub fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// `text[start..end]` stands between non-word characters or the text's ends.
pub fn is_whole_word(text: &[u8], start: usize, end: usize) -> bool {
    let before = start == 0 || !is_word_byte(text[start - 1]);
    let after = end >= text.len() || !is_word_byte(text[end]);
    before && after
}

/// Whole-word matching applies to single-word keys only; a key with spaces
/// is always a substring test.
pub fn wants_whole_word(setting: bool, key: &str) -> bool {
    setting && !key.chars().any(char::is_whitespace)
}

/// First offset of `needle` in `haystack` (already case-folded if needed),
/// as a whole word when asked.
pub fn find_plain(haystack: &str, needle: &str, whole_word: bool) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    let bytes = haystack.as_bytes();
    memchr::memmem::find_iter(bytes, needle.as_bytes())
        .find(|&start| !whole_word || is_whole_word(bytes, start, start + needle.len()))
}

/// Which automaton a plain key is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fold {
    /// Lowercased key, searched in lowercased text.
    Lower,
    /// Case-sensitive key, searched in the raw text.
    Exact,
}

/// A plain key's place in the automata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatternRef {
    pub fold: Fold,
    pub index: usize,
}

/// The deduplicated plain keys of a set of books and their automata.
#[derive(Debug, Default)]
pub struct PlainIndex {
    lower: Vec<String>,
    exact: Vec<String>,
    seen: HashMap<(bool, String), usize>,
    lower_ac: Option<AhoCorasick>,
    exact_ac: Option<AhoCorasick>,
}

impl PlainIndex {
    /// Adds a key (already folded for `Lower`) and returns its reference.
    pub fn add(&mut self, fold: Fold, text: String) -> PatternRef {
        let list = match fold {
            Fold::Lower => &mut self.lower,
            Fold::Exact => &mut self.exact,
        };
        let index = *self
            .seen
            .entry((fold == Fold::Exact, text))
            .or_insert_with_key(|(_, text)| {
                list.push(text.clone());
                list.len() - 1
            });
        PatternRef { fold, index }
    }

    /// Builds the automata; an automaton that cannot be built (it would
    /// exceed the crate's limits) leaves its keys unmatched.
    pub fn build(&mut self) -> Vec<String> {
        let mut warnings = Vec::new();
        let mut make = |patterns: &[String], what: &str| {
            if patterns.is_empty() {
                return None;
            }
            match AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(patterns)
            {
                Ok(ac) => Some(ac),
                Err(e) => {
                    warnings.push(format!("the {what} keys cannot be indexed: {e}"));
                    None
                }
            }
        };
        self.lower_ac = make(&self.lower, "case-insensitive");
        self.exact_ac = make(&self.exact, "case-sensitive");
        warnings
    }

    pub fn len(&self, fold: Fold) -> usize {
        match fold {
            Fold::Lower => self.lower.len(),
            Fold::Exact => self.exact.len(),
        }
    }

    /// Calls `hit(pattern, whole_word)` for every occurrence of every key in
    /// `text` (raw for `Exact`, lowercased for `Lower`).
    pub fn scan(&self, fold: Fold, text: &str, mut hit: impl FnMut(usize, bool)) {
        let ac = match fold {
            Fold::Lower => &self.lower_ac,
            Fold::Exact => &self.exact_ac,
        };
        let Some(ac) = ac else { return };
        let bytes = text.as_bytes();
        for m in ac.find_overlapping_iter(text) {
            let whole = is_whole_word(bytes, m.start(), m.end());
            hit(m.pattern().as_usize(), whole);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn matches(key: &str, text: &str) -> bool {
        match read_key(key) {
            KeyForm::Regex(re) => re.find_start(text).is_some(),
            _ => panic!("'{key}' is not a regex"),
        }
    }

    #[test]
    fn regex_keys_are_recognised_as_sillytavern_does() {
        assert!(regex_parts("/dragon/i").is_some());
        assert!(regex_parts("/a\\/b/").is_some());
        // An unescaped slash inside, unknown or repeated flags, an empty
        // pattern: plain text.
        assert!(regex_parts("/usr/bin/").is_none());
        assert!(regex_parts("/dragon/x").is_none());
        assert!(regex_parts("/dragon/ii").is_none());
        assert!(regex_parts("//").is_none());
        assert!(regex_parts("dragon").is_none());
        assert_eq!(regex_parts("/a\\/b/gi").unwrap(), ("a/b".to_string(), "gi"));
    }

    #[test]
    fn javascript_semantics_are_kept() {
        // \w, \b and \d are ASCII without the u flag: "é" is a boundary.
        assert!(matches(r"/\bcaf\b/", "un café"));
        assert!(!matches(r"/^\w+$/", "café"));
        assert!(matches(r"/^\w+$/u", "café"));
        assert!(matches("/DRAGON/i", "a dragon"));
        assert!(!matches("/DRAGON/", "a dragon"));
        // `.` stops at \r as in JavaScript; the s flag lets it through.
        assert!(!matches("/a.b/", "a\rb"));
        assert!(matches("/a.b/s", "a\rb"));
        // [^] is "any character"; a brace that is no quantifier is literal.
        assert!(matches("/a[^]b/", "a\nb"));
        assert!(matches("/{{char}}/", "hello {{char}}"));
        assert!(matches("/a{2}/", "caab"));
        // y anchors at the start.
        assert!(matches("/ab/y", "abc"));
        assert!(!matches("/bc/y", "abc"));
        // Look-around and back-references use the backtracking engine.
        assert!(matches("/cat(?!s)/", "a cat!"));
        assert!(!matches("/cat(?!s)/", "cats"));
        assert!(matches(r"/(\w)\1/", "aa"));
        // The \x01 speaker marker trick from SillyTavern's docs.
        assert!(matches(
            r"/\x01Alice:[^\x01]*?hello/",
            "\x01Alice: well hello"
        ));
        assert!(matches(r"/\cA/", "\x01"));
    }

    #[test]
    fn broken_regexes_are_reported() {
        let err = check_key("/dragon(/").unwrap_err();
        assert!(err.contains("not a valid regex"), "{err}");
        assert!(check_key("/usr/bin/").is_ok(), "plain text, not a regex");
        let long = format!("/{}/", "a".repeat(MAX_REGEX_LEN + 1));
        assert!(check_key(&long).unwrap_err().contains("more than"));
        // A huge repetition exceeds the size limit instead of eating memory.
        assert!(check_key(r"/(\w{1000}){1000}/u").is_err());
    }

    #[test]
    fn whole_words_use_ascii_boundaries() {
        assert_eq!(find_plain("the dragon's lair", "dragon", true), Some(4));
        assert_eq!(find_plain("dragonfly", "dragon", true), None);
        assert_eq!(find_plain("dragonfly dragon", "dragon", true), Some(10));
        assert_eq!(find_plain("dragonfly", "dragon", false), Some(0));
        // Accented letters are boundaries, as for SillyTavern.
        assert_eq!(find_plain("café", "caf", true), Some(0));
        assert!(!wants_whole_word(true, "red dragon"));
        assert!(wants_whole_word(true, "dragon"));
    }

    #[test]
    fn the_automaton_reports_every_occurrence() {
        let mut index = PlainIndex::default();
        let a = index.add(Fold::Lower, "dragon".into());
        let b = index.add(Fold::Lower, "drag".into());
        assert_eq!(index.add(Fold::Lower, "dragon".into()), a);
        index.build();
        let mut hits = Vec::new();
        index.scan(Fold::Lower, "a dragon", |p, whole| hits.push((p, whole)));
        assert!(hits.contains(&(a.index, true)));
        assert!(hits.contains(&(b.index, false)));
    }
}
