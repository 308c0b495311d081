//! Books compiled for scanning, once per set of books: decorators parsed,
//! settings resolved (decorator, then entry, then book, then global), plain
//! keys indexed, regex keys compiled, the base order fixed.

use std::collections::HashMap;

use super::keys::{Fold, JsRegex, KeyForm, PatternRef, PlainIndex, read_key, wants_whole_word};
use super::timed::EntryTimers;
use super::{ScanSettings, Scope, Strategy};
use crate::lore::decorators;
use crate::lore::explain::Placement;
use crate::lore::model::{Book, CharacterFilter, Entry, Logic, MAX_SCAN_DEPTH, Position, Role};

/// A key ready to match.
#[derive(Debug, Clone)]
pub struct Key {
    /// As written (trimmed), for explanations.
    pub text: String,
    pub kind: KeyKind,
}

#[derive(Debug, Clone)]
pub enum KeyKind {
    /// Empty: never matches.
    Never,
    Plain {
        pattern: PatternRef,
        whole_word: bool,
    },
    Regex(usize),
    /// Matched on the joined scan text: keys with macros (substituted per
    /// scan) and keys spanning lines.
    Text(usize),
}

/// A key resolved per scan (see `KeyKind::Text`).
#[derive(Debug, Clone)]
pub struct TextKey {
    pub raw: String,
    pub case_sensitive: bool,
    pub whole_words: bool,
}

/// One entry, ready to scan.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub book: usize,
    pub index: usize,
    pub uid: u32,
    pub order: i64,
    pub primary: Vec<Key>,
    pub secondary: Vec<Key>,
    pub additional: Vec<Vec<Key>>,
    pub exclude: Vec<Key>,
    pub selective: bool,
    pub logic: Logic,
    /// Content without decorators.
    pub content: String,
    pub placement: Placement,
    /// Unset: the global depth (plus the min-activations skew).
    pub scan_depth: Option<u32>,
    /// Context fields searched besides the chat (bits in `ContextField` order).
    pub sources: u8,
    pub probability: f64,
    pub use_probability: bool,
    pub groups: Vec<String>,
    pub group_override: bool,
    pub group_weight: u32,
    pub use_group_scoring: Option<bool>,
    pub constant: bool,
    pub disabled: bool,
    pub exclude_recursion: bool,
    pub prevent_recursion: bool,
    pub ignore_budget: bool,
    pub delay_level: u32,
    pub timers: EntryTimers,
    pub delay: u32,
    pub triggers: Vec<String>,
    pub filter: Option<CharacterFilter>,
    pub activate: bool,
    pub dont_activate: bool,
    pub only_after: Option<u32>,
    pub only_every: Option<u32>,
}

/// Everything `Library::new` builds.
pub struct Compilation {
    pub entries: Vec<Compiled>,
    pub base_order: Vec<usize>,
    pub plain: PlainIndex,
    pub regexes: Vec<JsRegex>,
    pub text_keys: Vec<TextKey>,
    pub by_uid: HashMap<(usize, u32), usize>,
    pub max_scan_depth: u32,
    pub delay_levels: Vec<u32>,
    pub warnings: Vec<String>,
}

struct KeyBuilder<'a> {
    plain: &'a mut PlainIndex,
    regexes: &'a mut Vec<JsRegex>,
    text_keys: &'a mut Vec<TextKey>,
    warnings: &'a mut Vec<String>,
}

impl KeyBuilder<'_> {
    fn key(&mut self, raw: &str, case_sensitive: bool, whole_words: bool, label: &str) -> Key {
        let text = raw.trim().to_string();
        let kind = if text.is_empty() {
            KeyKind::Never
        } else if text.contains("{{") || text.contains(['\n', '\x01']) {
            self.text_keys.push(TextKey {
                raw: text.clone(),
                case_sensitive,
                whole_words,
            });
            KeyKind::Text(self.text_keys.len() - 1)
        } else {
            match read_key(&text) {
                KeyForm::Regex(re) => {
                    self.regexes.push(re);
                    KeyKind::Regex(self.regexes.len() - 1)
                }
                form => {
                    if let KeyForm::BadRegex(problem) = form {
                        self.warnings.push(format!(
                            "{label}: key '{text}' {problem}; it is matched as plain text"
                        ));
                    }
                    let (fold, needle) = if case_sensitive {
                        (Fold::Exact, text.clone())
                    } else {
                        (Fold::Lower, text.to_lowercase())
                    };
                    let whole_word = wants_whole_word(whole_words, &needle);
                    KeyKind::Plain {
                        pattern: self.plain.add(fold, needle),
                        whole_word,
                    }
                }
            }
        };
        Key { text, kind }
    }

    fn keys(&mut self, raw: &[String], case: bool, whole: bool, label: &str) -> Vec<Key> {
        raw.iter()
            .map(|k| self.key(k, case, whole, label))
            .collect()
    }
}

