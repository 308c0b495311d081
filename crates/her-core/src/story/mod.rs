//! What a session adds to the prompt: lorebooks attached globally (config),
//! to the character (its card's book and its file's `lore`), to the scene
//! and to the session (`/lore attach`), the author's note and long-term
//! memory, computed for one point of one branch from the session log.

pub mod events;
pub mod memory;
mod settings;
pub mod shelf;
mod tokens;

use std::path::PathBuf;

use crate::character::{AuthorNote, Character};
use crate::lore::{
    Book, Library, ScanInput, ScanOutcome, ScanSettings, Scope, TimedEvent, TimedState,
};
use crate::prompt::lore::{
    budget_from, card_book, lay_out, scan_context, scan_messages, settings_for,
};
use crate::prompt::{Additions, Line, NoteInsert, expand_macros};

pub use events::{StoryLog, SummarySource};
pub use settings::{LoreConfig, MemoryConfig, Summarizer};
pub use shelf::{Shelf, wanted_books};
pub use tokens::TokenCounter;

/// The settings a session's story needs, from the config.
#[derive(Debug, Clone)]
pub struct StoryConfig {
    /// `characters/lore/`.
    pub lore_dir: PathBuf,
    pub lore: LoreConfig,
    pub memory: MemoryConfig,
    /// Tokens a prompt may use (context minus the reply), for a percent budget.
    pub max_context: usize,
    /// How lore entries and memory are counted against their budgets.
    pub tokens: TokenCounter,
    /// The character's own thinking layers that history keeps.
    pub history: crate::prompt::HistoryLayers,
}

impl StoryConfig {
    /// The engine's settings from `[lore]`.
    pub fn scan_settings(&self) -> ScanSettings {
        let l = &self.lore;
        ScanSettings {
            scan_depth: l.scan_depth,
            budget: budget_from(l.budget),
            budget_cap: l.budget_cap,
            include_names: l.include_names,
            recursive: l.recursive,
            max_recursion_steps: l.max_recursion_steps,
            case_sensitive: l.case_sensitive,
            match_whole_words: l.match_whole_words,
            ..ScanSettings::default()
        }
    }
}

impl Default for StoryConfig {
    /// No books, default memory settings, a default-size context.
    fn default() -> Self {
        StoryConfig {
            lore_dir: PathBuf::new(),
            lore: LoreConfig::default(),
            memory: MemoryConfig::default(),
            max_context: crate::prompt::lore::DEFAULT_MAX_CONTEXT,
            tokens: TokenCounter::estimate(),
            history: crate::prompt::HistoryLayers::HER,
        }
    }
}

/// One point of one branch: the prompt for the reply after `transcript`.
pub struct StoryInput<'a> {
    /// Who replies.
    pub character: &'a Character,
    /// The scene's `lore`, when the session is a scene.
    pub scene_lore: &'a [String],
    pub user_name: &'a str,
    /// The lines before the reply, oldest first …
    pub transcript: &'a [Line],
    /// … and their message keys (the branch's path).
    pub path: &'a [String],
    /// The session's seed for probability rolls (see [`session_seed`]).
    pub seed: u64,
}

/// What the story adds to one prompt, and why.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    pub additions: Additions,
    /// The lore scan (`None`: no book applies).
    pub scan: Option<ScanOutcome>,
    /// The books used, as "name (scope)".
    pub books: Vec<String>,
    /// Books that could not be loaded, keys that could not be used.
    pub warnings: Vec<String>,
    /// The author's note in force (due on this turn or not).
    pub note: Option<AuthorNote>,
    pub note_due: bool,
    /// Pins and summary as chosen for the prompt.
    pub pins: usize,
    pub summary_covers: Option<usize>,
    /// The memory paragraph's tokens, counted as its budget was.
    pub memory_tokens: usize,
    /// How the budgets counted (see [`TokenCounter::describe`]).
    pub counted: &'static str,
}

impl Prepared {
    /// The timed lore events to record with the reply.
    pub fn timed_events(&self) -> Vec<TimedEvent> {
        self.scan
            .as_ref()
            .map(|s| s.timed_events.clone())
            .unwrap_or_default()
    }
}

/// A stable seed from a session id (FNV-1a), so a reload rolls the same.
pub fn session_seed(id: &str) -> u64 {
    crate::hashing::fnv1a64(id.as_bytes())
}

/// The books that apply, in SillyTavern's order: session (chat) books, then
/// the character's and scene's, then global ones; each once. They come
/// from `shelf`: nothing is read here.
fn books_for(
    cfg: &StoryConfig,
    log: &StoryLog,
    shelf: &Shelf,
    input: &StoryInput<'_>,
    warnings: &mut Vec<String>,
) -> Vec<(Book, Scope)> {
    let mut named: Vec<(&str, Scope)> = Vec::new();
    named.extend(log.attached.iter().map(|n| (n.as_str(), Scope::Chat)));
    named.extend(
        input
            .character
            .lore
            .iter()
            .chain(input.scene_lore)
            .map(|n| (n.as_str(), Scope::Character)),
    );
    named.extend(cfg.lore.books.iter().map(|n| (n.as_str(), Scope::Global)));
    let mut books: Vec<(Book, Scope)> = Vec::new();
    if let Some(book) = card_book(input.character) {
        books.push((book, Scope::Character));
    }
    for (name, scope) in named {
        match shelf.get(name) {
            Some(Ok(book)) if books.iter().any(|(b, _)| b.name == book.name) => {}
            Some(Ok(book)) => books.push((book.clone(), scope)),
            Some(Err(err)) => warnings.push(format!("lorebook '{name}': {err}")),
            None => warnings.push(format!("lorebook '{name}': not loaded")),
        }
    }
    books
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Chat => "session",
        Scope::Persona => "persona",
        Scope::Character => "character",
        Scope::Global => "global",
    }
}

