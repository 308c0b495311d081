//! Exports of the active branch against golden strings.

use std::fs;

use serde_json::{Value, json};

use super::*;

/// Greeting, a user line, and a reply with a second swipe (the first one
/// selected).
fn ball() -> Session {
    let mut s = Session::new(header("Ball"));
    apply(&mut s, |t| {
        t.append_event(msg("Elizabeth", Role::Character,
        "<system_thinking>She greets him coolly.</system_thinking>Elizabeth: <role_action>curtsies</role_action>Good evening, sir."))
    });
    apply(&mut s, |t| {
        t.append_event(msg(
            "Darcy",
            Role::User,
            "Good evening. <role_action>bows</role_action>",
        ))
    });
    let r1 = apply(&mut s, |t| t.append_event(msg("Elizabeth", Role::Character,
        "<system_thinking>Tease him.</system_thinking>Elizabeth: <role_thinking>How proud he is.</role_thinking><role_action> smiles </role_action>You dance, Mr. Darcy?"))).unwrap();
    apply(&mut s, |t| {
        t.swipe_event(
            r1,
            msg(
                "Elizabeth",
                Role::Character,
                "<system_thinking>Short.</system_thinking>Elizabeth: Indeed.",
            ),
        )
        .unwrap()
    });
    apply(&mut s, |t| {
        t.select_event(t.node(r1).unwrap().parent.unwrap(), 0)
            .unwrap()
    });
    s
}

const DROP: ExportOptions = ExportOptions {
    drop_role_thinking: true,
};

#[test]
fn plain_text() {
    assert_eq!(
        to_plain_text(&ball(), ExportOptions::default()),
        "Elizabeth: (curtsies) Good evening, sir.\n\n\
         Darcy: Good evening. (bows)\n\n\
         Elizabeth: [How proud he is.] (smiles) You dance, Mr. Darcy?\n"
    );
    assert_eq!(
        to_plain_text(&ball(), DROP),
        "Elizabeth: (curtsies) Good evening, sir.\n\n\
         Darcy: Good evening. (bows)\n\n\
         Elizabeth: (smiles) You dance, Mr. Darcy?\n"
    );
}

#[test]
fn markdown() {
    assert_eq!(
        to_markdown(&ball(), ExportOptions::default()),
        "**Elizabeth**\n\n*curtsies* Good evening, sir.\n\n\
         **Darcy**\n\nGood evening. *bows*\n\n\
         **Elizabeth**\n\n*[How proud he is.]* *smiles* You dance, Mr. Darcy?\n"
    );
    assert!(
        to_markdown(&ball(), DROP).ends_with("**Elizabeth**\n\n*smiles* You dance, Mr. Darcy?\n")
    );
}

