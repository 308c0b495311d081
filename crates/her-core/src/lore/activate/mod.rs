//! The activation engine: which entries of a set of books go into the next
//! prompt, following SillyTavern 1.18's `checkWorldInfo`, and why.
//!
//! A scan runs in passes. Each pass walks the entries in base order, drops
//! those a gate holds back (timed effects, recursion rules, decorators),
//! activates the rest whose condition holds (`@@activate`, constant, sticky,
//! then keys), lets inclusion groups pick their winners, then rolls
//! probability and spends the token budget in that order. Activated content
//! feeds the next pass (recursion) until nothing new activates, the budget
//! overflows or the step limit is reached. Everything random is seeded from
//! the session (see `roll`), and timed effects are a value in and events out
//! (see `timed`), so the engine is a pure function of its inputs.

pub mod budget;
mod compile;
mod groups;
pub mod keys;
mod pass;
mod roll;
mod scan;
pub mod timed;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_props;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

pub use budget::Budget;
pub use keys::{MAX_REGEX_LEN, check_key};
pub use timed::{EffectKind, EndReason, TimedEffect, TimedEvent, TimedState};

use super::explain::{Activation, LeftOut};
use super::model::Book;
use compile::{Compiled, TextKey};
use keys::{JsRegex, PlainIndex};
use pass::Scan;

/// The global World Info settings (SillyTavern's `world_info_*`), with the
/// defaults of a new SillyTavern install.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScanSettings {
    /// Messages searched for keys (`world_info_depth`).
    pub scan_depth: u32,
    pub budget: Budget,
    /// At most this many tokens whatever the percentage (0 = no cap).
    pub budget_cap: u32,
    /// Messages are scanned as "Name: text".
    pub include_names: bool,
    /// Activated entries' content can activate others.
    pub recursive: bool,
    /// Passes at most (0 = unlimited; 1 = no recursion).
    pub max_recursion_steps: u32,
    /// Scan deeper, one message at a time, until this many entries are active.
    pub min_activations: u32,
    /// ... but no deeper than this (0 = the whole chat).
    pub min_activations_depth_max: u32,
    pub case_sensitive: bool,
    pub match_whole_words: bool,
    pub use_group_scoring: bool,
    pub character_strategy: Strategy,
}

impl Default for ScanSettings {
    fn default() -> Self {
        ScanSettings {
            scan_depth: 2,
            budget: Budget::default(),
            budget_cap: 0,
            include_names: true,
            recursive: true,
            max_recursion_steps: 0,
            min_activations: 0,
            min_activations_depth_max: 0,
            case_sensitive: false,
            match_whole_words: true,
            use_group_scoring: false,
            character_strategy: Strategy::CharacterFirst,
        }
    }
}

/// How character and global books are merged (`world_info_character_strategy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// One list sorted by order.
    Evenly,
    #[default]
    CharacterFirst,
    GlobalFirst,
}

/// What a book is attached to; chat books come first, then persona books.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// This session (SillyTavern's chat lore).
    Chat,
    Persona,
    /// The character or scene.
    Character,
    Global,
}

/// One chat message as the scan sees it.
#[derive(Debug, Clone, Copy)]
pub struct ScanMessage<'a> {
    pub name: &'a str,
    pub text: &'a str,
    pub is_user: bool,
}

/// Texts outside the chat that entries may opt into scanning.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanContext<'a> {
    pub persona_description: &'a str,
    pub character_description: &'a str,
    pub character_personality: &'a str,
    pub character_depth_prompt: &'a str,
    pub scenario: &'a str,
    pub creator_notes: &'a str,
}

impl ScanContext<'_> {
    /// In `ContextField` order.
    fn texts(&self) -> [&str; 6] {
        [
            self.persona_description,
            self.character_description,
            self.character_personality,
            self.character_depth_prompt,
            self.scenario,
            self.creator_notes,
        ]
    }
}

