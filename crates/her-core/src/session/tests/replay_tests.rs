//! Replaying a file with damaged lines: each costs only its own line, and
//! the turns after it stay in the story under a placeholder.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;

use proptest::prelude::*;

use super::prop_tests::{events, op};
use super::*;

/// A linear chat of `turns` messages (user and character in turn); returns
/// the file's path and the keys in order.
fn linear_chat(dir: &Path, turns: usize) -> (PathBuf, Vec<String>) {
    let (mut f, mut s) = create(dir, "Long talk");
    let mut keys = Vec::new();
    for i in 0..turns {
        let m = if i % 2 == 0 {
            msg("Darcy", Role::User, &format!("turn {i}"))
        } else {
            msg("Elizabeth", Role::Character, &format!("turn {i}"))
        };
        let id = commit(&mut f, &mut s, |s| s.tree().append_event(m));
        keys.push(s.tree().node(id).unwrap().key.clone());
    }
    (f.path().to_path_buf(), keys)
}

/// Replaces line `number` (1-based) of `path` by `with`.
fn replace_line(path: &Path, number: usize, with: impl Fn(&str) -> String) {
    let text = fs::read_to_string(path).unwrap();
    let lines: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i + 1 == number {
                with(l)
            } else {
                l.to_string()
            }
        })
        .collect();
    fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn texts(session: &Session) -> Vec<String> {
    let tree = session.tree();
    tree.active_path()
        .into_iter()
        .map(|id| tree.node(id).unwrap().message.text.clone())
        .collect()
}

fn placeholder_text(line: usize) -> String {
    format!("[{UNREADABLE_TEXT}: line {line} of the session file is damaged]")
}

#[test]
fn a_damaged_line_in_the_middle_keeps_every_later_turn() {
    // The campaign's case: 14 turns, line 6 (turn 4) damaged beyond repair.
    for damage in [
        (|_: &str| "{\"type\":\"mess\u{0}garbage".to_string()) as fn(&str) -> String,
        |l: &str| l[..l.len() / 2].to_string(),
        |_: &str| "\u{fffd}\u{fffd}".to_string(),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (path, keys) = linear_chat(dir.path(), 14);
        replace_line(&path, 6, damage);
        let (session, issues) = load_session(&path).unwrap();
        let mut expected: Vec<String> = (0..14).map(|i| format!("turn {i}")).collect();
        expected[4] = placeholder_text(6);
        assert_eq!(texts(&session), expected);
        let tree = session.tree();
        let lost = tree.find(&keys[4]).unwrap();
        assert!(tree.node(lost).unwrap().unreadable);
        assert_eq!(tree.node(lost).unwrap().parent, tree.find(&keys[3]));
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].line, 6);
        assert!(issues[0].message.contains("placeholder"), "{issues:?}");
        // The same through the file a chat keeps open.
        let (_, reopened, _) = SessionFile::open(&path).unwrap();
        assert_eq!(reopened, session);
    }
}

#[test]
fn a_placeholder_keeps_its_place_among_branches() {
    // Turn 2 swiped twice; the middle swipe's line is damaged, and the
    // conversation went on under it. Its salvaged parent puts the
    // placeholder back among the swipes, not under the last message.
    let dir = tempfile::tempdir().unwrap();
    let (mut f, mut s) = create(dir.path(), "Branches");
    let a = commit(&mut f, &mut s, |s| {
        s.tree()
            .append_event(msg("Elizabeth", Role::Character, "a"))
    });
    let b = commit(&mut f, &mut s, |s| {
        s.tree().append_event(msg("Darcy", Role::User, "b"))
    });
    let c1 = commit(&mut f, &mut s, |s| {
        s.tree()
            .append_event(msg("Elizabeth", Role::Character, "c1"))
    });
    let c2 = commit(&mut f, &mut s, |s| {
        s.tree()
            .swipe_event(c1, msg("Elizabeth", Role::Character, "c2"))
            .unwrap()
    });
    let d = commit(&mut f, &mut s, |s| {
        s.tree().append_event(msg("Darcy", Role::User, "d"))
    });
    let c2_key = s.tree().node(c2).unwrap().key.clone();
    let path = f.path().to_path_buf();
    drop(f);
    // Line 5 is c2: keep its key and parent, lose the rest.
    replace_line(&path, 5, |l| {
        l[..l.find("\"message\":{").unwrap() + 5].to_string()
    });
    let (back, issues) = load_session(&path).unwrap();
    assert_eq!(issues.len(), 1, "{issues:?}");
    let tree = back.tree();
    let lost = tree.find(&c2_key).unwrap();
    let b_back = tree.find(&s.tree().node(b).unwrap().key).unwrap();
    assert_eq!(tree.node(lost).unwrap().parent, Some(b_back));
    assert_eq!(tree.siblings_of(lost), (1, 2));
    assert_eq!(
        texts(&back),
        vec!["a".to_string(), "b".into(), placeholder_text(5), "d".into()]
    );
    let d_back = tree.find(&s.tree().node(d).unwrap().key).unwrap();
    assert_eq!(tree.node(d_back).unwrap().parent, Some(lost));
    let _ = a;
}