#[test]
fn untagged_and_odd_replies() {
    let mut s = Session::new(header("Odd"));
    // A stock model ignoring the prefill: all of it is speech.
    apply(&mut s, |t| {
        t.append_event(msg("Bot", Role::Character, "<system_thinking>Hello there!"))
    });
    // A prefix naming someone else is kept; an unclosed plan is dropped.
    apply(&mut s, |t| {
        t.append_event(msg("Jane", Role::User, "Lizzy: are you there?"))
    });
    let mut cut = msg("Bot", Role::Character, "<system_thinking>I should");
    cut.meta.incomplete = true;
    apply(&mut s, |t| t.append_event(cut));
    assert_eq!(
        to_plain_text(&s, ExportOptions::default()),
        "Bot: Hello there!\n\nJane: Lizzy: are you there?\n\nBot:\n"
    );
    let mut cut = msg(
        "Bot",
        Role::Character,
        "<system_thinking>plan</system_thinking><role_action>waves</role_action><role_thinking>Who",
    );
    cut.meta.incomplete = true;
    apply(&mut s, |t| t.append_event(cut));
    assert!(to_plain_text(&s, ExportOptions::default()).ends_with("Bot: (waves) [Who]\n"));
    assert!(to_plain_text(&s, DROP).ends_with("Bot: (waves)\n"));
    assert_eq!(to_plain_text(&Session::new(header("empty")), DROP), "");
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn sillytavern() {
    let out = to_sillytavern(&ball(), ExportOptions::default()).unwrap();
    let date = "May 1, 2024 2:03pm";
    let info = json!({"send_date": date, "extra": {}});
    assert_eq!(
        lines(&out),
        vec![
            json!({"user_name": "Darcy", "character_name": "Elizabeth",
                   "create_date": "2024-05-01@14h03m07s", "chat_metadata": {}}),
            json!({"name": "Elizabeth", "is_user": false, "is_system": false, "send_date": date,
                   "mes": "*curtsies* Good evening, sir.", "swipes": ["*curtsies* Good evening, sir."],
                   "swipe_id": 0, "swipe_info": [info], "extra": {}}),
            json!({"name": "Darcy", "is_user": true, "is_system": false, "send_date": date,
                   "mes": "Good evening. *bows*", "swipes": ["Good evening. *bows*"],
                   "swipe_id": 0, "swipe_info": [info], "extra": {}}),
            json!({"name": "Elizabeth", "is_user": false, "is_system": false, "send_date": date,
                   "mes": "*[How proud he is.]* *smiles* You dance, Mr. Darcy?",
                   "swipes": ["*[How proud he is.]* *smiles* You dance, Mr. Darcy?", "Indeed."],
                   "swipe_id": 0, "swipe_info": [info, info], "extra": {}}),
        ]
    );
    assert!(out.ends_with("}\n") && out.lines().count() == 4);
}

#[test]
fn sillytavern_skips_deleted_swipes_and_tracks_the_active_one() {
    let mut s = ball();
    let leaf = s.tree().leaf();
    let r2 = apply(&mut s, |t| {
        t.swipe_event(leaf, msg("Elizabeth", Role::Character, "Third."))
            .unwrap()
    })
    .unwrap();
    apply(&mut s, |t| t.cycle_event(r2, -1).unwrap().unwrap()); // "Indeed."
    apply(&mut s, |t| t.delete_event(leaf).unwrap());
    let out = to_sillytavern(&s, DROP).unwrap();
    let last = lines(&out).pop().unwrap();
    assert_eq!(last["swipes"], json!(["Indeed.", "Third."]));
    assert_eq!(last["swipe_id"], 0);
    assert_eq!(last["mes"], "Indeed.");
}

#[test]
fn exports_are_written_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ball.md");
    fs::write(&path, "old").unwrap();
    let s = ball();
    export(&s, ExportFormat::Markdown, ExportOptions::default(), &path).unwrap();
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        to_markdown(&s, ExportOptions::default())
    );
    export(
        &s,
        ExportFormat::SillyTavern,
        DROP,
        &dir.path().join("ball.jsonl"),
    )
    .unwrap();
    export(
        &s,
        ExportFormat::PlainText,
        DROP,
        &dir.path().join("ball.txt"),
    )
    .unwrap();
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["ball.jsonl", "ball.md", "ball.txt"],
        "no temp files left"
    );
    let err = export(
        &s,
        ExportFormat::Markdown,
        DROP,
        &dir.path().join("no/such/dir.md"),
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("cannot write '"), "{err}");
}

#[test]
fn events_serialize_as_one_tagged_line() {
    let s = ball();
    let node = s.tree().node(s.tree().leaf()).unwrap();
    let events = [
        SessionEvent::Header(header("Ball")),
        SessionEvent::Message {
            key: node.key.clone(),
            parent: None,
            message: node.message.clone(),
        },
        SessionEvent::Select {
            parent: None,
            child: "k".into(),
        },
        SessionEvent::Delete { key: "k".into() },
        SessionEvent::Rename { title: "t".into() },
        SessionEvent::Other(json!({"type": "rating", "key": "k", "value": 1})),
    ];
    for e in events {
        let line = serde_json::to_string(&e).unwrap();
        assert!(!line.contains('\n'));
        if !matches!(e, SessionEvent::Other(_)) {
            // list_sessions counts message lines by this prefix.
            assert!(
                line.starts_with(&format!("{{\"type\":\"{}\"", e.type_name())),
                "{line}"
            );
        }
        assert_eq!(serde_json::from_str::<SessionEvent>(&line).unwrap(), e);
        assert_eq!(decode_line(&line).unwrap(), e);
    }
    let err = serde_json::from_str::<SessionEvent>(r#"{"type":"rename"}"#).unwrap_err();
    assert!(err.to_string().contains("missing field `title`"), "{err}");
}
