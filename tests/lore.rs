//! Lorebooks end to end: a hand-written SillyTavern World Info export using
//! every option survives import → export → import, `her import` / `her
//! export lore` write and refuse as they should, bad books are refused with
//! the entry and field named, and a card's embedded book runs on the engine
//! with recursion and inclusion groups.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use her_core::character::card::{Format, read_card_bytes};
use her_core::lore::{
    self, Book, BookFormat, Library, Placement, Position, Reason, RecursionDelay, Role, ScanInput,
    ScanMessage, ScanSettings, Scope, TimedState, Why,
};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lore/eldoria.json")
}

fn import(path: &Path) -> lore::ImportedBook {
    lore::read_book_file(path).unwrap().expect("a book")
}

fn her(studio: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_her"));
    cmd.env("HOME", studio)
        .current_dir(studio)
        .args(["--studio", studio.to_str().unwrap()])
        .arg("--set")
        .arg(format!("log.file={}", studio.join("her.log").display()));
    cmd
}

/// `her chat --headless` with Elizabeth on `model`, four-token replies,
/// `input` on stdin.
fn headless_chat(studio: &Path, model: &Path, extra: &[&str], input: &str) -> Output {
    common::fed(
        her(studio)
            .args(["chat", "--headless", "--character", "elizabeth-bennet"])
            .arg("--model")
            .arg(model)
            .args(["--set", "sampling.max_new_tokens=4"])
            .args(["--set", "model.threads=2"])
            .args(extra),
        input,
    )
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_option_of_a_sillytavern_export_is_read() {
    let imported = import(&fixture());
    assert_eq!(imported.format, BookFormat::WorldInfo);
    assert!(imported.warnings.is_empty(), "{:?}", imported.warnings);
    let book = &imported.book;
    assert_eq!(book.name, "eldoria", "named after the file");
    assert_eq!(book.entries.len(), 8);
    let by_uid = |uid| book.entries.iter().find(|e| e.uid == uid).unwrap();
    let kingdom = by_uid(0);
    assert_eq!(kingdom.keys[1], "/the (old|lost) kingdom/i");
    assert_eq!(kingdom.scan_depth, Some(5));
    assert_eq!(kingdom.case_sensitive, Some(true));
    assert_eq!((kingdom.sticky, kingdom.cooldown, kingdom.delay), (3, 6, 2));
    assert!(kingdom.also_scan.persona_description && kingdom.also_scan.scenario);
    assert_eq!(kingdom.triggers, ["normal", "continue"]);
    assert_eq!(kingdom.character_filter.as_ref().unwrap().tags, ["fantasy"]);
    assert_eq!(kingdom.extensions["chub"]["rating"], 5);
    let tower = by_uid(1);
    assert_eq!(tower.position, Position::AtDepth);
    assert_eq!(tower.role, Some(Role::Assistant));
    assert_eq!(tower.delay_until_recursion, RecursionDelay::On);
    assert_eq!(tower.groups().collect::<Vec<_>>(), ["landmarks", "places"]);
    let river = by_uid(2);
    assert!(river.disabled);
    assert_eq!(river.delay_until_recursion, RecursionDelay::Level(3));
    assert_eq!(river.probability, 12.5);
    assert_eq!(river.extra_fields["customField"]["n"][1], 2.5);
    assert_eq!(by_uid(3).role, None);
    assert_eq!(by_uid(4).outlet, "worldmap");
    assert_eq!(by_uid(6).order, -5);
    assert_eq!(book.extra_fields["originalData"]["name"], "Eldoria");
}

#[test]
fn import_export_import_is_equal_and_keeps_every_field() {
    let first = import(&fixture()).book;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("again.json");
    lore::export_book(&first, &out).unwrap();
    let second = import(&out).book;
    assert_eq!(second, first);

    // Every field of every original entry comes out with the same value.
    let original: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture()).unwrap()).unwrap();
    let exported: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    for (uid, entry) in original["entries"].as_object().unwrap() {
        for (field, value) in entry.as_object().unwrap() {
            assert_eq!(
                &exported["entries"][uid][field], value,
                "entry {uid}, field {field}"
            );
        }
    }
    assert_eq!(exported["originalData"], original["originalData"]);

    // And the TOML file holds the same book.
    let saved = lore::save_book(dir.path(), &first, false).unwrap();
    assert_eq!(lore::load_book(&saved).unwrap(), first);
}

