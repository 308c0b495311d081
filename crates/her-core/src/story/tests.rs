#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::events::{REPLY_CONTEXT, ReplyContextEvent};
use super::*;
use crate::lore::{Entry, Position, Role, Why, save_book};
use crate::session::{Message, Role as MessageRole, Session, SessionEvent, SessionHeader};

fn book_dir() -> (tempfile::TempDir, StoryConfig) {
    let dir = tempfile::tempdir().unwrap();
    let mut sword = Entry::new(1);
    sword.keys = vec!["sword".into()];
    sword.content = "The sword is cursed.".into();
    sword.sticky = 3;
    let mut deep = Entry::new(2);
    deep.keys = vec!["river".into()];
    deep.content = "The river floods in spring.".into();
    deep.position = Position::AtDepth;
    deep.depth = 1;
    deep.role = Some(Role::User);
    let book = Book {
        name: "vale".into(),
        entries: vec![sword, deep],
        ..Book::default()
    };
    save_book(dir.path(), &book, false).unwrap();
    let cfg = StoryConfig {
        lore_dir: dir.path().to_path_buf(),
        lore: LoreConfig::default(),
        memory: MemoryConfig::default(),
        max_context: 4096,
        tokens: TokenCounter::estimate(),
        history: crate::prompt::HistoryLayers::HER,
    };
    (dir, cfg)
}

fn lizzy() -> Character {
    Character {
        name: "Elizabeth".into(),
        ..Character::default()
    }
}

fn lines(texts: &[(&str, &str)]) -> (Vec<Line>, Vec<String>) {
    let lines = texts.iter().map(|(s, t)| Line::new(*s, *t)).collect();
    let keys = (0..texts.len()).map(|i| format!("k{i}")).collect();
    (lines, keys)
}

/// Elizabeth's prompt after `transcript`, for Darcy, with seed 7.
fn input<'a>(c: &'a Character, transcript: &'a [Line], path: &'a [String]) -> StoryInput<'a> {
    StoryInput {
        character: c,
        scene_lore: &[],
        user_name: "Darcy",
        transcript,
        path,
        seed: 7,
    }
}

fn prepared(cfg: &StoryConfig, log: &StoryLog, texts: &[(&str, &str)]) -> Prepared {
    let c = lizzy();
    let (transcript, path) = lines(texts);
    let names = wanted_books(cfg, log, [&c], &[]);
    let shelf = Shelf::load(&cfg.lore_dir, names.iter().map(String::as_str));
    prepare(cfg, log, &shelf, &input(&c, &transcript, &path))
}

fn attached() -> StoryLog {
    StoryLog {
        attached: vec!["vale".into()],
        ..StoryLog::default()
    }
}

#[test]
fn attached_books_place_entries_in_the_layout() {
    let (_dir, cfg) = book_dir();
    let p = prepared(&cfg, &attached(), &[("Darcy", "My sword and the river.")]);
    assert_eq!(p.additions.background_top, ["The sword is cursed."]);
    assert_eq!(p.additions.inserts.len(), 1);
    assert_eq!(p.additions.inserts[0].depth, 1);
    assert_eq!(p.additions.inserts[0].role, Role::User);
    assert!(explain(&p).contains("vale#1"), "{}", explain(&p));
    // Not attached: nothing.
    let none = prepared(&cfg, &StoryLog::default(), &[("Darcy", "My sword.")]);
    assert!(none.additions.is_empty());
    assert!(explain(&none).contains("no lorebook applies"));
}

/// The budgets count with the session's counter: one that makes every
/// entry bigger than the lore budget leaves them out, and the memory's
/// count and how it was made are reported.
#[test]
fn budgets_count_with_the_configured_counter() {
    let (_dir, mut cfg) = book_dir();
    cfg.lore.budget = 200;
    let talk = [("Darcy", "My sword and the river.")];
    let estimated = prepared(&cfg, &attached(), &talk);
    assert_eq!(estimated.scan.as_ref().unwrap().activated.len(), 2);
    assert!(explain(&estimated).contains("estimated at four characters"));

    cfg.tokens = TokenCounter::exact(|t| 150 * t.split_whitespace().count());
    let counted = prepared(&cfg, &attached(), &talk);
    let scan = counted.scan.as_ref().unwrap();
    assert!(scan.used_tokens <= 200, "{}", scan.used_tokens);
    assert!(scan.activated.len() < 2, "{:?}", scan.activated);
    assert!(explain(&counted).contains("counted with the chat model's vocabulary"));

    let log = StoryLog {
        pins: vec![super::events::PinEvent {
            kind: super::events::MEMORY_PIN.into(),
            id: "p".into(),
            text: "Darcy owes Elizabeth a letter.".into(),
            key: None,
            created_at: "x".into(),
        }],
        ..StoryLog::default()
    };
    cfg.memory.budget_tokens = 10_000;
    let p = prepared(&cfg, &log, &talk);
    assert_eq!(p.memory_tokens, cfg.tokens.count(&p.additions.memory));
    assert!(explain(&p).contains(&format!("{} tokens", p.memory_tokens)));
}

