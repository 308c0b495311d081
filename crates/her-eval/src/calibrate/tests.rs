//! Calibration against scripted judges: one that finds no flaws fails every
//! dimension, one that sees exactly the planted turns passes; the figures,
//! the stored file and the fingerprint.

use std::path::Path;

use super::*;
use crate::judge::transcript_text;
use crate::testing::{JudgeFn, ScriptedBackend, no_flaws_judge};
use her_core::format::strip_speaker_prefix;

fn identity(sha: &str) -> JudgeIdentity {
    let sampling = crate::judge_sampling(&her_core::generation::SamplingConfig::default(), true);
    JudgeIdentity::new(
        FileId {
            path: "judges/j.gguf".into(),
            sha256: sha.repeat(64 / sha.len()),
        },
        &sampling,
        true,
    )
}

fn run(judge: JudgeFn) -> Calibration {
    let backend = ScriptedBackend {
        judge: Some(judge),
        ..ScriptedBackend::default()
    };
    let set = set::built_in().unwrap();
    let sampling = crate::judge_sampling(&her_core::generation::SamplingConfig::default(), true);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut seen = 0;
    let calibration = rt
        .block_on(calibrate(
            &backend,
            &set,
            identity("a"),
            &sampling,
            &mut |_| seen += 1,
        ))
        .unwrap();
    // Each clean transcript judged once, each variant once.
    let variants: usize = set.scenes.iter().map(|s| s.variants.len()).sum();
    assert_eq!(seen, variants);
    assert_eq!(backend.judge_prompts().len(), set.scenes.len() + variants);
    calibration
}

/// What the judge shows of a turn, as the judge prompt writes it.
fn shown(speaker: &str, raw: &str) -> String {
    let text = transcript_text(raw);
    strip_speaker_prefix(&text, speaker).trim().to_string()
}

/// A judge that sees exactly the planted turns: one flaw of severity 3 in
/// the planted flaw's dimension, nothing in a clean transcript.
fn oracle() -> JudgeFn {
    let set = set::built_in().unwrap();
    let mut planted: Vec<(String, Dimension)> = Vec::new();
    for scene in &set.scenes {
        for variant in &scene.variants {
            for &turn in &variant.turns {
                let (speaker, text) = &variant.lines[turn];
                planted.push((shown(speaker, text), variant.kind.dimension()));
            }
        }
    }
    Box::new(move |prompt: &str| {
        let mut lists: [Vec<String>; 4] = Default::default();
        for (line, dimension) in &planted {
            if prompt.contains(line.as_str()) && lists[dimension.index()].is_empty() {
                lists[dimension.index()]
                    .push("{\"flaw\": \"planted\", \"severity\": 3}".to_string());
            }
        }
        let [a, b, c, d] = lists.map(|l| format!("[{}]", l.join(", ")));
        format!(
            "{{\"storyline_consistency\": {a}, \"anthropomorphism\": {b}, \
             \"character_fidelity\": {c}, \"storyline_quality\": {d}}}"
        )
    })
}

#[test]
fn a_judge_that_finds_no_flaws_fails_everywhere() {
    let calibration = run(no_flaws_judge());
    for d in &calibration.dimensions {
        assert_eq!((d.flawed_lower, d.accuracy), (0, 0.0), "{d:?}");
        assert!(d.pairs >= MIN_PAIRS);
        assert_eq!(d.low, 0.0);
        assert!(d.high > 0.1 && d.high < 0.5, "{d:?}");
    }
    assert!(calibration.pairs.iter().all(|p| !p.flawed_lower));
    let status = calibration.status([0.75; 4], None);
    assert_eq!(status.state, CalibrationState::Failed);
    let problem = status.problem();
    for d in Dimension::ALL {
        assert!(problem.contains(d.key()), "{problem}");
    }
    assert!(problem.contains("0/"), "{problem}");
}

#[test]
fn a_judge_that_sees_the_planted_flaws_passes() {
    let calibration = run(oracle());
    for d in &calibration.dimensions {
        assert_eq!(d.flawed_lower, d.pairs, "{d:?}");
        assert_eq!(d.accuracy, 1.0);
        assert_eq!(d.high, 1.0);
    }
    assert_eq!(calibration.clean_severity_mean, [0.0; 4]);
    let status = calibration.status([0.75; 4], None);
    assert!(status.passed(), "{}", status.report_lines());
    assert!(status.problem().is_empty());
    // A threshold above what any judge can reach fails it again.
    let strict = calibration.status([1.1; 4], None);
    assert_eq!(strict.state, CalibrationState::Failed);
}

