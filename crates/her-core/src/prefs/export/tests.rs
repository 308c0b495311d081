use super::*;
use crate::fsutil::IoError;
use crate::prefs::record::RatingScore;
use crate::prefs::test_support::{pair, rating};

const A: &str = "<system_thinking>Tease him.</system_thinking>Elizabeth: <role_thinking>Proud man.</role_thinking>Because I choose not.";
const B: &str = "<system_thinking>Be rude.</system_thinking>Elizabeth: Go away.";

fn small_context() -> Vec<ContextMessage> {
    vec![
        ContextMessage::new(Role::System, "You are Elizabeth."),
        ContextMessage::new(Role::User, "Darcy: Dance?"),
        ContextMessage::new(
            Role::Assistant,
            "<system_thinking>cool</system_thinking>Elizabeth: No.",
        ),
        ContextMessage::new(Role::User, "Darcy: Why?"),
    ]
}

fn small_pair(id: &str, verdict: Verdict) -> PreferenceRecord {
    let mut p = pair(id, B, A, verdict);
    p.context = small_context();
    PreferenceRecord::Pair(p)
}

fn small_rating(id: &str, reply: &str, score: RatingScore) -> PreferenceRecord {
    let mut r = rating(id, reply, score);
    r.context = small_context();
    PreferenceRecord::Rating(r)
}

fn rendered(records: &[PreferenceRecord], format: Format) -> (String, ExportReport) {
    match render(records, format) {
        Ok(out) => out,
        Err(e) => panic!("render {format}: {e}"),
    }
}

const PROMPT: &str = r#"[{"role":"system","content":"You are Elizabeth."},{"role":"user","content":"Darcy: Dance?"},{"role":"assistant","content":"Elizabeth: No."},{"role":"user","content":"Darcy: Why?"}]"#;
const A_MSG: &str = r#"{"role":"assistant","content":"<system_thinking>Tease him.</system_thinking>Elizabeth: <role_thinking>Proud man.</role_thinking>Because I choose not."}"#;
const B_MSG: &str = r#"{"role":"assistant","content":"<system_thinking>Be rude.</system_thinking>Elizabeth: Go away."}"#;

#[test]
fn dpo_golden() {
    let records = [
        small_pair("p1", Verdict::Cand2),
        small_pair("p2", Verdict::Tie),
        small_pair("p3", Verdict::BothBad),
        small_rating("r1", A, RatingScore::ThumbsUp),
    ];
    let (text, report) = rendered(&records, Format::Dpo);
    let golden = format!("{{\"prompt\":{PROMPT},\"chosen\":[{A_MSG}],\"rejected\":[{B_MSG}]}}\n");
    assert_eq!(text, golden);
    assert_eq!(
        text,
        r#"{"prompt":[{"role":"system","content":"You are Elizabeth."},{"role":"user","content":"Darcy: Dance?"},{"role":"assistant","content":"Elizabeth: No."},{"role":"user","content":"Darcy: Why?"}],"chosen":[{"role":"assistant","content":"<system_thinking>Tease him.</system_thinking>Elizabeth: <role_thinking>Proud man.</role_thinking>Because I choose not."}],"rejected":[{"role":"assistant","content":"<system_thinking>Be rude.</system_thinking>Elizabeth: Go away."}]}
"#
    );
    assert_eq!(report.written, 1);
    let ids: Vec<&str> = report.skipped.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["p2", "p3", "r1"]);
    assert_eq!(report.skipped[0].1, "tie: no chosen reply");
    assert_eq!(report.skipped[1].1, "both bad: no chosen reply");
}

#[test]
fn kto_golden() {
    let records = [
        small_rating("r1", A, RatingScore::Stars(4)),
        small_rating("r2", B, RatingScore::ThumbsDown),
        small_rating("r3", B, RatingScore::Stars(3)),
        small_pair("p1", Verdict::Cand1),
        small_pair("p2", Verdict::Tie),
    ];
    let (text, report) = rendered(&records, Format::Kto);
    let line = |msg: &str, label: bool| {
        format!("{{\"prompt\":{PROMPT},\"completion\":[{msg}],\"label\":{label}}}\n")
    };
    // p1 says B ≻ A: B true (new), A false (new).
    let golden = [
        line(A_MSG, true),
        line(B_MSG, false),
        line(B_MSG, true),
        line(A_MSG, false),
    ]
    .concat();
    assert_eq!(text, golden);
    assert_eq!(
        text.lines().next(),
        Some(
            r#"{"prompt":[{"role":"system","content":"You are Elizabeth."},{"role":"user","content":"Darcy: Dance?"},{"role":"assistant","content":"Elizabeth: No."},{"role":"user","content":"Darcy: Why?"}],"completion":[{"role":"assistant","content":"<system_thinking>Tease him.</system_thinking>Elizabeth: <role_thinking>Proud man.</role_thinking>Because I choose not."}],"label":true}"#
        )
    );
    assert_eq!(report.written, 4);
    assert_eq!(
        report.skipped,
        [
            (
                "r3".to_string(),
                "neutral: 3 stars is neither good nor bad".to_string()
            ),
            (
                "p2".to_string(),
                "tie: says neither reply is good or bad".to_string()
            ),
        ]
    );
}