pub fn compile(books: &[(Book, Scope)], settings: &ScanSettings) -> Compilation {
    let mut plain = PlainIndex::default();
    let mut regexes = Vec::new();
    let mut text_keys = Vec::new();
    let mut warnings = Vec::new();
    let mut entries = Vec::new();
    let mut by_uid = HashMap::new();
    let mut max_scan_depth = 0;
    for (book_index, (book, _)) in books.iter().enumerate() {
        // SillyTavern walks a book's entries by ascending uid.
        let mut indices: Vec<usize> = (0..book.entries.len()).collect();
        indices.sort_by_key(|&i| book.entries[i].uid);
        for index in indices {
            let entry = &book.entries[index];
            let label = format!("{}#{}", book.name, entry.uid);
            let mut keys = KeyBuilder {
                plain: &mut plain,
                regexes: &mut regexes,
                text_keys: &mut text_keys,
                warnings: &mut warnings,
            };
            let compiled =
                compile_entry(book_index, index, book, entry, settings, &mut keys, &label);
            max_scan_depth = max_scan_depth.max(compiled.scan_depth.unwrap_or(0));
            by_uid
                .entry((book_index, entry.uid))
                .or_insert(entries.len());
            entries.push(compiled);
        }
    }
    warnings.extend(plain.build());
    let mut delay_levels: Vec<u32> = entries
        .iter()
        .map(|e| e.delay_level)
        .filter(|&l| l > 0)
        .collect();
    delay_levels.sort_unstable();
    delay_levels.dedup();
    Compilation {
        base_order: base_order(&entries, books, settings.character_strategy),
        entries,
        plain,
        regexes,
        text_keys,
        by_uid,
        max_scan_depth: max_scan_depth.min(MAX_SCAN_DEPTH),
        delay_levels,
        warnings,
    }
}

fn compile_entry(
    book_index: usize,
    index: usize,
    book: &Book,
    entry: &Entry,
    settings: &ScanSettings,
    keys: &mut KeyBuilder<'_>,
    label: &str,
) -> Compiled {
    let (dec, content) = decorators::parse(&entry.content);
    let defaults = &book.defaults;
    let case = entry
        .case_sensitive
        .or(defaults.case_sensitive)
        .unwrap_or(settings.case_sensitive);
    let whole = dec
        .match_whole_words
        .or(entry.match_whole_words)
        .or(defaults.match_whole_words)
        .unwrap_or(settings.match_whole_words);
    let position = dec.position.unwrap_or(if dec.depth.is_some() {
        Position::AtDepth
    } else {
        entry.position
    });
    let outlet = dec.outlet.clone().unwrap_or_else(|| entry.outlet.clone());
    let placement = match position {
        Position::BeforeChar => Placement::BeforeChar,
        Position::AfterChar => Placement::AfterChar,
        Position::Scenario => Placement::Scenario,
        Position::AuthorNoteTop => Placement::AuthorNoteTop,
        Position::AuthorNoteBottom => Placement::AuthorNoteBottom,
        Position::ExamplesTop => Placement::ExamplesTop,
        Position::ExamplesBottom => Placement::ExamplesBottom,
        Position::AtDepth => Placement::AtDepth {
            depth: dec.depth.unwrap_or(entry.depth),
            role: dec.role.or(entry.role).unwrap_or(Role::System),
        },
        Position::Outlet => Placement::Outlet { name: outlet },
    };
    let sources = entry
        .also_scan
        .flags()
        .iter()
        .enumerate()
        .fold(0u8, |bits, (i, &on)| if on { bits | 1 << i } else { bits });
    Compiled {
        book: book_index,
        index,
        uid: entry.uid,
        order: entry.order,
        primary: keys.keys(&entry.keys, case, whole, label),
        secondary: keys.keys(&entry.secondary_keys, case, whole, label),
        additional: dec
            .additional_keys
            .iter()
            .map(|set| keys.keys(set, case, whole, label))
            .collect(),
        exclude: keys.keys(&dec.exclude_keys, case, whole, label),
        selective: entry.selective,
        logic: entry.logic,
        content: content.to_string(),
        placement,
        scan_depth: dec
            .scan_depth
            .or(entry.scan_depth)
            .or(defaults.scan_depth)
            .map(|d| d.min(MAX_SCAN_DEPTH)),
        sources,
        probability: dec.probability.unwrap_or(entry.probability),
        use_probability: entry.use_probability || dec.probability.is_some(),
        groups: entry.groups().map(str::to_string).collect(),
        group_override: entry.group_override,
        group_weight: entry.group_weight,
        use_group_scoring: entry.use_group_scoring.or(defaults.use_group_scoring),
        constant: entry.constant,
        disabled: entry.disabled,
        exclude_recursion: entry.exclude_recursion,
        prevent_recursion: entry.prevent_recursion,
        ignore_budget: entry.ignore_budget,
        delay_level: entry.delay_until_recursion.level(),
        timers: EntryTimers {
            sticky: entry.sticky,
            cooldown: entry.cooldown,
        },
        delay: entry.delay,
        triggers: entry.triggers.clone(),
        filter: entry.character_filter.clone(),
        activate: dec.activate,
        dont_activate: dec.dont_activate,
        only_after: dec.activate_only_after,
        only_every: dec.activate_only_every,
    }
}

/// SillyTavern's `getSortedEntries`: chat books, then persona books, then
/// character and global books by the strategy; within each part by
/// descending order, ties in book order then uid order.
fn base_order(entries: &[Compiled], books: &[(Book, Scope)], strategy: Strategy) -> Vec<usize> {
    let sorted = |scopes: &[Scope]| -> Vec<usize> {
        let mut part: Vec<usize> = (0..entries.len())
            .filter(|&i| scopes.contains(&books[entries[i].book].1))
            .collect();
        part.sort_by_key(|&i| std::cmp::Reverse(entries[i].order));
        part
    };
    let mut order = sorted(&[Scope::Chat]);
    order.extend(sorted(&[Scope::Persona]));
    match strategy {
        Strategy::Evenly => order.extend(sorted(&[Scope::Character, Scope::Global])),
        Strategy::CharacterFirst => {
            order.extend(sorted(&[Scope::Character]));
            order.extend(sorted(&[Scope::Global]));
        }
        Strategy::GlobalFirst => {
            order.extend(sorted(&[Scope::Global]));
            order.extend(sorted(&[Scope::Character]));
        }
    }
    order
}
