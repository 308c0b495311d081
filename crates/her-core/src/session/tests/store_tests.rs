//! The event log on disk.

use crate::fsutil::IoError;
use std::fs;
use std::time::{Duration, SystemTime};

use serde_json::json;

use super::*;

/// What a fresh reader sees (the writer keeps its lock meanwhile).
fn reopen(file: &SessionFile) -> (Session, Vec<LoadIssue>) {
    load_session(file.path()).unwrap()
}

/// A session exercising every op, written through `commit`.
fn busy_session(dir: &Path) -> (SessionFile, Session) {
    let (mut f, mut s) = create(dir, "At the ball");
    let g = commit(&mut f, &mut s, |s| {
        s.tree().append_event(msg(
            "Elizabeth",
            Role::Character,
            "<system_thinking>greet</system_thinking>Hello.",
        ))
    });
    commit(&mut f, &mut s, |s| {
        s.tree()
            .append_under_event(NodeId::ROOT, msg("Elizabeth", Role::Character, "Hi."))
            .unwrap()
    });
    commit(&mut f, &mut s, |s| {
        s.tree().select_event(NodeId::ROOT, 0).unwrap()
    });
    let u = commit(&mut f, &mut s, |s| {
        s.tree().append_event(msg("Darcy", Role::User, "Madam."))
    });
    let mut reply = msg(
        "Elizabeth",
        Role::Character,
        "<system_thinking>plan</system_thinking>Sir.",
    );
    reply.meta = MessageMeta {
        finish_reason: Some("length".into()),
        incomplete: true,
        provenance: Some(json!({"model": "her-32b-q4", "seed": 7})),
        ..MessageMeta::default()
    };
    let r = commit(&mut f, &mut s, |s| s.tree().append_event(reply));
    let r2 = commit(&mut f, &mut s, |s| {
        s.tree()
            .swipe_event(r, msg("Elizabeth", Role::Character, "Two."))
            .unwrap()
    });
    commit(&mut f, &mut s, |s| {
        s.tree()
            .continue_event(r, " More.", MessageMeta::default())
            .unwrap()
    });
    commit(&mut f, &mut s, |s| {
        s.tree().edit_event(u, "Miss Bennet.").unwrap()
    });
    commit(&mut f, &mut s, |s| s.tree().delete_event(r2).unwrap());
    let jump = s.tree().jump_to_events(r).unwrap();
    f.commit_all(&mut s, jump).unwrap();
    commit(&mut f, &mut s, |s| s.rename_event("The ball"));
    commit(&mut f, &mut s, |s| {
        SessionEvent::Other(
            json!({"type": "rating", "key": s.tree().node(g).unwrap().key, "score": 1}),
        )
    });
    (f, s)
}

#[test]
fn every_op_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let (f, s) = busy_session(dir.path());
    let (back, issues) = reopen(&f);
    assert!(issues.is_empty(), "{issues:?}");
    assert_eq!(back, s);
    assert_eq!(back.tree().active_path(), s.tree().active_path());
    assert_eq!(back.tree().rows(), s.tree().rows());
    assert_eq!(back.title(), "The ball");
    assert_eq!(back.header().title, "At the ball");
    let other = &back.other_events()[0];
    assert_eq!(other.value["type"], "rating");
    assert_eq!(other.line, 14);
    // A load-only view gives the same.
    assert_eq!(load_session(f.path()).unwrap().0, s);
}

#[test]
fn file_name_and_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (f, _) = busy_session(dir.path());
    let name = f.path().file_name().unwrap().to_str().unwrap().to_string();
    let (stamp, rest) = name.split_at(15);
    assert!(
        stamp[..8].bytes().all(|b| b.is_ascii_digit()) && &stamp[8..9] == "-",
        "{name}"
    );
    assert!(stamp[9..].bytes().all(|b| b.is_ascii_digit()), "{name}");
    let rest = rest.strip_prefix("-at-the-ball-").unwrap();
    let hex = rest.strip_suffix(".jsonl").unwrap();
    assert!(
        hex.len() == 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "{name}"
    );

    let text = fs::read_to_string(f.path()).unwrap();
    assert!(text.ends_with('\n'));
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["type"].is_string());
    }
    assert!(
        text.lines()
            .next()
            .unwrap()
            .starts_with(r#"{"type":"header","version":1,"#)
    );
}

