//! The scan buffer (SillyTavern's `WorldInfoBuffer`): the newest messages,
//! the context texts entries may opt into, injected text and the recursion
//! buffer, each kept as a segment.
//!
//! Plain keys are found once per segment by the automata and remembered per
//! key (the newest message holding it, the context fields holding it, the
//! first recursion text holding it), so deciding whether an entry's key is
//! within its scan depth costs a lookup. Regex keys and keys with macros run
//! on the joined text SillyTavern builds for an entry
//! (`\x01` + messages joined by `\n\x01`, then context, injected and
//! recursion texts the same way), so `^`, `\x01` and cross-message patterns
//! behave as there.

use std::collections::HashMap;

use super::compile::{Key, KeyKind};
use super::keys::{Fold, JsRegex, KeyForm, find_plain, read_key, wants_whole_word};
use super::{Library, ScanInput};

const NONE: u32 = u32::MAX;
/// Context bits 0–5 are `ContextField`s; this one is injected text.
pub const INJECTED: u8 = 1 << 6;

/// Where a key was found, by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    Message(usize),
    Context(u8),
    Injected,
    /// The content of this compiled entry.
    Recursion(usize),
}

/// The part of the buffer one entry sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct View {
    pub depth: usize,
    /// Context bits, `INJECTED` included.
    pub mask: u8,
    pub recursion: bool,
}

#[derive(Debug, Clone, Copy)]
struct Hit {
    message: u32,
    context: u8,
    recursion: u32,
}

const NO_HIT: Hit = Hit {
    message: NONE,
    context: 0,
    recursion: NONE,
};

struct Segment {
    raw: String,
    lower: String,
}

impl Segment {
    fn new(raw: String) -> Segment {
        let lower = raw.to_lowercase();
        Segment { raw, lower }
    }
}

/// A per-scan resolution of a `KeyKind::Text` key.
enum Resolved {
    Never,
    Plain {
        needle: String,
        exact: bool,
        whole_word: bool,
    },
    Regex(Box<JsRegex>),
}

/// The joined text of one view, raw and lowercased, with where each piece
/// starts.
#[derive(Default)]
struct Joined {
    raw: String,
    lower: String,
    raw_starts: Vec<(usize, At)>,
    lower_starts: Vec<(usize, At)>,
    /// Recursion texts appended so far, and the pass of the last one.
    recursion_done: usize,
    last_pass: Option<u32>,
}

impl Joined {
    /// Appends a piece; it starts with its separator, so a match on the
    /// `\x01` before a message belongs to that message.
    fn push(&mut self, sep: &str, segment: &Segment, at: At) {
        self.raw_starts.push((self.raw.len(), at));
        self.lower_starts.push((self.lower.len(), at));
        self.raw.push_str(sep);
        self.lower.push_str(sep);
        self.raw.push_str(&segment.raw);
        self.lower.push_str(&segment.lower);
    }

    fn locate(starts: &[(usize, At)], offset: usize) -> Option<At> {
        let i = starts.partition_point(|(s, _)| *s <= offset);
        starts.get(i.checked_sub(1)?).map(|(_, at)| *at)
    }
}

pub struct Buffer<'a> {
    lib: &'a Library,
    messages: Vec<Segment>,
    /// (context bit, text) for non-empty context fields and injected texts.
    context: Vec<(u8, Segment)>,
    /// (entry, pass) and content of entries fed back for recursion.
    recursion: Vec<(usize, u32, Segment)>,
    /// [substring, whole word] × [Lower, Exact].
    hits: [[Vec<Hit>; 2]; 2],
    text_keys: Vec<Resolved>,
    joined: HashMap<View, Joined>,
    /// (regex, view) → length of the joined text it did not match.
    regex_misses: HashMap<(usize, View), usize>,
}

fn fold_index(fold: Fold) -> usize {
    match fold {
        Fold::Lower => 0,
        Fold::Exact => 1,
    }
}