#[test]
fn wilson_by_hand() {
    let close = |a: (f64, f64), b: (f64, f64)| (a.0 - b.0).abs() < 1e-4 && (a.1 - b.1).abs() < 1e-4;
    // 8/8: centre (1 + z²/16)/(1 + z²/8) = 0.8378, half-width 0.1622.
    assert!(
        close(wilson_interval(8, 8), (0.6756, 1.0)),
        "{:?}",
        wilson_interval(8, 8)
    );
    assert!(
        close(wilson_interval(0, 8), (0.0, 0.3244)),
        "{:?}",
        wilson_interval(0, 8)
    );
    assert!(
        close(wilson_interval(4, 8), (0.2152, 0.7848)),
        "{:?}",
        wilson_interval(4, 8)
    );
    assert_eq!(wilson_interval(0, 0), (0.0, 1.0));
}

#[test]
fn a_tie_is_not_a_flaw_found() {
    let set = set::built_in().unwrap();
    let scene = &set.scenes[0];
    let variant = &scene.variants[0];
    let i = variant.kind.dimension().index();
    let answer = |severity: u8| {
        let mut a = JudgeAnswer::default();
        let flaw = crate::judge::Flaw {
            flaw: "x".into(),
            severity,
        };
        match i {
            0 => a.storyline_consistency.push(flaw),
            1 => a.anthropomorphism.push(flaw),
            2 => a.character_fidelity.push(flaw),
            _ => a.storyline_quality.push(flaw),
        }
        a
    };
    assert!(!score_pair(scene, variant, &answer(2), &answer(2)).flawed_lower);
    assert!(!score_pair(scene, variant, &answer(3), &answer(2)).flawed_lower);
    // One severity point within the allowance still counts: scores compare
    // before clamping.
    let p = score_pair(scene, variant, &JudgeAnswer::default(), &answer(1));
    assert!(p.flawed_lower && p.clean_score > 100.0, "{p:?}");
}

#[test]
fn stored_by_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let calibration = run(no_flaws_judge());
    let fp = calibration.fingerprint.clone();
    assert_eq!(read_calibration(dir.path(), &fp).unwrap(), None);
    let uncalibrated = CalibrationStatus::lookup(dir.path(), &fp, [0.75; 4]).unwrap();
    assert_eq!(uncalibrated.state, CalibrationState::Uncalibrated);
    let path = write_calibration(dir.path(), &calibration).unwrap();
    assert!(path.starts_with(dir.path().join(CALIBRATION_DIR)));
    assert_eq!(
        read_calibration(dir.path(), &fp).unwrap(),
        Some(calibration)
    );
    let status = CalibrationStatus::lookup(dir.path(), &fp, [0.75; 4]).unwrap();
    assert_eq!(status.state, CalibrationState::Failed);
    assert_eq!(status.file.as_deref(), Some(path.as_path()));
    // Another judge sharing the file name's prefix is not this one.
    let other = format!("{}{}", &fp[..16], "0".repeat(48));
    assert_eq!(read_calibration(dir.path(), &other).unwrap(), None);
    // A damaged file names itself and the fix.
    std::fs::write(&path, "{").unwrap();
    let err = read_calibration(dir.path(), &fp).unwrap_err().to_string();
    assert!(
        err.contains(&path.display().to_string()) && err.contains("calibrate"),
        "{err}"
    );
}

#[test]
fn the_fingerprint_follows_model_prompt_and_settings() {
    let a = identity("a");
    assert_eq!(a.fingerprint(), identity("a").fingerprint());
    assert_ne!(a.fingerprint(), identity("b").fingerprint());
    let mut moved = a.clone();
    moved.model.path = Path::new("elsewhere/j.gguf").to_path_buf();
    assert_eq!(moved.fingerprint(), a.fingerprint());
    let mut prompt = a.clone();
    prompt.prompt_sha256 = "0".repeat(64);
    assert_ne!(prompt.fingerprint(), a.fingerprint());
    let mut longer = a.clone();
    longer.max_new_tokens += 1;
    assert_ne!(longer.fingerprint(), a.fingerprint());
    let mut free = a;
    free.grammar = false;
    assert_ne!(free.fingerprint(), identity("a").fingerprint());
}
