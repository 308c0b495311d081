use super::*;
use crate::generation::{AdapterInfo, Provenance as EngineProv};
use crate::session::{Message, MessageMeta, SessionEvent, SessionHeader};

fn character() -> Character {
    crate::character::parse_character(
        "name = \"Elizabeth\"\nbook = \"Pride and Prejudice\"\nprofile = \"Lively.\"\n",
        std::path::Path::new("elizabeth.toml"),
    )
    .unwrap()
}

/// The prompt text a reply under `parent` gets, as the engine would hash it.
fn engine_prov(session: &Session, parent: NodeId, seed: u32, adapter: bool) -> EngineProv {
    engine_prov_with(session, parent, seed, adapter, &Additions::default())
}

fn engine_prov_with(
    session: &Session,
    parent: NodeId,
    seed: u32,
    adapter: bool,
    additions: &Additions,
) -> EngineProv {
    let cast = [character()];
    let players = players_of(&cast);
    let reader = Reader::new(session, &players);
    let rebuilt = reader.rebuild(parent, "Elizabeth", 0, additions).unwrap();
    EngineProv {
        model: "tiny".into(),
        model_fingerprint: "fp".into(),
        adapter: adapter.then(|| AdapterInfo {
            path: "persona.gguf".into(),
            scale: 1.0,
            sha256: "ab".repeat(32),
        }),
        seed,
        prompt_sha256: prompt_sha256(&rebuilt.prompt),
        prompt_tokens_sha256: "t".repeat(64),
        dropped_turns: 0,
        sampling: Some(crate::generation::SamplingConfig::default()),
        unapplied: Vec::new(),
    }
}

fn players_of(cast: &[Character]) -> SessionPlayers<'_> {
    SessionPlayers {
        cast,
        variant: PromptVariant::Training,
        user_name: "Darcy",
        annotator: "ann",
    }
}

fn reply(text: &str, prov: &EngineProv) -> Message {
    Message::new("Elizabeth", SpeakerRole::Character, text).with_meta(MessageMeta {
        provenance: serde_json::to_value(prov).ok(),
        ..MessageMeta::default()
    })
}

fn apply(session: &mut Session, event: SessionEvent) -> Option<NodeId> {
    session.apply(&event).unwrap()
}

/// Greeting, a user line, two sampled replies (the second kept), then an
/// edit of the kept one.
fn session() -> (Session, NodeId, NodeId, NodeId) {
    let mut s = Session::new(SessionHeader::new("t"));
    let greeting = Message::new("Elizabeth", SpeakerRole::Character, "Good evening.");
    let event = s.tree().append_event(greeting);
    apply(&mut s, event);
    let user = Message::new("Darcy", SpeakerRole::User, "Do you dance?");
    let event = s.tree().append_event(user);
    let user = apply(&mut s, event).unwrap();
    let first = reply(
        "<system_thinking>a</system_thinking>Elizabeth: No.",
        &engine_prov(&s, user, 1, false),
    );
    let event = s.tree().append_event(first);
    let first = apply(&mut s, event).unwrap();
    let second = reply(
        "<system_thinking>b</system_thinking>Elizabeth: Perhaps.",
        &engine_prov(&s, user, 2, true),
    );
    let event = s.tree().swipe_event(first, second).unwrap();
    let second = apply(&mut s, event).unwrap();
    (s, user, first, second)
}

fn pairs(records: &[PreferenceRecord]) -> Vec<&PreferencePair> {
    records
        .iter()
        .filter_map(|r| match r {
            PreferenceRecord::Pair(p) => Some(p),
            PreferenceRecord::Rating(_) => None,
        })
        .collect()
}

#[test]
fn a_kept_swipe_beats_its_sibling_with_exact_provenance() {
    let (s, _, _, _) = session();
    let cast = [character()];
    let out = collect_session(&s, &players_of(&cast));
    assert!(out.notes.is_empty(), "{:?}", out.notes);
    let pairs = pairs(&out.records);
    assert_eq!(pairs.len(), 1);
    let p = pairs[0];
    assert!(p.implicit);
    let (winner, loser) = p.winner_loser().unwrap();
    assert!(winner.ends_with("Perhaps.") && loser.ends_with("No."));
    let winner_prov = if p.cand_1 == winner {
        &p.cand_1_provenance
    } else {
        &p.cand_2_provenance
    };
    let prov = winner_prov.as_ref().unwrap();
    assert_eq!(prov.adapter_name.as_deref(), Some("persona.gguf"));
    assert_eq!(prov.prompt_sha256, prompt_sha256(&prov.prompt));
    assert!(
        prov.prompt
            .ends_with("<|im_start|>assistant\n<system_thinking>")
    );
    // The context is the prompt as messages: system first, the user line last.
    assert_eq!(p.context[0].role, Role::System);
    assert!(
        p.context
            .last()
            .unwrap()
            .content
            .ends_with("Darcy: Do you dance?")
    );
}