/// The configured history rule travels with the additions (so the session
/// log records it with the reply) and is explained when it is not HER's.
#[test]
fn the_history_rule_is_part_of_what_a_reply_was_prepared_with() {
    let (_dir, mut cfg) = book_dir();
    let talk = [("Darcy", "Hello.")];
    let her = prepared(&cfg, &StoryLog::default(), &talk);
    assert!(her.additions.is_empty());
    assert!(!explain(&her).contains("history:"));
    cfg.history = crate::prompt::HistoryLayers {
        plan: true,
        thoughts: false,
    };
    let p = prepared(&cfg, &StoryLog::default(), &talk);
    assert_eq!(p.additions.history, cfg.history);
    assert!(!p.additions.is_empty(), "a reply under it must be logged");
    assert!(
        explain(&p).contains("own plans kept, inner thoughts left out"),
        "{}",
        explain(&p)
    );
    let logged = serde_json::to_value(&p.additions).unwrap();
    assert_eq!(logged["history"]["plan"], true);
    assert!(
        serde_json::to_value(&her.additions)
            .unwrap()
            .get("history")
            .is_none()
    );
}

#[test]
fn a_missing_book_is_a_warning_not_a_failure() {
    let (_dir, cfg) = book_dir();
    let log = StoryLog {
        attached: vec!["nowhere".into(), "vale".into()],
        ..StoryLog::default()
    };
    let p = prepared(&cfg, &log, &[("Darcy", "sword")]);
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(p.warnings[0].contains("nowhere"));
    assert_eq!(p.additions.background_top.len(), 1);
}

/// Sticky follows the branch: the state is the replay of the timed events
/// recorded with the replies on the path, so a sibling branch that never
/// mentioned the sword does not carry it.
/// Preparing reads no files: books in a shelf built in memory are used
/// with the lore folder gone, and a book never loaded is a warning.
#[test]
fn prepare_uses_the_shelf_not_the_lore_folder() {
    let (dir, cfg) = book_dir();
    let shelf = Shelf::load(&cfg.lore_dir, ["vale"]);
    drop(dir);
    let c = lizzy();
    let (transcript, path) = lines(&[("Darcy", "My sword.")]);
    let input = input(&c, &transcript, &path);
    let p = prepare(&cfg, &attached(), &shelf, &input);
    assert_eq!(p.additions.background_top, ["The sword is cursed."]);
    let p = prepare(&cfg, &attached(), &Shelf::default(), &input);
    assert!(p.additions.is_empty());
    assert_eq!(p.warnings, ["lorebook 'vale': not loaded"]);
}

#[test]
fn wanted_books_name_each_source_once() {
    let mut cfg = StoryConfig::default();
    cfg.lore.books = vec!["world".into(), "vale".into()];
    let mut c = lizzy();
    c.lore = vec!["vale".into(), "family".into()];
    let names = wanted_books(&cfg, &attached(), [&c], &["town".to_string()]);
    assert_eq!(names, ["vale", "family", "town", "world"]);
}

