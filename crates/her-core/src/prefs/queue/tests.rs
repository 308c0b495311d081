use std::fs;

use super::*;
use crate::fsutil::IoError;
use crate::prefs::test_support::{context, provenance};
use crate::prefs::{append_to_log, read_log};

const AT: &str = "2025-03-01T10:00:00Z";

fn tmp() -> Result<tempfile::TempDir, PrefsError> {
    Ok(tempfile::tempdir().map_err(IoError::at("create", "a temp folder"))?)
}

fn cand(text: &str) -> QueueCandidate {
    QueueCandidate {
        text: text.into(),
        label: None,
        provenance: None,
    }
}

fn item(id: &str, texts: &[&str]) -> QueueItem {
    QueueItem {
        id: id.into(),
        character: "Elizabeth".into(),
        context: context(),
        candidates: texts.iter().map(|t| cand(t)).collect(),
        session: None,
    }
}

fn line(item: &QueueItem) -> String {
    serde_json::to_string(item).unwrap_or_default()
}

/// Writes `lines` to a queue file and reads it back; errors as text.
fn read_lines(lines: &[String]) -> Result<Result<Vec<QueueItem>, String>, PrefsError> {
    let dir = tmp()?;
    let path = dir.path().join("queue.jsonl");
    fs::write(&path, lines.join("\n")).map_err(IoError::at("write", &path))?;
    let shown = path.display().to_string();
    Ok(read_queue(&path).map_err(|e| e.to_string().replace(&shown, "Q")))
}

#[test]
fn a_queue_holds_generate_rate_and_pick_items() -> Result<(), PrefsError> {
    let mut pick = item("p", &["A", "B"]);
    pick.candidates[0].provenance = Some(provenance("P"));
    pick.candidates[0].label = Some("lora-v2".into());
    let items = [item("g", &[]), item("r", &["Only."]), pick];
    let mut lines: Vec<String> = items.iter().map(line).collect();
    lines.insert(1, "   ".into());
    // A hand-written line: candidates and session may be left out.
    lines.push(
        r#"{"id": "h", "character": "Darcy", "context": [{"role": "user", "content": "Hi"}]}"#
            .into(),
    );
    let read = read_lines(&lines)?;
    let Ok(read) = read else { panic!("{read:?}") };
    assert_eq!(read[..3], items[..]);
    assert!(read[3].candidates.is_empty() && read[3].session.is_none());
    Ok(())
}

#[test]
fn queue_errors_name_the_file_and_line() -> Result<(), PrefsError> {
    let ok = line(&item("a", &["A", "B"]));
    let check = |bad: String| -> Result<String, PrefsError> {
        let lines = [ok.clone(), String::new(), bad];
        Ok(read_lines(&lines)?.err().unwrap_or_default())
    };
    assert!(check("{not json".into())?.starts_with("Q:3: not a queue item: "));
    assert_eq!(
        check(line(&item(" ", &[])))?,
        "Q:3: the item has an empty id"
    );
    assert_eq!(
        check(line(&item("a", &["C"])))?,
        "Q:3: id \"a\" is already used on line 1"
    );
    assert_eq!(
        check(line(&item("b", &["A", "B", "C"])))?,
        "Q:3: item \"b\" has 3 candidates; at most 2 are allowed"
    );
    let mut no_context = item("b", &["A"]);
    no_context.context.clear();
    assert_eq!(
        check(line(&no_context))?,
        "Q:3: item \"b\" has no context messages"
    );
    assert_eq!(
        check(line(&item("b", &["A", "A"])))?,
        "Q:3: item \"b\": both candidates are the same text"
    );
    assert_eq!(
        check(line(&item("b", &["A", " "])))?,
        "Q:3: item \"b\": candidate 2 has an empty text"
    );
    let mut stale = item("b", &["A"]);
    let mut prov = provenance("P");
    prov.prompt = "P, edited".into();
    stale.candidates[0].provenance = Some(prov);
    assert!(
        check(line(&stale))?
            .starts_with("Q:3: item \"b\": candidate 1's provenance.prompt_sha256 is ")
    );
    let typo = line(&item("b", &[])).replace("candidates", "candidate");
    let typo = typo.replace("\"candidate\":[]", "\"candidate\":[{\"text\":\"A\"}]");
    assert!(check(typo)?.contains("unknown field `candidate`"));

    let missing = Path::new("/no/such/queue.jsonl");
    let err = read_queue(missing).map_err(|e| e.to_string());
    assert!(err.is_err_and(|e| e.starts_with("cannot read '/no/such/queue.jsonl': ")));
    Ok(())
}

