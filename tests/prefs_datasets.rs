//! The preference exports loaded by the real consumer: Python's `datasets`
//! (installed by scripts/test into target/py-datasets), checking the columns
//! TRL expects for DPO, KTO and SFT, and HER-RM's pair layout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;

use her_core::prefs::{
    Alternative, ContextMessage, Filter, MinHealth, PairMeta, PreferenceRecord, Provenance,
    RatedLayer, Rating, RatingScore, Role, dedup, export_all, implicit_pair_from_edit,
    implicit_pairs_from_swipes, pairs_from_ratings, prompt_sha256,
};

const SYSTEM: &str = "You are Elizabeth Bennet from Pride and Prejudice.\n\n===Elizabeth Bennet's Profile===\nWitty, proud of her judgement.\n\n===Requirements===\nFirst a <system_thinking> block, then the reply.";

fn context(turn: &str) -> Vec<ContextMessage> {
    vec![
        ContextMessage::new(Role::System, SYSTEM),
        ContextMessage::new(
            Role::User,
            "===Conversation Start===\n\nDarcy: Miss Bennet.",
        ),
        ContextMessage::new(
            Role::Assistant,
            "Elizabeth: <role_thinking>Him again.</role_thinking>Mr. Darcy.",
        ),
        ContextMessage::new(Role::User, format!("Darcy: {turn}")),
    ]
}

fn provenance(prompt: &str, seed: u32) -> Provenance {
    Provenance {
        prompt: prompt.to_string(),
        prompt_sha256: prompt_sha256(prompt),
        model: "HER-32B-Q4_K_M".into(),
        model_fingerprint: "demo".into(),
        adapter_sha256: None,
        adapter_name: None,
        prompt_tokens_sha256: None,
        sampling: serde_json::json!({"temperature": 0.7, "top_p": 0.9, "max_tokens": 1024}),
        seed: Some(seed),
    }
}

fn reply(plan: &str, thought: &str, action: &str, speech: &str) -> String {
    format!(
        "<system_thinking>{plan}</system_thinking>Elizabeth: <role_thinking>{thought}</role_thinking><role_action>{action}</role_action>{speech}"
    )
}

/// Runs the whole pipeline (swipes, an edit, ratings → pairs, dedup, filter)
/// and writes the four datasets into `out`.
fn write_datasets(out: &Path) -> Result<(), Box<dyn Error>> {
    std::fs::create_dir_all(out)?;
    let mut records: Vec<PreferenceRecord> = Vec::new();

    // Swipes: three siblings, the user kept the second.
    let prompt = "<|im_start|>system\n…<|im_end|>\n<|im_start|>assistant\n<system_thinking>";
    let meta = PairMeta {
        annotator: "alice".into(),
        character: "Elizabeth Bennet".into(),
        session: Some("s-001".into()),
        context: context("Will you dance?"),
        created_at: "2025-03-01T10:00:00Z".into(),
    };
    let siblings = [
        reply("She should refuse coldly.", "Never.", "turns away", "No."),
        reply(
            "She refuses with wit, teasing his pride.",
            "Let him squirm.",
            "raises an eyebrow",
            "I had rather not, sir; you despise a reel.",
        ),
        reply("She accepts.", "Why not?", "curtsies", "Of course."),
    ];
    let alts: Vec<Alternative> = siblings
        .iter()
        .enumerate()
        .map(|(i, t)| Alternative::new(t.clone(), Some(provenance(prompt, i as u32))))
        .collect();
    let discarded = [alts[0].clone(), alts[2].clone()];
    for p in implicit_pairs_from_swipes(&alts[1], &discarded, &meta) {
        records.push(PreferenceRecord::Pair(p));
    }

    // An edit of a reply to the next turn.
    let meta2 = PairMeta {
        context: context("Why not?"),
        created_at: "2025-03-01T10:05:00Z".into(),
        ..meta.clone()
    };
    let original = Alternative::new(
        reply("She answers.", "Hm.", "shrugs", "Because."),
        Some(provenance("p2", 1)),
    );
    let edited = reply(
        "She answers archly.",
        "Hm.",
        "smiles",
        "Because I do not care to, Mr. Darcy.",
    );
    records.extend(implicit_pair_from_edit(&original, &edited, &meta2).map(PreferenceRecord::Pair));

    // Explicit ratings of two replies to one prompt; they also give a pair.
    let rate = |id: &str, text: String, score, at: &str| Rating {
        id: id.into(),
        annotator: "bob".into(),
        implicit: false,
        character: "Elizabeth Bennet".into(),
        session: Some("s-002".into()),
        context: context("Do you play?"),
        reply: text,
        score,
        layer: RatedLayer::Whole,
        tags: vec![
            "Character Development".into(),
            "Dialogue & Interaction".into(),
        ],
        rationale: None,
        provenance: Some(provenance("p3", 9)),
        created_at: at.into(),
    };
    let ratings = [
        rate(
            "r1",
            reply(
                "Modest but sharp.",
                "He is testing me.",
                "glances at the piano",
                "A little, and very ill.",
            ),
            RatingScore::Stars(5),
            "2025-03-02T09:00:00Z",
        ),
        rate(
            "r2",
            reply("Boast.", "Show off.", "stands", "Better than anyone here."),
            RatingScore::Stars(2),
            "2025-03-02T09:01:00Z",
        ),
        rate(
            "r3",
            reply("Neutral.", "Hm.", "nods", "Sometimes."),
            RatingScore::Stars(3),
            "2025-03-02T09:02:00Z",
        ),
    ];
    records.extend(
        pairs_from_ratings(&ratings)
            .into_iter()
            .map(PreferenceRecord::Pair),
    );
    records.extend(ratings.into_iter().map(PreferenceRecord::Rating));

    let records = dedup(records);
    let filter = Filter {
        min_format_health: Some(MinHealth::NoErrors),
        ..Filter::default()
    };
    let records = filter.apply(records)?;
    for (format, report) in export_all(&records, out)? {
        println!(
            "{:<7} {} written, {} skipped {:?}",
            format.file_name(),
            report.written,
            report.skipped.len(),
            report.skip_counts()
        );
    }
    Ok(())
}

/// The Python with `datasets`: $DATASETS_PYTHON, or the venv scripts/test makes.
fn datasets_python() -> PathBuf {
    std::env::var_os("DATASETS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/py-datasets/bin/python")
        })
}

#[test]
fn every_export_loads_in_python_datasets_with_trl_columns() {
    let dir = tempfile::tempdir().unwrap();
    write_datasets(dir.path()).unwrap();
    let python = datasets_python();
    assert!(
        python.is_file(),
        "'{}' is missing: run the README test command (scripts/test), which installs Python's datasets there",
        python.display()
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/check_datasets.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(dir.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("all 4 files match"), "{text}");
}