#[test]
fn an_edit_beats_the_reply_it_rewrote_and_the_other_siblings() {
    let (mut s, _, _, second) = session();
    let event = s
        .tree()
        .edit_event(second, "Elizabeth: Perhaps, sir.")
        .unwrap();
    apply(&mut s, event);
    let cast = [character()];
    let out = collect_session(&s, &players_of(&cast));
    let pairs = pairs(&out.records);
    assert_eq!(pairs.len(), 2, "{pairs:?}");
    let edit = pairs.iter().find(|p| p.id.starts_with("edit-")).unwrap();
    let (winner, loser) = edit.winner_loser().unwrap();
    assert_eq!(winner, "Elizabeth: Perhaps, sir.");
    assert!(loser.ends_with("Perhaps."));
    let swipe = pairs.iter().find(|p| p.id.starts_with("swipe-")).unwrap();
    assert!(swipe.winner_loser().unwrap().1.ends_with("No."));
}

/// A reply generated under a rewritten plan and kept beats the reply whose
/// plan was rewritten; the pair carries the edit, and the original is not
/// also counted as a plain discarded swipe.
#[test]
fn a_reply_under_an_edited_plan_beats_the_original_marked_as_a_plan_edit() {
    let (mut s, user, _, second) = session();
    let of = s.tree().node(second).unwrap().key.clone();
    let edit = crate::format::ThinkingEdit {
        of,
        layer: crate::format::Layer::SystemThinking,
        index: 0,
        before: "b".into(),
        after: "c".into(),
    };
    let mut steered = reply(
        "<system_thinking>c</system_thinking>Elizabeth: With pleasure.",
        &engine_prov(&s, user, 3, false),
    );
    steered.meta.thinking_edit = Some(Box::new(edit.clone()));
    let event = s.tree().swipe_event(second, steered).unwrap();
    apply(&mut s, event);
    let cast = [character()];
    let out = collect_session(&s, &players_of(&cast));
    let pairs = pairs(&out.records);
    let marked: Vec<_> = pairs.iter().filter(|p| p.thinking_edit.is_some()).collect();
    assert_eq!(marked.len(), 1, "{pairs:?}");
    let (winner, loser) = marked[0].winner_loser().unwrap();
    assert!(winner.ends_with("With pleasure.") && loser.ends_with("Perhaps."));
    assert_eq!(marked[0].thinking_edit.as_ref(), Some(&edit));
    // The other sibling is an ordinary swipe; the edited one is not twice.
    let plain: Vec<_> = pairs.iter().filter(|p| p.thinking_edit.is_none()).collect();
    assert!(
        plain
            .iter()
            .all(|p| p.winner_loser().unwrap().1.ends_with("No.")),
        "{plain:?}"
    );
}

/// Replies written while history kept the character's plans: the rule is
/// logged with each reply, so the export rebuilds the prompt each answered
/// (the plan of the earlier reply in it) and its hash matches; without
/// the log the rebuilt prompt would be HER's, and no provenance is claimed.
#[test]
fn replies_under_another_history_rule_export_the_prompt_they_answered() {
    let (mut s, _, _, second) = session();
    let question = Message::new("Darcy", SpeakerRole::User, "Why?");
    let event = s.tree().append_under_event(second, question).unwrap();
    let why = apply(&mut s, event).unwrap();
    let additions = Additions {
        history: crate::prompt::HistoryLayers {
            plan: true,
            thoughts: true,
        },
        ..Additions::default()
    };
    let mut unlogged = s.clone();
    let mut logged = s;
    let replies = [(7, "Elizabeth: Because."), (8, "Elizabeth: Pride.")];
    let write = |session: &mut Session, log_rule: bool| {
        let mut first = None;
        for (seed, text) in replies {
            let prov = engine_prov_with(session, why, seed, false, &additions);
            let message = reply(text, &prov);
            let event = match first {
                None => session.tree().append_under_event(why, message).unwrap(),
                Some(id) => session.tree().swipe_event(id, message).unwrap(),
            };
            let id = apply(session, event).unwrap();
            first.get_or_insert(id);
            if log_rule {
                let context = crate::story::events::ReplyContextEvent {
                    kind: crate::story::events::REPLY_CONTEXT.into(),
                    key: session.tree().node(id).unwrap().key.clone(),
                    additions: additions.clone(),
                    timed: Vec::new(),
                };
                apply(
                    session,
                    SessionEvent::Other(serde_json::to_value(&context).unwrap()),
                );
            }
        }
    };
    write(&mut logged, true);
    write(&mut unlogged, false);
    let cast = [character()];

    let out = collect_session(&logged, &players_of(&cast));
    let pair = pairs(&out.records)
        .into_iter()
        .find(|p| p.cand_1.contains("Because") || p.cand_2.contains("Because"))
        .unwrap();
    for prov in [&pair.cand_1_provenance, &pair.cand_2_provenance] {
        let prov = prov
            .as_ref()
            .expect("the hash of the rebuilt prompt matches");
        assert!(
            prov.prompt
                .contains("<system_thinking>b</system_thinking>Elizabeth: Perhaps."),
            "{}",
            prov.prompt
        );
    }
    assert!(pair.context.iter().any(|m| m.role == Role::Assistant
        && m.content == "<system_thinking>b</system_thinking>Elizabeth: Perhaps."));

    let out = collect_session(&unlogged, &players_of(&cast));
    let pair = pairs(&out.records)
        .into_iter()
        .find(|p| p.cand_1.contains("Because") || p.cand_2.contains("Because"))
        .unwrap();
    assert!(pair.cand_1_provenance.is_none() && pair.cand_2_provenance.is_none());
}