#[test]
fn blind_order_is_stable_varied_and_per_annotator() {
    let ids: Vec<String> = (0..200).map(|i| format!("item-{i}")).collect();
    let ann: Vec<bool> = ids.iter().map(|id| blind_order(id, "ann")).collect();
    let again: Vec<bool> = ids.iter().map(|id| blind_order(id, "ann")).collect();
    assert_eq!(ann, again);
    let swapped = ann.iter().filter(|&&b| b).count();
    // Binomial(200, 1/2): 60..140 is more than 5 standard deviations wide.
    assert!((60..140).contains(&swapped), "{swapped}");
    let other: Vec<bool> = ids.iter().map(|id| blind_order(id, "bob")).collect();
    assert_ne!(ann, other);
}

#[test]
fn a_pick_becomes_a_pair_in_queue_order_and_a_score_a_whole_rating() {
    let mut pick = item("p", &["A", "B"]);
    pick.candidates[1].provenance = Some(provenance("P"));
    pick.session = Some("s1".into());
    let rec = answer_record(&pick, "ann", &Answer::Pick(Verdict::Cand2), AT);
    let Some(PreferenceRecord::Pair(pair)) = rec else {
        panic!("a pick gives a pair: {rec:?}")
    };
    assert_eq!((pair.cand_1.as_str(), pair.cand_2.as_str()), ("A", "B"));
    assert_eq!(pair.winner_loser(), Some(("B", "A")));
    assert_eq!(pair.cand_1_provenance, None);
    assert_eq!(pair.cand_2_provenance, Some(provenance("P")));
    assert_eq!(pair.session.as_deref(), Some("s1"));
    assert!(!pair.implicit && pair.annotator == "ann" && pair.created_at == AT);
    assert!(pair.validate().is_ok());

    let rate = item("r", &["Only."]);
    let rec = answer_record(&rate, "ann", &Answer::Rate(RatingScore::Stars(4)), AT);
    let Some(PreferenceRecord::Rating(rating)) = rec else {
        panic!("a score gives a rating: {rec:?}")
    };
    assert_eq!(rating.layer, RatedLayer::Whole);
    assert_eq!(
        (rating.reply.as_str(), rating.score),
        ("Only.", RatingScore::Stars(4))
    );
    assert!(rating.validate().is_ok());

    // Skips and answers that do not fit the item give nothing.
    assert_eq!(answer_record(&pick, "ann", &Answer::Skip, AT), None);
    let thumbs = Answer::Rate(RatingScore::ThumbsUp);
    assert_eq!(answer_record(&pick, "ann", &thumbs, AT), None);
    let cand1 = Answer::Pick(Verdict::Cand1);
    assert_eq!(answer_record(&rate, "ann", &cand1, AT), None);
    assert_eq!(answer_record(&item("g", &[]), "ann", &cand1, AT), None);
}