#[test]
fn her_import_and_export_lore_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let studio = dir.path();
    std::fs::create_dir_all(studio.join("characters")).unwrap();
    let source = studio.join("Eldoria.json");
    std::fs::copy(fixture(), &source).unwrap();

    let stdout = ok(&her(studio).arg("import").arg(&source).output().unwrap());
    let written = studio.join("characters/lore/eldoria.toml");
    assert!(stdout.contains("characters/lore/eldoria.toml"), "{stdout}");
    let book = lore::load_book(&written).unwrap();
    assert_eq!(book.name, "Eldoria");

    // No silent overwrite.
    let again = her(studio).arg("import").arg(&source).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));

    // Export by name, default file in the current folder, then back.
    ok(&her(studio)
        .args(["export", "lore", "Eldoria"])
        .output()
        .unwrap());
    let exported = studio.join("eldoria.json");
    assert_eq!(import(&exported).book, book);
    let chosen = studio.join("out/world.json");
    std::fs::create_dir_all(chosen.parent().unwrap()).unwrap();
    ok(&her(studio)
        .args(["export", "lore", "eldoria", "--out"])
        .arg(&chosen)
        .output()
        .unwrap());
    ok(&her(studio)
        .arg("import")
        .arg(&chosen)
        .arg("--force")
        .output()
        .unwrap());
    assert_eq!(lore::load_book(&written).unwrap(), book);

    let missing = her(studio)
        .args(["export", "lore", "nowhere"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no lorebook named 'nowhere'"));
}

#[test]
fn lorebook_v3_files_are_books_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v3.json");
    std::fs::write(
        &path,
        r#"{"spec": "lorebook_v3", "data": {"name": "Sea", "scan_depth": 3, "token_budget": 400,
            "recursive_scanning": true, "extensions": {"x": 1},
            "entries": [
              {"keys": ["tide"], "content": "The tide.", "extensions": {"group": "sea", "sticky": 2, "position": 4, "depth": 1, "role": 1, "selectiveLogic": 2, "other": true},
               "enabled": true, "insertion_order": 7, "use_regex": true, "id": 5, "comment": "Tide", "name": "tide entry", "priority": 3, "case_sensitive": true},
              {"keys": ["wave"], "content": "Waves.", "extensions": {}, "enabled": false, "insertion_order": 2, "use_regex": true, "position": "before_char"},
              {"keys": ["gull"], "content": "Gulls.", "extensions": {}, "enabled": true, "insertion_order": 1, "use_regex": true, "id": 5}
            ]}}"#,
    )
    .unwrap();
    let imported = import(&path);
    assert_eq!(imported.format, BookFormat::LorebookV3);
    let book = imported.book;
    assert_eq!(book.name, "Sea");
    assert_eq!(book.defaults.scan_depth, Some(3));
    assert_eq!(book.defaults.token_budget, Some(400));
    let uids: Vec<u32> = book.entries.iter().map(|e| e.uid).collect();
    assert_eq!(uids, [0, 1, 5], "id 5 kept once, the others get free uids");
    assert!(
        imported.warnings.iter().any(|w| w.contains("id is used")),
        "{:?}",
        imported.warnings
    );
    let tide = book.entries.iter().find(|e| e.uid == 5).unwrap();
    assert_eq!(tide.group, "sea");
    assert_eq!(tide.sticky, 2);
    assert_eq!(tide.position, Position::AtDepth);
    assert_eq!(tide.role, Some(Role::User));
    assert_eq!(tide.case_sensitive, Some(true));
    assert_eq!(tide.extensions["other"], true);
    assert_eq!(tide.extra_fields["priority"], 3);
    let wave = book.entries.iter().find(|e| e.keys[0] == "wave").unwrap();
    assert!(wave.disabled);
    assert_eq!(wave.position, Position::BeforeChar);
    let gull = book.entries.iter().find(|e| e.keys[0] == "gull").unwrap();
    assert_eq!(
        gull.position,
        Position::AfterChar,
        "SillyTavern's default for cards"
    );
}

fn refused(json: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(&path, json).unwrap();
    lore::read_book_file(&path).unwrap_err().to_string()
}