#[test]
fn sticky_lore_follows_the_branch_it_was_started_on() {
    let (_dir, cfg) = book_dir();
    let mut log = attached();
    let first = prepared(&cfg, &log, &[("Darcy", "The sword!")]);
    assert!(!first.timed_events().is_empty());
    // The reply k1 is saved with its scan's events.
    log.contexts.insert(
        "k1".into(),
        ReplyContextEvent {
            kind: REPLY_CONTEXT.into(),
            key: "k1".into(),
            additions: first.additions.clone(),
            timed: first.timed_events(),
        },
    );
    let later = [
        ("Darcy", "The sword!"),
        ("Elizabeth", "Indeed."),
        ("Darcy", "Shall we walk?"),
    ];
    let on_branch = prepared(&cfg, &log, &later);
    let scan = on_branch.scan.unwrap();
    assert_eq!(scan.activated.len(), 1);
    assert_eq!(scan.activated[0].why, Why::Sticky);
    // Another branch: the same texts, but its reply (k1 of that branch) has
    // another key, so the sticky record is not on its path.
    let c = lizzy();
    let (transcript, _) = lines(&later);
    let other_path: Vec<String> = vec!["k0".into(), "other".into(), "k2".into()];
    let shelf = Shelf::load(&cfg.lore_dir, ["vale"]);
    let off_branch = prepare(&cfg, &log, &shelf, &input(&c, &transcript, &other_path));
    assert!(off_branch.scan.unwrap().activated.is_empty());
}

#[test]
fn note_is_inserted_when_due_and_the_session_note_overrides_the_character_default() {
    let (_dir, cfg) = book_dir();
    let mut c = lizzy();
    c.note = Some(AuthorNote::new("Default note."));
    let (transcript, path) = lines(&[("Darcy", "Hello")]);
    let input = StoryInput {
        character: &c,
        scene_lore: &[],
        user_name: "Darcy",
        transcript: &transcript,
        path: &path,
        seed: 1,
    };
    let p = prepare(&cfg, &StoryLog::default(), &Shelf::default(), &input);
    assert_eq!(p.additions.inserts[0].text, "Default note.");
    let log = StoryLog {
        note: Some(AuthorNote {
            role: Role::User,
            depth: 0,
            ..AuthorNote::new("Session note.")
        }),
        ..StoryLog::default()
    };
    let p = prepare(&cfg, &log, &Shelf::default(), &input);
    assert_eq!(p.additions.inserts[0].text, "Session note.");
    assert_eq!(p.additions.inserts[0].role, Role::User);
}

fn session_with(events: &[serde_json::Value]) -> Session {
    let mut s = Session::new(SessionHeader::new("t"));
    let first = s
        .tree()
        .append_event(Message::new("Darcy", MessageRole::User, "hi"));
    s.apply(&first).unwrap();
    for e in events {
        s.apply(&SessionEvent::Other(e.clone())).unwrap();
    }
    s
}

#[test]
fn the_log_reads_pins_summaries_and_skips_a_malformed_summary() {
    let s = session_with(&[
        json!({"type": "lore_attach", "name": "vale"}),
        json!({"type": "lore_attach", "name": "moor"}),
        json!({"type": "lore_detach", "name": "vale"}),
        json!({"type": "memory_pin", "id": "p1", "text": "typed", "created_at": "x"}),
        json!({"type": "memory_pin", "id": "p2", "text": "of k9", "key": "k9", "created_at": "x"}),
        json!({"type": "memory_pin", "id": "p3", "text": "gone", "created_at": "x"}),
        json!({"type": "memory_unpin", "id": "p3"}),
        json!({"type": "summary", "id": "s1", "text": "v1", "upto": "k0", "source": "model", "created_at": "x"}),
        json!({"type": "summary", "id": "s2", "text": 5, "upto": "k0"}),
        json!({"type": "summary", "id": "s3", "text": "v2", "upto": "k0", "source": "user", "created_at": "x"}),
        json!({"type": "summary", "id": "s4", "text": "elsewhere", "upto": "zz", "source": "model", "created_at": "x"}),
    ]);
    let (log, warnings) = StoryLog::read(&s);
    assert_eq!(log.attached, ["moor"]);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("'summary'"), "{warnings:?}");
    let path = vec!["k0".to_string()];
    assert_eq!(log.summary_on(&path).unwrap().text, "v2");
    let pins: Vec<&str> = log.pins_on(&path).map(|p| p.text.as_str()).collect();
    assert_eq!(pins, ["typed"]);
    let with_k9 = vec!["k0".to_string(), "k9".to_string()];
    assert_eq!(log.pins_on(&with_k9).count(), 2);
}

#[test]
fn the_session_seed_is_stable() {
    assert_eq!(session_seed("abc"), session_seed("abc"));
    assert_ne!(session_seed("abc"), session_seed("abd"));
}