#[test]
fn answer_ids_are_stable_per_item_annotator_and_context() {
    let a = item("1", &["A", "B"]);
    let first = answer_record(&a, "ann", &Answer::Pick(Verdict::Cand1), AT);
    let later = "2025-04-01T00:00:00Z";
    let again = answer_record(&a, "ann", &Answer::Pick(Verdict::Tie), later);
    let id = |r: Option<PreferenceRecord>| r.map(|r| r.id().to_string());
    assert_eq!(id(first), Some(answer_id(&a, "ann")));
    assert_eq!(id(again), Some(answer_id(&a, "ann")));
    assert!(answer_id(&a, "ann").starts_with("queue-"));
    assert_ne!(answer_id(&a, "ann"), answer_id(&a, "bob"));
    // Item "1" of another queue, over another context, is another item.
    let mut other = a.clone();
    other.context.pop();
    assert_ne!(answer_id(&a, "ann"), answer_id(&other, "ann"));
}

fn ids(run: &AnnotationRun) -> Option<&str> {
    run.current().map(|i| i.id.as_str())
}

#[test]
fn a_run_answers_in_order_and_cycles_through_skips() {
    let items = vec![
        item("a", &["A1", "A2"]),
        item("b", &["B"]),
        item("c", &["C1", "C2"]),
    ];
    let mut run = AnnotationRun::new(items, "ann", &[]);
    assert_eq!((ids(&run), run.progress()), (Some("a"), (0, 3)));
    assert!(run.skip());
    assert_eq!(ids(&run), Some("b"));
    // A pick does not fit a rate-item: nothing changes.
    assert_eq!(run.answer_at(Answer::Pick(Verdict::Cand1), AT), None);
    assert_eq!(ids(&run), Some("b"));
    let rec = run.answer_at(Answer::Rate(RatingScore::ThumbsUp), AT);
    assert!(matches!(rec, Some(PreferenceRecord::Rating(_))));
    assert_eq!(run.answer_at(Answer::Skip, AT), None);
    // Only skipped items remain: back to them, oldest skip first.
    assert_eq!((ids(&run), run.progress()), (Some("a"), (1, 3)));
    assert!(run.skip());
    assert_eq!(ids(&run), Some("c"));
    assert!(run.skip());
    assert_eq!(ids(&run), Some("a"));
    assert!(run.answer_at(Answer::Pick(Verdict::Cand2), AT).is_some());
    assert!(!run.is_finished());
    assert!(run.answer_at(Answer::Pick(Verdict::Tie), AT).is_some());
    assert!(run.is_finished());
    assert_eq!((ids(&run), run.progress()), (None, (3, 3)));
    assert!(!run.skip());
    assert_eq!(run.answer_at(Answer::Pick(Verdict::Tie), AT), None);
    assert!(run.recorded("a").is_some_and(|r| r.annotator() == "ann"));
}

#[test]
fn undo_reverts_answers_and_skips_last_first() {
    let items = vec![item("a", &["A1", "A2"]), item("b", &["B"])];
    let mut run = AnnotationRun::new(items.clone(), "ann", &[]);
    assert!(run.skip());
    let rec = run.answer_at(Answer::Rate(RatingScore::ThumbsDown), AT);
    assert_eq!(ids(&run), Some("a"));

    let undone = run.undo();
    let expected = UndoAction::Retract {
        item_id: "b".into(),
        record_id: answer_id(&items[1], "ann"),
    };
    assert_eq!(undone, Some(expected));
    assert_eq!(
        rec.map(|r| r.id().to_string()).as_deref(),
        undone.as_ref().and_then(UndoAction::record_id)
    );
    assert_eq!((ids(&run), run.progress()), (Some("b"), (0, 2)));
    assert!(run.recorded("b").is_none());

    let undone = run.undo();
    assert_eq!(
        undone,
        Some(UndoAction::Unskip {
            item_id: "a".into()
        })
    );
    assert_eq!(undone.as_ref().map(UndoAction::item_id), Some("a"));
    assert_eq!(ids(&run), Some("a"));
    assert_eq!(run.undo(), None);

    // Undoing a re-skip restores the first skip's place in the cycle.
    assert!(run.skip() && run.skip()); // a, then b
    assert_eq!(ids(&run), Some("a"));
    assert!(run.skip()); // a again: now after b
    assert_eq!(ids(&run), Some("b"));
    assert!(run.undo().is_some());
    assert_eq!(ids(&run), Some("a"));
}