#[test]
fn slugs() {
    assert_eq!(slug("Pride & Prejudice — Ch. 1!"), "pride-prejudice-ch-1");
    assert_eq!(slug("  --Élise--  "), "lise");
    assert_eq!(slug(&"a".repeat(100)).len(), 40);
    assert_eq!(
        slug(&"abc ".repeat(30)).len(),
        39,
        "no trailing '-' after the cut"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut h = header("???");
    h.character = Some("Mr. Darcy".into());
    let (f, _) = SessionFile::create(dir.path(), h).unwrap();
    assert!(f.path().to_str().unwrap().contains("-mr-darcy-"));
    let mut h = header("");
    h.character = None;
    let (f, _) = SessionFile::create(dir.path(), h).unwrap();
    assert!(f.path().to_str().unwrap().contains("-session-"));
}

#[test]
fn a_corrupt_line_is_skipped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (f, s) = busy_session(dir.path());
    let text = fs::read_to_string(f.path()).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(3, "{\"type\":\"message\", oops");
    lines.insert(
        5,
        "{\"type\":\"select\",\"parent\":null,\"child\":\"no-such-key\"}",
    );
    lines.insert(6, "{\"type\":\"delete\"}");
    lines.insert(7, "[1,2]");
    fs::write(f.path(), lines.join("\n") + "\n").unwrap();

    let (back, issues) = reopen(&f);
    let shown: Vec<String> = issues.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        vec![
            "line 4: not valid JSON (key must be a string at column 20); skipped",
            "line 6: unknown key 'no-such-key'; skipped",
            "line 7: not a valid 'delete' event (missing field `key`); skipped",
            "line 8: not an event (no string 'type' field); skipped",
        ]
    );
    assert_eq!(back.tree(), s.tree());
    assert_eq!(back.title(), s.title());
    // Loading does not touch the file.
    assert_eq!(
        fs::read_to_string(f.path()).unwrap(),
        lines.join("\n") + "\n"
    );
}

#[test]
fn a_cut_off_last_line_is_reported_and_healed_by_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let (mut f, mut s) = create(dir.path(), "crash");
    commit(&mut f, &mut s, |s| {
        s.tree()
            .append_event(msg("Elizabeth", Role::Character, "One."))
    });
    // Simulate a crash half-way through writing an event.
    let whole =
        serde_json::to_string(&s.tree().append_event(msg("Darcy", Role::User, "Two."))).unwrap();
    let mut bytes = fs::read(f.path()).unwrap();
    bytes.extend_from_slice(&whole.as_bytes()[..whole.len() / 2]);
    fs::write(f.path(), &bytes).unwrap();

    let path = f.path().to_path_buf();
    drop(f);
    let (mut f, mut s, issues) = SessionFile::open(&path).unwrap();
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].line, 3);
    assert!(
        issues[0]
            .message
            .starts_with("not valid JSON (EOF while parsing"),
        "{}",
        issues[0]
    );
    assert!(
        issues[0].message.ends_with(
            "skipped (the last line is incomplete: the writer was probably interrupted)"
        )
    );
    assert_eq!(s.tree().len(), 1);

    let n = commit(&mut f, &mut s, |s| {
        s.tree()
            .append_event(msg("Darcy", Role::User, "Two again."))
    });
    let after = fs::read(f.path()).unwrap();
    assert!(
        after.starts_with(&bytes),
        "existing bytes are never rewritten"
    );
    assert_eq!(after[bytes.len()], b'\n', "the cut-off line is ended first");
    assert!(after.ends_with(b"\n"));

    let (back, issues) = reopen(&f);
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].line, 3);
    assert!(
        !issues[0].message.contains("incomplete"),
        "no longer the last line"
    );
    assert_eq!(back, s);
    assert_eq!(back.tree().node(n).unwrap().message.text, "Two again.");
}

#[test]
fn append_only_adds_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut f, mut s) = busy_session(dir.path());
    let before = fs::read(f.path()).unwrap();
    let line = f.append(&s.rename_event("x")).unwrap();
    let after = fs::read(f.path()).unwrap();
    assert!(after.starts_with(&before));
    assert_eq!(
        &after[before.len()..],
        b"{\"type\":\"rename\",\"title\":\"x\"}\n"
    );
    assert_eq!(line, 15);
    // Raw append does not apply; commit does.
    assert_eq!(s.title(), "The ball");
    commit(&mut f, &mut s, |s| s.rename_event("y"));
    assert_eq!(reopen(&f).0, s);
    assert!(f.append(&SessionEvent::Header(header("no"))).is_err());
}

#[test]
fn unknown_events_are_kept_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let (f, _) = busy_session(dir.path());
    let mut text = fs::read_to_string(f.path()).unwrap();
    text.push_str("{\"type\":\"bookmark\",\"key\":\"k\",\"note\":{\"a\":[1,2]}}\n");
    fs::write(f.path(), &text).unwrap();
    let (back, issues) = reopen(&f);
    assert!(issues.is_empty());
    let kinds: Vec<(usize, &str)> = back
        .other_events()
        .iter()
        .map(|o| (o.line, o.value["type"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, vec![(14, "rating"), (15, "bookmark")]);
    assert_eq!(back.other_events()[1].value["note"], json!({"a": [1, 2]}));
}

#[test]
fn a_rejected_event_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let (mut f, mut s) = busy_session(dir.path());
    let before = fs::read(f.path()).unwrap();
    let memory = s.clone();
    let bad = SessionEvent::Delete {
        key: "missing".into(),
    };
    let err = f.commit(&mut s, bad).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("event not written: unknown key 'missing'"),
        "{err}"
    );
    let fake = SessionEvent::Other(json!({"type": "message"}));
    assert!(f.commit(&mut s, fake).is_err());
    assert_eq!(fs::read(f.path()).unwrap(), before);
    assert_eq!(s, memory);
    // A session from another file is refused.
    let (_, mut other) = create(dir.path(), "other");
    let ev = other.tree().append_event(msg("a", Role::User, "b"));
    assert!(matches!(
        f.commit(&mut other, ev),
        Err(SessionError::WrongSession { .. })
    ));
}