#[test]
fn bad_books_name_the_entry_and_the_field() {
    let err = refused(r#"{"entries": {"3": {"uid": 3, "comment": "Gate", "key": ["/ga(te/"]}}}"#);
    assert!(
        err.contains("entry uid '3' ('Gate')")
            && err.contains("field 'key[0]'")
            && err.contains("regex"),
        "{err}"
    );
    let err = refused(r#"{"entries": {"4": {"uid": 4, "comment": "Moat", "key": "moat"}}}"#);
    assert!(
        err.contains("entry uid '4' ('Moat')")
            && err.contains("field 'key'")
            && err.contains("array of strings, got a string"),
        "{err}"
    );
    let err = refused(r#"{"entries": {"5": {"uid": 5, "key": ["x", 7]}}}"#);
    assert!(
        err.contains("field 'key[1]'") && err.contains("got a number"),
        "{err}"
    );
    let err = refused(r#"{"entries": {"6": {"uid": 6, "comment": "Deep", "depth": -1}}}"#);
    assert!(
        err.contains("('Deep')") && err.contains("field 'depth'") && err.contains("'-1'"),
        "{err}"
    );
    let err = refused(r#"{"entries": {"7": {"uid": 7, "scanDepth": 5000}}}"#);
    assert!(
        err.contains("field 'scanDepth'") && err.contains("0 to 1000"),
        "{err}"
    );
    let err = refused(r#"{"entries": {"8": {"uid": 8, "probability": 140}}}"#);
    assert!(err.contains("field 'probability'"), "{err}");
    let err = refused(r#"{"entries": {"9": {"uid": 9, "selectiveLogic": 9}}}"#);
    assert!(err.contains("field 'selectiveLogic'"), "{err}");
    let err = refused(r#"{"spec": "lorebook_v3", "data": {"token_budget": -5, "entries": []}}"#);
    assert!(err.contains("field 'token_budget'"), "{err}");
    let err = refused(
        r#"{"spec": "lorebook_v3", "data": {"entries": [{"keys": ["a"], "content": "", "comment": "Bad", "id": 2, "extensions": {"depth": "deep"}}]}}"#,
    );
    assert!(
        err.contains("entry uid '2' ('Bad')") && err.contains("field 'extensions.depth'"),
        "{err}"
    );
    // Unknown fields are kept, not refused.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd.json");
    std::fs::write(
        &path,
        r#"{"entries": {"1": {"uid": 1, "key": ["a"], "flavour": "mint"}}}"#,
    )
    .unwrap();
    let book = import(&path).book;
    assert_eq!(book.entries[0].extra_fields["flavour"], "mint");
    // A card is not a book: the card importer handles it.
    std::fs::write(&path, r#"{"spec": "chara_card_v2", "data": {"name": "x"}}"#).unwrap();
    assert!(lore::read_book_file(&path).unwrap().is_none());
}

const CARD: &str = r#"{
  "spec": "chara_card_v2",
  "spec_version": "2.0",
  "data": {
    "name": "Aria",
    "description": "{{char}} is a ranger of Eldoria.",
    "personality": "quiet",
    "scenario": "A forest road.",
    "first_mes": "Hello.",
    "mes_example": "",
    "creator_notes": "",
    "system_prompt": "",
    "post_history_instructions": "",
    "alternate_greetings": [],
    "tags": [],
    "creator": "tests",
    "character_version": "1",
    "extensions": {},
    "character_book": {
      "name": "Aria's world",
      "extensions": {},
      "entries": [
        {"id": 0, "keys": ["forest"], "content": "The forest hides the old shrine.", "extensions": {"position": 0}, "enabled": true, "insertion_order": 100, "comment": "Forest"},
        {"id": 1, "keys": ["shrine"], "content": "The shrine keeps a silver bell.", "extensions": {"position": 1, "exclude_recursion": false}, "enabled": true, "insertion_order": 90, "comment": "Shrine"},
        {"id": 2, "keys": ["bell"], "content": "A bell-ringer A.", "extensions": {"group": "bellringer", "group_weight": 100}, "enabled": true, "insertion_order": 80, "comment": "Ringer A"},
        {"id": 3, "keys": ["bell"], "content": "A bell-ringer B.", "extensions": {"group": "bellringer", "group_weight": 100}, "enabled": true, "insertion_order": 80, "comment": "Ringer B"},
        {"id": 4, "keys": ["bell"], "content": "Never from recursion.", "extensions": {"exclude_recursion": true, "position": 4, "depth": 1, "role": 2}, "enabled": true, "insertion_order": 70, "comment": "Direct only"}
      ]
    }
  }
}"#;

#[test]
fn a_card_book_with_recursion_and_groups_runs_on_the_engine() {
    let imported = read_card_bytes(CARD.as_bytes(), Format::Json, Path::new("aria.json")).unwrap();
    let embedded = imported.character.lorebook.as_ref().unwrap();
    let (book, warnings) =
        lore::v3::from_card_lorebook(embedded, "aria", Path::new("aria.toml")).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(book.name, "Aria's world");
    let lib = Library::new(vec![(book, Scope::Character)], ScanSettings::default());
    let msgs = [ScanMessage {
        name: "User",
        text: "We walk into the forest.",
        is_user: true,
    }];
    let timed = TimedState::default();
    let mut winners = std::collections::BTreeSet::new();
    for seed in 0..40 {
        let input = ScanInput {
            seed,
            ..ScanInput::new(&msgs, &timed)
        };
        let out = lib.scan(&input, &|t: &str| t.len() / 4 + 1);
        let uids: Vec<u32> = out.activated.iter().map(|a| a.uid).collect();
        // forest (chat) → shrine (recursion) → one bell-ringer (recursion, group).
        assert_eq!(&uids[..2], [0, 1]);
        assert_eq!(uids.len(), 3, "{uids:?}");
        winners.insert(uids[2]);
        assert_eq!(out.activated[1].placement, Placement::AfterChar);
        assert!(matches!(
            &out.activated[2].why,
            Why::Keys(m) if m.key == "bell"
        ));
        assert!(
            out.left_out
                .iter()
                .any(|l| l.uid == 4 && l.reason == Reason::ExcludedFromRecursion)
        );
        assert!(out.left_out.iter().any(
            |l| matches!(&l.reason, Reason::GroupLost { group, .. } if group == "bellringer")
        ));
    }
    assert_eq!(winners.len(), 2, "both ringers win for some seed");
    // Typed in the chat, the non-recursable entry fires at its depth.
    let msgs = [ScanMessage {
        name: "User",
        text: "A bell rings.",
        is_user: true,
    }];
    let out = lib.scan(&ScanInput::new(&msgs, &timed), &|t: &str| t.len() / 4 + 1);
    let direct = out.activated.iter().find(|a| a.uid == 4).unwrap();
    assert_eq!(
        direct.placement,
        Placement::AtDepth {
            depth: 1,
            role: Role::Assistant
        }
    );
}

#[test]
fn a_book_round_trips_through_toml_with_every_field() {
    // The TOML form must carry everything the JSON did (checked through the fixture).
    let book: Book = import(&fixture()).book;
    let dir = tempfile::tempdir().unwrap();
    let path = lore::save_book(dir.path(), &book, false).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    for needle in [
        "delay_until_recursion = true",
        "delay_until_recursion = 3",
        "position = \"at_depth\"",
        "logic = \"not_any\"",
        "[entry.character_filter]",
        "[entry.also_scan]",
        "extra_fields_json",
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
    assert_eq!(lore::load_book(&path).unwrap(), book);
}

/// A line chat (`her chat --headless`) adds the lore its user line
/// triggers to the prompt and logs it with the reply, as the TUI does: the
/// saved session carries the entry, and `her prompt` on it shows it.
#[test]
fn a_headless_chat_uses_the_books_and_logs_what_fired() {
    let t = common::tiny();
    let dir = common::tmux::studio();
    let studio = dir.path();
    let book = studio.join("derbyshire.json");
    std::fs::write(
        &book,
        r#"{"entries": {"0": {"uid": 0, "key": ["Pemberley"], "keysecondary": [],
            "comment": "the house", "content": "LOREMARK: Pemberley is a great house in Derbyshire.",
            "constant": false, "selective": false, "order": 100, "position": 0, "disable": false}}}"#,
    )
    .unwrap();
    ok(&her(studio).arg("import").arg(&book).output().unwrap());
    std::fs::write(
        studio.join("config.toml"),
        "[lore]\nbooks = [\"derbyshire\"]\n",
    )
    .unwrap();

    let out = headless_chat(studio, &t.model, &[], "Tell me of Pemberley.\n");
    ok(&out);
    let sessions: Vec<PathBuf> = std::fs::read_dir(studio.join("sessions"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let log = std::fs::read_to_string(&sessions[0]).unwrap();
    let context = log
        .lines()
        .find(|l| l.contains("reply_context"))
        .unwrap_or_else(|| panic!("no reply_context event in {log}"));
    assert!(context.contains("LOREMARK"), "{context}");

    let shown = ok(&her(studio)
        .args(["prompt", "--session"])
        .arg(&sessions[0])
        .arg("--model")
        .arg(&t.model)
        .output()
        .unwrap());
    assert!(shown.contains("LOREMARK"), "{shown}");
}

/// The lore budget counts with the local model's vocabulary: `her prompt`'s
/// "lore budget: N of B tokens" is the vocabulary's count of the entry;
/// with a remote backend (vocabulary not here) it is
/// the four-characters-a-token estimate, and the output says which.
#[test]
fn the_lore_budget_counts_with_the_models_vocabulary() {
    let t = common::tiny();
    let dir = common::tmux::studio();
    let studio = dir.path();
    // Digits and spaces: a BPE vocabulary spends far more than one token
    // per four characters on them.
    let content = format!("Pemberley's rooms: {}", "7 ".repeat(40).trim_end());
    let book = studio.join("rooms.json");
    std::fs::write(
        &book,
        serde_json::json!({"entries": {"0": {"uid": 0, "key": ["Pemberley"], "content": content}}})
            .to_string(),
    )
    .unwrap();
    ok(&her(studio).arg("import").arg(&book).output().unwrap());
    let prompt = |extra: &[&str]| {
        let out = her(studio)
            .args(["prompt", "--counts-only", "--character", "elizabeth-bennet"])
            .args(["--line", "Darcy: Tell me of Pemberley.", "--lore", "rooms"])
            .arg("--model")
            .arg(&t.model)
            .args(extra)
            .output()
            .unwrap();
        ok(&out)
    };
    let used = |shown: &str| -> usize {
        let line = shown
            .lines()
            .find(|l| l.contains("lore budget:"))
            .unwrap_or_else(|| panic!("no lore budget in {shown}"));
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    let local = prompt(&[]);
    assert!(
        local.contains("tokens counted with the chat model's vocabulary"),
        "{local}"
    );
    // The engine counts an entry with the newline that follows it.
    let vocab = her_engine::local::Vocab::load(&t.model).unwrap();
    assert_eq!(
        used(&local),
        vocab.count(&format!("{content}\n")),
        "{local}"
    );

    let remote = prompt(&[
        "--set",
        "backend.kind=openai",
        "--set",
        "backend.base_url=http://127.0.0.1:9/v1",
    ]);
    assert!(
        remote.contains("tokens estimated at four characters"),
        "{remote}"
    );
    let estimate = (content.chars().count() + 1).div_ceil(4);
    assert_eq!(used(&remote), estimate, "{remote}");
    assert_ne!(used(&local), used(&remote), "{local}\n{remote}");
}

/// `chat.history_plan = true` sends the character's earlier plans back:
/// a headless chat under it logs the rule with each reply (so exports
/// rebuild those prompts), and `her prompt` shows an earlier reply's plan
/// in the history only while the setting is on.
#[test]
fn the_history_rule_is_logged_with_each_reply_and_shapes_the_prompt() {
    let t = common::tiny();
    let dir = common::tmux::studio();
    let studio = dir.path();
    let keep_plans = ["--set", "chat.history_plan=true"];
    let out = headless_chat(studio, &t.model, &keep_plans, "Hello.\nAnd then?\n");
    ok(&out);
    let log = std::fs::read_to_string(common::tmux::session_file(studio)).unwrap();
    let contexts: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["type"] == "reply_context")
        .collect();
    assert_eq!(contexts.len(), 2, "{log}");
    for context in &contexts {
        assert_eq!(context["additions"]["history"]["plan"], true, "{log}");
    }

    let earlier = "<system_thinking>She is teasing him.</system_thinking>Elizabeth Bennet: Rarely.";
    let prompt = |extra: &[&str]| {
        ok(&her(studio)
            .args(["prompt", "--character", "elizabeth-bennet"])
            .args(["--line", "User: Do you dance?"])
            .arg("--line")
            .arg(format!("Elizabeth Bennet: {earlier}"))
            .args(["--line", "User: Why not?"])
            .arg("--model")
            .arg(&t.model)
            .args(extra)
            .output()
            .unwrap())
    };
    let kept = prompt(&keep_plans);
    assert!(
        kept.contains(&format!("<|im_start|>assistant\n{earlier}<|im_end|>")),
        "{kept}"
    );
    assert!(
        kept.contains("history: the character's own plans kept"),
        "{kept}"
    );
    let her_rule = prompt(&[]);
    assert!(!her_rule.contains("She is teasing him."), "{her_rule}");
    assert!(
        her_rule.contains("<|im_start|>assistant\nElizabeth Bennet: Rarely.<|im_end|>"),
        "{her_rule}"
    );
}