#[test]
fn a_run_resumes_from_the_log_with_the_newest_answer() {
    let items = vec![
        item("a", &["A1", "A2"]),
        item("b", &["B"]),
        item("c", &["C"]),
    ];
    let old = answer_record(&items[0], "ann", &Answer::Pick(Verdict::Cand1), AT);
    let newer_at = "2025-03-02T10:00:00Z";
    let newer = answer_record(&items[0], "ann", &Answer::Pick(Verdict::Cand2), newer_at);
    let bobs = answer_record(&items[1], "bob", &Answer::Rate(RatingScore::ThumbsUp), AT);
    // An answer by "ann" under bob's id is not ann's answer.
    let mut forged = bobs.clone();
    if let Some(PreferenceRecord::Rating(r)) = &mut forged {
        r.annotator = "ann".into();
    }
    let already: Vec<PreferenceRecord> = [newer.clone(), old, bobs, forged]
        .into_iter()
        .flatten()
        .collect();
    let run = AnnotationRun::new(items, "ann", &already);
    assert_eq!((ids(&run), run.progress()), (Some("b"), (1, 3)));
    assert_eq!(run.recorded("a"), newer.as_ref());
    assert_eq!(run.annotator(), "ann");
    assert_eq!(run.items().len(), 3);
}

#[test]
fn generate_items_take_two_supplied_candidates() {
    let mut run = AnnotationRun::new(vec![item("g", &[]), item("r", &["R"])], "ann", &[]);
    assert_eq!(run.answer_at(Answer::Pick(Verdict::Cand1), AT), None);
    let generated = |t: &str| QueueCandidate {
        provenance: Some(provenance("P")),
        ..cand(t)
    };
    assert_eq!(
        run.supply_candidates(generated("X"), generated("X")),
        Err(SupplyError::IdenticalCandidates { id: "g".into() })
    );
    assert_eq!(
        run.supply_candidates(generated("X"), generated("")),
        Err(SupplyError::EmptyCandidate {
            id: "g".into(),
            number: 2
        })
    );
    assert_eq!(
        run.supply_candidates(generated("X"), generated("Y")),
        Ok(())
    );
    assert_eq!(
        run.supply_candidates(generated("X"), generated("Y")),
        Err(SupplyError::HasCandidates { id: "g".into() })
    );
    let rec = run.answer_at(Answer::Pick(Verdict::Cand1), AT);
    let Some(PreferenceRecord::Pair(pair)) = rec else {
        panic!("{rec:?}")
    };
    assert_eq!(pair.winner_loser(), Some(("X", "Y")));
    assert!(pair.validate().is_ok());
    // The answer's id does not depend on what was generated.
    assert_eq!(pair.id, answer_id(&item("g", &[]), "ann"));
    // Undo keeps the generated pair on screen rather than regenerating.
    assert!(run.undo().is_some());
    assert_eq!(run.current().map(|i| i.candidates.len()), Some(2));
    assert!(
        run.skip()
            && run
                .answer_at(Answer::Rate(RatingScore::ThumbsUp), AT)
                .is_some()
    );
    assert!(run.answer_at(Answer::Pick(Verdict::Tie), AT).is_some());
    assert_eq!(
        run.supply_candidates(cand("X"), cand("Y")),
        Err(SupplyError::NoCurrentItem)
    );
}