#[test]
fn kept_replies_follow_the_active_branch_with_their_ratings() {
    let (mut s, _, _, second) = session();
    let key = s.tree().node(second).unwrap().key.clone();
    let rating = serde_json::json!({
        "type": "rating", "id": "r", "key": key, "annotator": "ann",
        "score": {"stars": 5}, "created_at": "2026-01-01T00:00:00Z"
    });
    apply(&mut s, SessionEvent::Other(rating));
    let cast = [character()];
    let kept = kept_replies(&s, &players_of(&cast));
    // The greeting is the author's, the first reply was swiped away.
    assert_eq!(kept.len(), 1);
    assert!(kept[0].reply.ends_with("Perhaps."));
    assert_eq!(kept[0].rating, Some(RatingScore::Stars(5)));
    assert_eq!(kept[0].context.last().unwrap().role, Role::User);
}

#[test]
fn rating_and_arena_events_become_records_and_broken_ones_notes() {
    let (mut s, user, first, _) = session();
    let first_key = s.tree().node(first).unwrap().key.clone();
    let user_key = s.tree().node(user).unwrap().key.clone();
    let rating = RatingEvent {
        kind: RATING_EVENT.into(),
        id: "r1".into(),
        key: first_key,
        annotator: "ann".into(),
        score: ChatScore::Stars { stars: 2 },
        layer: RatedLayer::Thinking,
        tags: vec!["Emotional Expression".into()],
        rationale: Some("flat".into()),
        prompt: None,
        prompt_sha256: String::new(),
        created_at: "2026-01-01T00:00:00Z".into(),
    };
    let prov = engine_prov(&s, user, 5, false);
    let arena = ArenaEvent {
        kind: ARENA_EVENT.into(),
        id: "a1".into(),
        parent: Some(user_key),
        speaker: "Elizabeth".into(),
        annotator: "ann".into(),
        candidates: [
            ArenaCandidate {
                text: "Elizabeth: Yes.".into(),
                label: "seed 5".into(),
                provenance: Some(prov.clone()),
            },
            ArenaCandidate {
                text: "Elizabeth: Never.".into(),
                label: "seed 6".into(),
                provenance: Some(EngineProv { seed: 6, ..prov }),
            },
        ],
        shown_first: 1,
        verdict: Verdict::Cand2,
        prompt: "the exact prompt".into(),
        additions: Additions::default(),
        created_at: "2026-01-01T00:00:00Z".into(),
    };
    for value in [
        serde_json::to_value(&rating).unwrap(),
        serde_json::to_value(&arena).unwrap(),
        serde_json::json!({"type": "rating", "id": "r2", "key": "nowhere"}),
    ] {
        apply(&mut s, SessionEvent::Other(value));
    }
    let cast = [character()];
    let out = collect_session(&s, &players_of(&cast));
    let rating = out
        .records
        .iter()
        .find_map(|r| match r {
            PreferenceRecord::Rating(r) => Some(r),
            PreferenceRecord::Pair(_) => None,
        })
        .unwrap();
    assert_eq!(rating.score, RatingScore::Stars(2));
    assert_eq!(rating.layer, RatedLayer::Thinking);
    assert_eq!(rating.rationale.as_deref(), Some("flat"));
    assert!(rating.reply.ends_with("No."));
    // No prompt was logged and the hash is unknown: no made-up provenance.
    assert!(rating.provenance.is_none());
    let round = pairs(&out.records)
        .into_iter()
        .find(|p| p.id == "a1")
        .unwrap();
    assert_eq!(round.verdict, Verdict::Cand2);
    assert_eq!(
        round.cand_2_provenance.as_ref().map(|p| p.seed),
        Some(Some(6))
    );
    assert_eq!(out.notes.len(), 1, "{:?}", out.notes);
    assert!(out.notes[0].contains("line 0"), "{:?}", out.notes);
}