/// Everything a scan reads besides the books.
#[derive(Clone, Copy)]
pub struct ScanInput<'a> {
    /// The branch's messages, oldest first (their count is the clock of
    /// timed effects).
    pub messages: &'a [ScanMessage<'a>],
    pub context: ScanContext<'a>,
    /// Extra text scanned like a message (the author's note).
    pub injected: &'a [&'a str],
    /// The character's file name, for character filters.
    pub character: Option<&'a str>,
    /// The character's tags, for tag filters (`None`: not filtered by tag).
    pub character_tags: Option<&'a [String]>,
    /// Generation type: normal, continue, impersonate, swipe, regenerate, quiet.
    pub trigger: &'a str,
    /// Tokens the prompt may use (context minus the reply), for a percent budget.
    pub max_context: usize,
    /// The session's seed for probability and group rolls.
    pub seed: u64,
    pub timed: &'a TimedState,
    /// Macro substitution (`{{char}}`, `{{user}}`) for keys and content.
    pub macros: Option<&'a dyn Fn(&str) -> String>,
}

impl<'a> ScanInput<'a> {
    pub fn new(messages: &'a [ScanMessage<'a>], timed: &'a TimedState) -> ScanInput<'a> {
        ScanInput {
            messages,
            context: ScanContext::default(),
            injected: &[],
            character: None,
            character_tags: None,
            trigger: "normal",
            max_context: 8192,
            seed: 0,
            timed,
            macros: None,
        }
    }
}

/// The result of a scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanOutcome {
    /// The entries for the prompt, in the order they were accepted.
    pub activated: Vec<Activation>,
    /// Entries whose condition held but that are not in the prompt, in base order.
    pub left_out: Vec<LeftOut>,
    /// Timed effects after this scan; store it (or the events) with the reply.
    pub timed: TimedState,
    /// The changes from the input state to `timed`.
    pub timed_events: Vec<TimedEvent>,
    pub budget: usize,
    pub used_tokens: usize,
    pub overflowed: bool,
    pub passes: u32,
}

/// One or more books compiled for scanning. Build it when the attached
/// books or the settings change; scanning reuses it.
pub struct Library {
    books: Vec<(Book, Scope)>,
    settings: ScanSettings,
    entries: Vec<Compiled>,
    base_order: Vec<usize>,
    plain: PlainIndex,
    regexes: Vec<JsRegex>,
    text_keys: Vec<TextKey>,
    by_uid: HashMap<(usize, u32), usize>,
    book_by_name: HashMap<String, usize>,
    max_scan_depth: u32,
    delay_levels: Vec<u32>,
    warnings: Vec<String>,
}

impl Library {
    /// Compiles `books`. Never fails: a key that cannot be used is reported
    /// in `warnings` (a broken regex is matched as plain text, as in
    /// SillyTavern).
    pub fn new(books: Vec<(Book, Scope)>, settings: ScanSettings) -> Library {
        let c = compile::compile(&books, &settings);
        let mut book_by_name = HashMap::new();
        for (i, (book, _)) in books.iter().enumerate() {
            book_by_name.entry(book.name.clone()).or_insert(i);
        }
        Library {
            books,
            settings,
            entries: c.entries,
            base_order: c.base_order,
            plain: c.plain,
            regexes: c.regexes,
            text_keys: c.text_keys,
            by_uid: c.by_uid,
            book_by_name,
            max_scan_depth: c.max_scan_depth,
            delay_levels: c.delay_levels,
            warnings: c.warnings,
        }
    }

    pub fn books(&self) -> impl Iterator<Item = &Book> {
        self.books.iter().map(|(b, _)| b)
    }

    pub fn settings(&self) -> &ScanSettings {
        &self.settings
    }

    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn label(&self, entry: usize) -> String {
        let e = &self.entries[entry];
        format!("{}#{}", self.books[e.book].0.name, e.uid)
    }

    fn comment(&self, entry: usize) -> &str {
        let e = &self.entries[entry];
        &self.books[e.book].0.entries[e.index].comment
    }

    /// Runs one scan. `tokens` counts tokens with the model's tokenizer.
    pub fn scan(&self, input: &ScanInput<'_>, tokens: &dyn Fn(&str) -> usize) -> ScanOutcome {
        Scan::new(self, input, tokens).run()
    }
}