#[cfg(target_os = "linux")]
#[test]
fn a_failed_write_leaves_memory_and_disk_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let (mut f, mut s) = busy_session(dir.path());
    let memory = s.clone();
    let full = fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let real = f.swap_handle(full);
    let ev = s.tree().append_event(msg("Darcy", Role::User, "lost"));
    let err = f.commit(&mut s, ev).unwrap_err();
    assert!(
        matches!(
            err,
            SessionError::Io(IoError {
                action: "append to",
                ..
            })
        ),
        "{err}"
    );
    assert!(err.to_string().contains(f.path().to_str().unwrap()));
    assert_eq!(s, memory, "nothing applied");
    // The disk is back: the next commit works and line numbers are right.
    f.swap_handle(real);
    commit(&mut f, &mut s, |_| {
        SessionEvent::Other(json!({"type": "rating", "score": -1}))
    });
    let (back, issues) = reopen(&f);
    assert!(issues.is_empty());
    assert_eq!(back, s);
    assert_eq!(back.other_events()[1].line, 15);
}

#[test]
fn a_bad_header_is_a_hard_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.jsonl");
    fs::write(&path, "").unwrap();
    let err = SessionFile::open(&path).unwrap_err().to_string();
    assert!(
        err.contains("broken.jsonl")
            && err.ends_with("line 1: not a session header: the file is empty"),
        "{err}"
    );
    fs::write(&path, "{\"type\":\"rename\",\"title\":\"x\"}\n").unwrap();
    let err = SessionFile::open(&path).unwrap_err().to_string();
    assert!(
        err.ends_with("line 1: not a session header: a 'rename' event"),
        "{err}"
    );
    fs::write(&path, "hello\n").unwrap();
    let err = SessionFile::open(&path).unwrap_err().to_string();
    assert!(
        err.ends_with("not valid JSON (expected value at column 1)"),
        "{err}"
    );
    let err = SessionFile::open(&dir.path().join("none.jsonl"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("cannot read '") && err.contains("none.jsonl"),
        "{err}"
    );
}

#[test]
fn a_newer_version_loads_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = header("future");
    h.version = FORMAT_VERSION + 1;
    let (f, _) = SessionFile::create(dir.path(), h).unwrap();
    let (_, issues) = reopen(&f);
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].line, 1);
}

fn set_mtime(path: &Path, secs_ago: u64) {
    let file = fs::OpenOptions::new().append(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(secs_ago))
        .unwrap();
}

#[test]
fn list_sessions_newest_first_with_counts() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        list_sessions(&dir.path().join("absent"))
            .unwrap()
            .is_empty()
    );
    let (old_f, _) = busy_session(dir.path());
    let (mut new_f, mut new_s) = create(dir.path(), "Second");
    commit(&mut new_f, &mut new_s, |new_s| {
        new_s.tree().append_event(msg("E", Role::Character, "a"))
    });
    let (empty_f, _) = create(dir.path(), "Third");
    fs::write(dir.path().join("notes.txt"), "not a session").unwrap();
    let broken = dir.path().join("broken.jsonl");
    fs::write(&broken, "garbage\n").unwrap();
    set_mtime(old_f.path(), 300);
    set_mtime(new_f.path(), 10);
    set_mtime(empty_f.path(), 100);
    set_mtime(&broken, 1000);

    let list = list_sessions(dir.path()).unwrap();
    let rows: Vec<(&str, usize)> = list
        .iter()
        .map(|s| (s.title.as_str(), s.messages))
        .collect();
    assert_eq!(
        rows,
        vec![("Second", 1), ("Third", 0), ("The ball", 7), ("broken", 0)]
    );
    assert_eq!(list[0].character.as_deref(), Some("Elizabeth"));
    assert_eq!(list[0].created_at, AT);
    assert!(list[0].problem.is_none());
    assert!(
        list[3]
            .problem
            .as_deref()
            .unwrap()
            .starts_with("line 1: not a session header")
    );
    assert!(list[0].modified > list[1].modified);
}

#[test]
fn trash_moves_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (f, s) = busy_session(dir.path());
    let bytes = fs::read(f.path()).unwrap();
    let path = f.path().to_path_buf();
    drop(f);
    let trashed = trash_session(&path).unwrap();
    assert!(!path.exists());
    assert_eq!(
        trashed,
        dir.path().join(TRASH_DIR).join(path.file_name().unwrap())
    );
    assert_eq!(fs::read(&trashed).unwrap(), bytes);
    assert_eq!(load_session(&trashed).unwrap().0, s);
    assert!(list_sessions(dir.path()).unwrap().is_empty());
    // A second file of the same name does not overwrite the first.
    fs::write(&path, &bytes).unwrap();
    let again = trash_session(&path).unwrap();
    assert_ne!(again, trashed);
    assert!(again.to_str().unwrap().ends_with("-1.jsonl"));
    assert!(trashed.exists() && again.exists());
}