#[test]
fn kto_both_bad_labels_both_false_and_partial_praise_is_skipped() {
    let mut plan_only = rating("r", A, RatingScore::ThumbsUp);
    plan_only.layer = RatedLayer::Plan;
    let mut plan_bad = plan_only.clone();
    plan_bad.id = "r2".into();
    plan_bad.score = RatingScore::ThumbsDown;
    let records = [
        small_pair("p", Verdict::BothBad),
        PreferenceRecord::Rating(plan_only),
        PreferenceRecord::Rating(plan_bad),
    ];
    let (text, report) = rendered(&records, Format::Kto);
    assert_eq!(text.matches("\"label\":false").count(), 3);
    assert_eq!(report.written, 3);
    assert_eq!(report.skipped.len(), 1);
    assert!(report.skipped[0].1.starts_with("partial: "));
}

#[test]
fn sft_golden_strips_earlier_plans_and_keeps_the_last() {
    let records = [
        small_pair("p1", Verdict::Cand2),
        small_rating("r1", A, RatingScore::ThumbsUp), // same sample as p1
        small_rating("r2", B, RatingScore::ThumbsDown),
    ];
    let (text, report) = rendered(&records, Format::Sft);
    assert_eq!(
        text,
        r#"{"messages":[{"role":"system","content":"You are Elizabeth."},{"role":"user","content":"Darcy: Dance?"},{"role":"assistant","content":"Elizabeth: No."},{"role":"user","content":"Darcy: Why?"},{"role":"assistant","content":"<system_thinking>Tease him.</system_thinking>Elizabeth: <role_thinking>Proud man.</role_thinking>Because I choose not."}]}
"#
    );
    assert_eq!(text.matches("<system_thinking>").count(), 1);
    assert_eq!(report.written, 1);
    assert_eq!(
        report.skipped,
        [
            (
                "r1".to_string(),
                "duplicate: same sample as record \"p1\"".to_string()
            ),
            (
                "r2".to_string(),
                "negative: a bad reply is no SFT target".to_string()
            ),
        ]
    );
}

#[test]
fn her_rm_golden_removes_plans_and_keeps_role_thinking() {
    let records = [
        small_pair("p1", Verdict::Cand2),
        small_pair("p2", Verdict::Tie),
        small_pair("p3", Verdict::BothBad),
    ];
    let (text, report) = rendered(&records, Format::HerRm);
    let ctx = r#""context":"System: You are Elizabeth.\n\nUser: Darcy: Dance?\n\nAssistant: Elizabeth: No.\n\nUser: Darcy: Why?""#;
    let cands = r#""cand_1":"Elizabeth: Go away.","cand_2":"Elizabeth: <role_thinking>Proud man.</role_thinking>Because I choose not.""#;
    assert_eq!(
        text,
        format!(
            "{{{ctx},{cands},\"better_response\":\"cand_2\"}}\n{{{ctx},{cands},\"better_response\":\"tie\"}}\n"
        )
    );
    assert_eq!(
        text.lines().next(),
        Some(
            r#"{"context":"System: You are Elizabeth.\n\nUser: Darcy: Dance?\n\nAssistant: Elizabeth: No.\n\nUser: Darcy: Why?","cand_1":"Elizabeth: Go away.","cand_2":"Elizabeth: <role_thinking>Proud man.</role_thinking>Because I choose not.","better_response":"cand_2"}"#
        )
    );
    assert!(!text.contains("system_thinking"));
    assert_eq!(
        report.skipped,
        [(
            "p3".to_string(),
            "both bad: HER-RM has no such label".to_string()
        )]
    );
}

#[test]
fn her_rm_skips_candidates_that_differ_only_in_plans() {
    let mut p = pair(
        "p",
        "<system_thinking>x</system_thinking>Hi.",
        "<system_thinking>y</system_thinking>Hi.",
        Verdict::Cand1,
    );
    p.context = small_context();
    let (text, report) = rendered(&[PreferenceRecord::Pair(p)], Format::HerRm);
    assert!(text.is_empty());
    assert!(report.skipped[0].1.starts_with("identical: "));
}

#[test]
fn invalid_records_are_skipped_with_the_reason() {
    let mut r = rating("bad", A, RatingScore::Stars(9));
    r.context = small_context();
    let (text, report) = rendered(&[PreferenceRecord::Rating(r)], Format::Kto);
    assert!(text.is_empty());
    assert_eq!(
        report.skipped,
        [(
            "bad".to_string(),
            "invalid: rating \"bad\": 9 stars is outside 1..=5".to_string()
        )]
    );
}

#[test]
fn export_all_writes_four_files_atomically() -> Result<(), PrefsError> {
    let dir = tempfile::tempdir().map_err(IoError::at("create", "a temp folder"))?;
    let records = [
        small_pair("p1", Verdict::Cand1),
        small_rating("r1", A, RatingScore::ThumbsUp),
    ];
    let reports = export_all(&records, dir.path())?;
    assert_eq!(reports.len(), 4);
    for (format, report) in &reports {
        let text = std::fs::read_to_string(dir.path().join(format.file_name())).unwrap_or_default();
        assert_eq!(text.lines().count(), report.written, "{format}");
        assert!(report.written > 0, "{format}");
    }
    // No temp files left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    Ok(())
}

#[test]
fn format_names_parse() {
    for f in Format::ALL {
        assert_eq!(f.name().parse::<Format>().ok(), Some(f));
    }
    assert_eq!("HER-RM".parse::<Format>().ok(), Some(Format::HerRm));
    assert!("orpo".parse::<Format>().is_err());
}