#[test]
fn a_chat_can_go_on_after_a_placeholder_and_reads_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = linear_chat(dir.path(), 6);
    replace_line(&path, 4, |_| "not json".into());
    let (mut f, mut s, _) = SessionFile::open(&path).unwrap();
    commit(&mut f, &mut s, |s| {
        s.tree()
            .append_event(msg("Darcy", Role::User, "still here"))
    });
    let swiped = s.tree().active_path()[2];
    commit(&mut f, &mut s, |s| {
        s.tree()
            .swipe_event(swiped, msg("Darcy", Role::User, "instead"))
            .unwrap()
    });
    drop(f);
    let (back, issues) = load_session(&path).unwrap();
    assert_eq!(issues.len(), 1);
    assert_eq!(back, s);
}

#[test]
fn a_select_names_the_parent_of_a_lost_message() {
    let dir = tempfile::tempdir().unwrap();
    let (mut f, mut s) = create(dir.path(), "Select");
    let g = commit(&mut f, &mut s, |s| {
        s.tree()
            .append_event(msg("Elizabeth", Role::Character, "g"))
    });
    let u = commit(&mut f, &mut s, |s| {
        s.tree().append_event(msg("Darcy", Role::User, "u"))
    });
    let r1 = commit(&mut f, &mut s, |s| {
        s.tree()
            .append_event(msg("Elizabeth", Role::Character, "r1"))
    });
    commit(&mut f, &mut s, |s| {
        s.tree()
            .swipe_event(r1, msg("Elizabeth", Role::Character, "r2"))
            .unwrap()
    });
    commit(&mut f, &mut s, |s| s.tree().select_event(u, 0).unwrap());
    commit(&mut f, &mut s, |s| s.tree().select_event(u, 1).unwrap());
    commit(&mut f, &mut s, |s| {
        s.tree().append_event(msg("Darcy", Role::User, "d"))
    });
    let path = f.path().to_path_buf();
    drop(f);
    // r2 (line 5) is lost entirely; the select on line 7 names it under u,
    // not under r1, the message written just before it.
    replace_line(&path, 5, |_| "~~~".into());
    let (back, issues) = load_session(&path).unwrap();
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(
        texts(&back),
        vec!["g".to_string(), "u".into(), placeholder_text(5), "d".into()]
    );
    let tree = back.tree();
    let u_back = tree.find(&s.tree().node(u).unwrap().key).unwrap();
    assert_eq!(tree.visible_children(u_back).len(), 2);
    let _ = g;
}

#[test]
fn placeholders_stay_out_of_the_prompt_and_show_in_exports() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = linear_chat(dir.path(), 4);
    replace_line(&path, 3, |_| "{".into());
    let (back, _) = load_session(&path).unwrap();
    let text = to_plain_text(&back, ExportOptions::default());
    assert!(text.contains(UNREADABLE_TEXT), "{text}");
    assert!(text.contains("turn 3"), "{text}");
}

/// Every message line of `text`, by key: (parent key, text).
fn message_lines(text: &str) -> HashMap<String, (String, Option<String>, String)> {
    text.lines()
        .filter_map(|l| match decode_line(l) {
            Ok(SessionEvent::Message {
                key,
                parent,
                message,
            }) => Some((key, (l.to_string(), parent, message.text))),
            _ => None,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever bytes land wherever in a session file, the loader does not
    /// panic, and every message line left whole is in the tree with its
    /// text, under its own parent's key (the message itself or its placeholder).
    #[test]
    fn inserted_bytes_never_lose_a_whole_line(
        ops in proptest::collection::vec(op(), 1..30),
        at in any::<prop::sample::Index>(),
        junk in proptest::collection::vec(
            prop_oneof![any::<u8>(), Just(b'\n'), Just(b'{'), Just(b'"')], 0..24),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (mut file, mut session) = create(dir.path(), "prop");
        for op in &ops {
            for event in events(&session, op) {
                file.commit(&mut session, event).unwrap();
            }
        }
        let path = file.path().to_path_buf();
        drop(file);
        let mut bytes = fs::read(&path).unwrap();
        let original = message_lines(&String::from_utf8(bytes.clone()).unwrap());
        let header_end = bytes.iter().position(|&b| b == b'\n').unwrap_or(0);
        let at = at.index(bytes.len() + 1);
        bytes.splice(at..at, junk.iter().copied());
        fs::write(&path, &bytes).unwrap();

        let header_whole = junk.is_empty() || at > header_end;
        let (back, _) = match load_session(&path) {
            Ok(loaded) => loaded,
            // Only a damaged header may fail the load.
            Err(e) => {
                prop_assert!(!header_whole, "{}", e);
                return Ok(());
            }
        };
        let whole: std::collections::HashSet<&[u8]> = bytes.split(|&b| b == b'\n').collect();
        let tree = back.tree();
        for (key, (line, parent, text)) in &original {
            if !whole.contains(line.as_bytes()) {
                continue;
            }
            let id = tree.find(key);
            prop_assert!(id.is_some(), "lost {}", line);
            let node = tree.node(id.unwrap()).unwrap();
            prop_assert_eq!(&node.message.text, text);
            prop_assert!(!node.unreadable);
            let parent_key = node.parent
                .filter(|p| *p != NodeId::ROOT)
                .map(|p| tree.node(p).unwrap().key.clone());
            prop_assert_eq!(&parent_key, parent);
        }
        // Loading is deterministic: the same bytes, the same tree.
        let (again, _) = load_session(&path).unwrap();
        prop_assert_eq!(again, back);
    }
}