#[test]
fn adapter_labels_come_from_labelled_candidates() {
    let with = |label: Option<&str>, adapter: &str| {
        let mut prov = provenance("P");
        prov.adapter_sha256 = Some(adapter.into());
        QueueCandidate {
            text: format!("{label:?}{adapter}"),
            label: label.map(str::to_string),
            provenance: Some(prov),
        }
    };
    let mut a = item("a", &[]);
    a.candidates = vec![with(Some("v1"), "aaa"), with(None, "bbb")];
    let mut b = item("b", &[]);
    b.candidates = vec![with(Some("v1-renamed"), "aaa"), with(Some("v2"), "ccc")];
    let labels = adapter_labels(&[a, b]);
    let expected: BTreeMap<String, String> = [("aaa", "v1"), ("ccc", "v2")]
        .map(|(k, v)| (k.into(), v.into()))
        .into();
    assert_eq!(labels, expected);
}

#[test]
fn remove_record_drops_only_the_last_copy_and_keeps_other_bytes() -> Result<(), PrefsError> {
    let dir = tmp()?;
    let path = dir.path().join("prefs.jsonl");
    let items = [item("a", &["A1", "A2"]), item("b", &["B"])];
    let answer = |i: usize, a: Answer, at: &str| answer_record(&items[i], "ann", &a, at);
    let first = answer(0, Answer::Pick(Verdict::Cand1), AT);
    let rated = answer(1, Answer::Rate(RatingScore::Stars(5)), AT);
    let redo = answer(0, Answer::Pick(Verdict::Tie), "2025-03-03T00:00:00Z");
    let records: Vec<PreferenceRecord> = [first, rated, redo].into_iter().flatten().collect();
    append_to_log(&path, &records)?;
    // Lines a future version might write, and odd spacing, survive as is.
    let mut text = fs::read_to_string(&path).map_err(IoError::at("read", &path))?;
    text.insert_str(0, "{\"kind\":\"note\",\"text\":\"hello\"}\n\n");
    text.push_str("{ \"kind\": \"future\", \"id\": \"x\" }\r\n");
    fs::write(&path, &text).map_err(IoError::at("write", &path))?;

    let id = answer_id(&items[0], "ann");
    assert!(remove_record(&path, &id)?);
    let after = fs::read_to_string(&path).map_err(IoError::at("read", &path))?;
    let removed = format!("{}\n", crate::prefs::to_line(&records[2])?);
    assert_eq!(after, text.replacen(&removed, "", 1));
    // The older answer is still there; removing again takes it.
    assert!(remove_record(&path, &id)?);
    assert!(!remove_record(&path, &id)?);
    assert!(remove_record(&path, "x")?);
    let after = fs::read_to_string(&path).map_err(IoError::at("read", &path))?;
    assert_eq!(
        after,
        format!(
            "{{\"kind\":\"note\",\"text\":\"hello\"}}\n\n{}\n",
            crate::prefs::to_line(&records[1])?
        )
    );
    let missing = dir.path().join("none.jsonl");
    assert!(remove_record(&missing, &id).is_err_and(|e| e.to_string().starts_with("cannot read ")));
    Ok(())
}

#[test]
fn a_sitting_round_trips_through_the_log() -> Result<(), PrefsError> {
    let dir = tmp()?;
    let log = dir.path().join("prefs.jsonl");
    let items = vec![
        item("a", &["A1", "A2"]),
        item("b", &["B"]),
        item("c", &["C1", "C2"]),
    ];
    let mut run = AnnotationRun::new(items.clone(), "ann", &[]);
    for answer in [
        Answer::Pick(Verdict::Cand1),
        Answer::Rate(RatingScore::ThumbsUp),
    ] {
        let rec = run.answer_at(answer, AT).into_iter().collect::<Vec<_>>();
        append_to_log(&log, &rec)?;
    }
    let undone = run.undo();
    if let Some(id) = undone.as_ref().and_then(UndoAction::record_id) {
        assert!(remove_record(&log, id)?);
    }
    // A new sitting picks up where this one ended: at "b".
    let resumed = AnnotationRun::new(items, "ann", &read_log(&log)?.records);
    assert_eq!((ids(&resumed), resumed.progress()), (Some("b"), (1, 3)));
    Ok(())
}