/// Lore, memory and note for the prompt of the reply after `input.transcript`,
/// with the books loaded in `shelf` (see [`Shelf::load`] and [`wanted_books`]).
pub fn prepare(
    cfg: &StoryConfig,
    log: &StoryLog,
    shelf: &Shelf,
    input: &StoryInput<'_>,
) -> Prepared {
    let mut out = Prepared {
        counted: cfg.tokens.describe(),
        ..Prepared::default()
    };
    let character = input.character;
    let note = log.note.clone().or_else(|| character.note.clone());
    let due = note
        .as_ref()
        .and_then(|n| NoteInsert::due(n, input.transcript, &character.name));
    out.note_due = due.is_some();
    out.note = note;

    let books = books_for(cfg, log, shelf, input, &mut out.warnings);
    out.books = books
        .iter()
        .map(|(b, s)| format!("{} ({})", b.name, scope_name(*s)))
        .collect();
    let activated = if books.is_empty() {
        Vec::new()
    } else {
        let settings = settings_for(cfg.scan_settings(), &books);
        let library = Library::new(books, settings);
        out.warnings.extend(library.warnings().iter().cloned());
        let messages = scan_messages(input.transcript, &character.name);
        let timed = TimedState::replay(log.timed_on(input.path));
        let macros = |t: &str| expand_macros(t, &character.name, input.user_name);
        let injected: Vec<&str> = due.iter().map(|n| n.text.as_str()).collect();
        let persona = character
            .user
            .as_ref()
            .map_or("", |p| p.description.as_str());
        let mut scan = ScanInput::new(&messages, &timed);
        scan.context = scan_context(character, persona);
        scan.injected = &injected;
        scan.character = Some(&character.name);
        scan.character_tags = Some(&character.tags);
        scan.max_context = cfg.max_context;
        scan.seed = input.seed;
        scan.macros = Some(&macros);
        let count = |t: &str| cfg.tokens.count(t);
        let outcome = library.scan(&scan, &count);
        let activated = outcome.activated.clone();
        out.scan = Some(outcome);
        activated
    };
    out.additions = lay_out(&activated, due.as_ref());
    out.additions.history = cfg.history;

    let pins: Vec<String> = log.pins_on(input.path).map(|p| p.text.clone()).collect();
    let summary = log.summary_on(input.path);
    out.pins = pins.len();
    out.summary_covers = summary.map(|s| s.messages);
    out.additions.memory = memory::memory_text(
        &pins,
        summary.map(|s| s.text.as_str()),
        cfg.memory.budget_tokens as usize,
        &|t: &str| cfg.tokens.count(t),
    );
    out.memory_tokens = cfg.tokens.count(&out.additions.memory);
    // The lines a summary in the prompt stands for leave the history, so the
    // context stops filling with what the memory already says.
    if out.additions.memory.contains(memory::SUMMARY_HEAD) {
        out.additions.summarised = summary
            .and_then(|s| input.path.iter().position(|k| *k == s.upto))
            .map_or(0, |i| i + 1);
    }
    out
}

/// The `/lore` and `her prompt` explanation of a prepared prompt.
/// What history keeps of the character's own replies, when not HER's rule.
fn history_rule(history: crate::prompt::HistoryLayers) -> String {
    let kept = |on: bool| if on { "kept" } else { "left out" };
    format!(
        "history: the character's own plans {}, inner thoughts {} (chat.history_plan, chat.history_thoughts; HER leaves plans out and keeps thoughts)",
        kept(history.plan),
        kept(history.thoughts)
    )
}

pub fn explain(prepared: &Prepared) -> String {
    let mut lines = Vec::new();
    if prepared.books.is_empty() {
        lines.push("no lorebook applies (config lore.books, the character's or scene's `lore`, a card book, or /lore attach NAME)".to_string());
    } else {
        lines.push(format!("books: {}", prepared.books.join(", ")));
    }
    if let Some(scan) = &prepared.scan {
        if scan.activated.is_empty() && scan.left_out.is_empty() {
            lines.push("no entry matched".into());
        }
        lines.extend(crate::prompt::lore::explain(scan));
    }
    for w in &prepared.warnings {
        lines.push(format!("! {w}"));
    }
    match &prepared.note {
        Some(n) if prepared.note_due => lines.push(format!(
            "author's note at depth {} as {:?}: {}",
            n.depth, n.role, n.text
        )),
        Some(n) => lines.push(format!(
            "author's note not due this turn (every {})",
            n.every
        )),
        None => {}
    }
    let memory = &prepared.additions.memory;
    if !memory.is_empty() {
        lines.push(format!(
            "memory: {} pin(s), summary {} — {} tokens",
            prepared.pins,
            prepared
                .summary_covers
                .map_or("none".to_string(), |n| format!("of {n} messages")),
            prepared.memory_tokens
        ));
    }
    if prepared.scan.is_some() || !memory.is_empty() {
        lines.push(format!("tokens {}", prepared.counted));
    }
    let history = prepared.additions.history;
    if !history.is_her() {
        lines.push(history_rule(history));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests;