impl<'a> Buffer<'a> {
    /// Prepares the newest `depth` messages and the context texts.
    pub fn new(lib: &'a Library, input: &ScanInput<'_>, depth: usize) -> Buffer<'a> {
        let include_names = lib.settings.include_names;
        let messages: Vec<Segment> = input
            .messages
            .iter()
            .rev()
            .take(depth)
            .map(|m| {
                let text = if include_names {
                    format!("{}: {}", m.name, m.text)
                } else {
                    m.text.to_string()
                };
                Segment::new(text.trim().to_string())
            })
            .collect();
        let mut context = Vec::new();
        for (bit, text) in input.context.texts().iter().enumerate() {
            if !text.is_empty() {
                context.push((1u8 << bit, Segment::new(text.to_string())));
            }
        }
        for text in input.injected {
            if !text.is_empty() {
                context.push((INJECTED, Segment::new(text.to_string())));
            }
        }
        let hits = [Fold::Lower, Fold::Exact].map(|f| vec![NO_HIT; lib.plain.len(f)]);
        let text_keys = lib
            .text_keys
            .iter()
            .map(|k| {
                let key = match input.macros {
                    Some(substitute) => substitute(&k.raw),
                    None => k.raw.clone(),
                };
                let key = key.trim();
                if key.is_empty() {
                    return Resolved::Never;
                }
                match read_key(key) {
                    KeyForm::Regex(re) => Resolved::Regex(Box::new(re)),
                    _ => {
                        let needle = if k.case_sensitive {
                            key.to_string()
                        } else {
                            key.to_lowercase()
                        };
                        Resolved::Plain {
                            whole_word: wants_whole_word(k.whole_words, &needle),
                            needle,
                            exact: k.case_sensitive,
                        }
                    }
                }
            })
            .collect();
        let mut buffer = Buffer {
            lib,
            messages,
            context,
            recursion: Vec::new(),
            hits: [hits.clone(), hits],
            text_keys,
            joined: HashMap::new(),
            regex_misses: HashMap::new(),
        };
        for i in 0..buffer.messages.len() {
            buffer.index_segment(SegmentRef::Message(i));
        }
        for i in 0..buffer.context.len() {
            buffer.index_segment(SegmentRef::Context(i));
        }
        buffer
    }

    pub fn has_recursion(&self) -> bool {
        !self.recursion.is_empty()
    }

    /// Adds an activated entry's content to the recursion buffer.
    pub fn add_recursion(&mut self, entry: usize, pass: u32, content: &str) {
        self.recursion
            .push((entry, pass, Segment::new(content.to_string())));
        self.index_segment(SegmentRef::Recursion(self.recursion.len() - 1));
    }

    fn index_segment(&mut self, which: SegmentRef) {
        let (segment, bit) = match which {
            SegmentRef::Message(i) => (&self.messages[i], 0),
            SegmentRef::Context(i) => (&self.context[i].1, self.context[i].0),
            SegmentRef::Recursion(i) => (&self.recursion[i].2, 0),
        };
        let record = |h: &mut Hit| match which {
            SegmentRef::Message(i) => h.message = h.message.min(i as u32),
            SegmentRef::Context(_) => h.context |= bit,
            SegmentRef::Recursion(i) => h.recursion = h.recursion.min(i as u32),
        };
        let [substring, word] = &mut self.hits;
        for fold in [Fold::Lower, Fold::Exact] {
            let text = match fold {
                Fold::Lower => &segment.lower,
                Fold::Exact => &segment.raw,
            };
            let f = fold_index(fold);
            self.lib.plain.scan(fold, text, |pattern, whole| {
                record(&mut substring[f][pattern]);
                if whole {
                    record(&mut word[f][pattern]);
                }
            });
        }
    }

    /// Where `key` is found in `view`, if it is.
    pub fn find(&mut self, key: &Key, view: View) -> Option<At> {
        match &key.kind {
            KeyKind::Never => None,
            KeyKind::Plain {
                pattern,
                whole_word,
            } => {
                let hit =
                    self.hits[usize::from(*whole_word)][fold_index(pattern.fold)][pattern.index];
                if (hit.message as usize) < view.depth.min(self.messages.len()) {
                    return Some(At::Message(hit.message as usize));
                }
                let shared = hit.context & view.mask;
                if shared != 0 {
                    let bit = shared.trailing_zeros() as u8;
                    return Some(if 1 << bit == INJECTED {
                        At::Injected
                    } else {
                        At::Context(bit)
                    });
                }
                if view.recursion && hit.recursion != NONE {
                    return Some(At::Recursion(self.recursion[hit.recursion as usize].0));
                }
                None
            }
            KeyKind::Regex(i) => {
                let lib = self.lib;
                let length = self.joined(view).raw.len();
                // The same text gives the same miss: entries are evaluated
                // again in later passes and for group scores.
                if self.regex_misses.get(&(*i, view)) == Some(&length) {
                    return None;
                }
                let joined = self.joined(view);
                let found = lib.regexes[*i]
                    .find_start(&joined.raw)
                    .and_then(|at| Joined::locate(&joined.raw_starts, at));
                if found.is_none() {
                    self.regex_misses.insert((*i, view), length);
                }
                found
            }
            KeyKind::Text(i) => {
                let i = *i;
                // Borrow the resolved key and the joined text separately.
                let resolved = std::mem::replace(&mut self.text_keys[i], Resolved::Never);
                let found = {
                    let joined = self.joined(view);
                    match &resolved {
                        Resolved::Never => None,
                        Resolved::Regex(re) => re
                            .find_start(&joined.raw)
                            .and_then(|at| Joined::locate(&joined.raw_starts, at)),
                        Resolved::Plain {
                            needle,
                            exact,
                            whole_word,
                        } => {
                            let (text, starts) = if *exact {
                                (&joined.raw, &joined.raw_starts)
                            } else {
                                (&joined.lower, &joined.lower_starts)
                            };
                            find_plain(text, needle, *whole_word)
                                .and_then(|at| Joined::locate(starts, at))
                        }
                    }
                };
                self.text_keys[i] = resolved;
                found
            }
        }
    }

    /// The joined text of `view`: the chat and context part built once, the
    /// recursion texts appended as they arrive.
    fn joined(&mut self, view: View) -> &Joined {
        let (messages, context, recursion) = (&self.messages, &self.context, &self.recursion);
        let joined = self.joined.entry(view).or_insert_with(|| {
            let mut joined = Joined::default();
            let chat = messages
                .iter()
                .take(view.depth)
                .enumerate()
                .map(|(i, m)| (m, At::Message(i)));
            let extra =
                context
                    .iter()
                    .filter(|(bit, _)| bit & view.mask != 0)
                    .map(|(bit, segment)| {
                        let at = if *bit == INJECTED {
                            At::Injected
                        } else {
                            At::Context(bit.trailing_zeros() as u8)
                        };
                        (segment, at)
                    });
            for (n, (segment, at)) in chat.chain(extra).enumerate() {
                joined.push(if n == 0 { "\x01" } else { "\n\x01" }, segment, at);
            }
            if joined.raw.is_empty() {
                joined.raw.push('\x01');
                joined.lower.push('\x01');
            }
            joined
        });
        if view.recursion {
            // One chunk per pass, entries of a pass joined by a newline.
            for (entry, pass, segment) in &recursion[joined.recursion_done..] {
                let sep = if joined.last_pass == Some(*pass) {
                    "\n"
                } else {
                    "\n\x01"
                };
                joined.last_pass = Some(*pass);
                joined.push(sep, segment, At::Recursion(*entry));
            }
            joined.recursion_done = recursion.len();
        }
        joined
    }
}

#[derive(Clone, Copy)]
enum SegmentRef {
    Message(usize),
    Context(usize),
    Recursion(usize),
}
