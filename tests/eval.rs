//! `her eval` end to end on the tiny random-weight Qwen3 (actor and judge):
//! every scene is played, saved as a session, judged and checked by the
//! rules, every verdict parses thanks to the grammar, and the report has all
//! four dimensions for the judge and for the rules. Planted flaws are found
//! by the rules beside the tiny judge; `her eval calibrate` runs end to end,
//! and the gate refuses on the word of an uncalibrated or failed judge. Plus
//! the gate on synthetic results, and bad input giving one clear error.
//! Only structure and determinism are asserted, never what a random model writes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use her_core::session::{list_sessions, load_session};
use her_engine::{FinishReason, Provenance};
use her_eval::calibrate::CALIBRATION_DIR;
use her_eval::judge::{Flaw, JudgeAnswer};
use her_eval::promote::{Promotion, promote, promoted_adapter, promoted_file};
use her_eval::results::{SystemResult, UnitResult};
use her_eval::rules::{Rule, RuleOptions};
use her_eval::run::{judge_transcript, rule_flaws};
use her_eval::simulate::{SimTranscript, SimTurn};
use her_eval::{
    CalibrationState, CalibrationStatus, Dimension, decide, judge_sampling, load_scenes,
    read_results,
};

const TEA: &str = "title = \"Tea at the Vicarage\"\nbook = \"A Small Book\"\n\
scenario = \"Ann pours tea; Bob has bad news.\"\nenvironment = true\n\
[[member]]\nname = \"Ann\"\nprofile = \"A kind vicar's wife.\"\n\
[[member]]\nname = \"Bob\"\nprofile = \"A gruff farmer.\"\n";

const COSER: &str = r#"{"book": "A Small Book", "topic": "The market",
  "scenario": "Cy sells apples to Di.",
  "character_profiles": {"Cy": "A loud seller.", "Di": "A careful buyer."},
  "key_characters": [{"name": "Cy", "thought": "Sell them all."}, {"name": "Di", "thought": "Pay little."}],
  "speaking_characters_w_env": ["Cy", "Di"]}"#;

/// A studio folder with one scene file and one CoSER file next to it.
fn studio() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let scenes = dir.path().join("characters/scenes");
    std::fs::create_dir_all(&scenes).unwrap();
    std::fs::write(scenes.join("tea.toml"), TEA).unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        "[chat]\ncharacter = \"Ann\"\n",
    )
    .unwrap();
    let coser = dir.path().join("market.json");
    std::fs::write(&coser, COSER).unwrap();
    (dir, coser)
}

fn her(studio: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_her"));
    cmd.env("HOME", studio)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .arg("--studio")
        .arg(studio)
        .arg("--set")
        .arg(format!("log.file={}/her.log", studio.display()))
        .arg("--set")
        .arg(format!("model.path={}", common::tiny().model.display()))
        .arg("--set")
        .arg("model.threads=2")
        .args(args)
        .stdin(Stdio::null());
    for (name, _) in std::env::vars() {
        if name.starts_with("HER_") {
            cmd.env_remove(name);
        }
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A short evaluation: two rounds, one seed, eight tokens a turn.
const SHORT: [&str; 6] = ["--rounds", "2", "--seeds", "1", "--max-new-tokens", "8"];

/// A judge file of its own in the studio (the tiny model's bytes): the judge
/// then runs in a second engine.
fn judge_file(studio: &Path, name: &str) -> PathBuf {
    let judge = studio.join(name);
    std::fs::copy(&common::tiny().model, &judge).unwrap();
    judge
}

#[test]
fn end_to_end_on_the_tiny_model() {
    let t = common::tiny();
    let (dir, coser) = studio();
    let studio = dir.path();
    let judge = judge_file(studio, "judge.gguf");
    let lora = t.lora.display().to_string();
    let coser = coser.display().to_string();
    let judge = judge.display().to_string();
    let run = |name: &str, scenes: &[&str], seeds: &str| {
        let mut args = vec!["eval"];
        args.extend_from_slice(scenes);
        args.extend_from_slice(&[
            "--adapter",
            &lora,
            "--judge-model",
            &judge,
            "--rounds",
            "3",
            "--seeds",
            seeds,
            "--max-new-tokens",
            "12",
            "--next-speaker",
            "model",
            "--resamples",
            "200",
            "--name",
            name,
        ]);
        her(studio, &args)
    };
    let out = run("first", &["tea", &coser], "2");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for d in Dimension::ALL {
        assert!(stdout.contains(d.title()), "{d:?} missing:\n{stdout}");
    }
    assert!(stdout.contains("Overall") && stdout.contains("not comparable"));

    let eval_dir = studio.join("evals/first");
    let results = read_results(&eval_dir).unwrap();
    assert_eq!(results.scenes.len(), 2);
    assert_eq!(results.settings.seeds, vec![42, 43]);
    assert_eq!(results.judge.sha256, results.model.sha256);
    assert_eq!(results.model.sha256.len(), 64);
    let labels: Vec<&str> = results.systems.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(labels.len(), 2);
    assert_eq!(labels[0], "base");
    let adapter = results.systems[1].adapter.as_ref().unwrap();
    assert_eq!(adapter.sha256.len(), 64);
    // Nobody calibrated the judge: the report says so.
    assert!(
        stdout.contains("judge calibration: uncalibrated"),
        "{stdout}"
    );
    assert_eq!(
        results.judge_calibration.as_ref().map(|c| c.state),
        Some(CalibrationState::Uncalibrated)
    );
    assert!(stdout.contains("the rules' scores"), "{stdout}");
    for system in &results.systems {
        // Every verdict parsed: a unit per scene and seed.
        assert_eq!(system.units.len(), 4, "{}", system.label);
        assert_eq!(system.summary.len(), 5);
        assert_eq!(system.rule_summary.len(), 5);
        assert!(system.units.iter().all(|u| u.rules.is_some()));
        for (column, d) in system.summary.iter().zip(Dimension::ALL) {
            assert_eq!(column.key, d.key());
        }
        for c in &system.summary {
            assert!(c.low <= c.mean + 1e-9 && c.mean <= c.high + 1e-9, "{c:?}");
            assert!((0.0..=100.0).contains(&c.mean));
        }
        for unit in &system.units {
            assert!(unit.actor_turns <= 3);
            let session = unit.session.as_ref().unwrap();
            let (s, issues) = load_session(session).unwrap();
            assert!(issues.is_empty(), "{issues:?}");
            assert_eq!(s.tree().active_path().len(), 3);
            assert!(s.title().starts_with("eval first · "));
        }
    }
    for f in [
        "results.json",
        "chart.svg",
        "report.txt",
        "scenes/tea.jsonl",
        "scenes/market.jsonl",
    ] {
        assert!(eval_dir.join(f).is_file(), "{f}");
    }
    let svg = std::fs::read_to_string(eval_dir.join("chart.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("Character Fidelity"));
    // The per-scene file keeps the judge's flaws, the rules' and how each
    // turn ended: 2 systems × 2 seeds.
    let lines = std::fs::read_to_string(eval_dir.join("scenes/tea.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 4);
    for line in lines.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(record["rule_flaws"].is_array(), "{record}");
        let turns = record["turns"].as_array().unwrap();
        assert_eq!(turns.len(), 3);
        assert!(turns.iter().all(|t| t["finish_reason"].is_string()));
    }
    // The transcripts are sessions the TUI lists under their scene; the CoSER
    // scene got a scene file so it opens too.
    let sessions = list_sessions(&studio.join("sessions")).unwrap();
    assert_eq!(sessions.len(), 8);
    assert!(sessions.iter().all(|s| s.problem.is_none()));
    let titles: Vec<_> = sessions.iter().filter_map(|s| s.scene.clone()).collect();
    assert_eq!(
        titles
            .iter()
            .filter(|t| *t == "Tea at the Vicarage")
            .count(),
        4
    );
    assert_eq!(titles.iter().filter(|t| *t == "The market").count(), 4);
    assert!(studio.join("characters/scenes/the-market.toml").is_file());

    // The same scene and seed give the same figures (checked on one of them).
    let again = run("second", &["tea"], "1");
    assert!(again.status.success(), "{}", text(&again).1);
    let second = read_results(&studio.join("evals/second")).unwrap();
    for (a, b) in results.systems.iter().zip(&second.systems) {
        let figures = |u: &UnitResult| (u.scene.clone(), u.seed, u.severity, u.actor_turns);
        let first_unit = a.units.iter().find(|u| u.key() == ("tea", 42)).unwrap();
        assert_eq!(b.units.len(), 1);
        assert_eq!(figures(first_unit), figures(&b.units[0]));
    }
    // A name already used is refused before anything runs.
    let twice = run("first", &["tea"], "1");
    assert!(!twice.status.success());
    assert!(text(&twice).1.contains("already holds an evaluation"));
}

#[test]
fn the_gate_refuses_on_the_word_of_an_uncalibrated_or_failed_judge() {
    let t = common::tiny();
    let (dir, _) = studio();
    let studio = dir.path();
    let lora = t.lora.display().to_string();
    let gate = |name: &str| {
        let mut args = vec!["eval", "--gate", "base", &lora, "--character", "Ann"];
        args.extend(SHORT);
        args.extend(["--next-speaker", "random", "--name", name]);
        her(studio, &args)
    };
    // 1. Nobody calibrated the judge (the tiny model itself): refused, and
    //    the message says why and what to do.
    let out = gate("g1");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("the gate will refuse whatever the scores"),
        "{stderr}"
    );
    assert!(stdout.contains("decision: REFUSE"), "{stdout}");
    assert!(
        stdout.contains("is uncalibrated")
            && stdout.contains("her eval calibrate")
            && stdout.contains("[judge]"),
        "{stdout}"
    );
    assert!(studio.join("evals/g1/gate.json").is_file());
    let log = std::fs::read_to_string(studio.join("adapters/gate-log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 1);
    assert_eq!(
        promoted_adapter(&promoted_file(studio), "Ann").unwrap(),
        None
    );

    // 2. Calibrate the same judge on one scene of the shipped set: six
    //    pairs, too few per dimension to pass whatever it answers.
    let set = studio.join("one-scene");
    std::fs::create_dir_all(&set).unwrap();
    std::fs::copy(
        common::repo_root().join("assets/eval/calibration/02-great-gatsby.toml"),
        set.join("02-great-gatsby.toml"),
    )
    .unwrap();
    let set_arg = set.display().to_string();
    let out = her(
        studio,
        &["eval", "calibrate", "--calibration-set", &set_arg],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    for d in Dimension::ALL {
        assert!(stdout.contains(d.key()), "{d:?}\n{stdout}");
    }
    assert!(stdout.contains("judge calibration: FAILED"), "{stdout}");
    assert!(stdout.contains("6 needed"), "{stdout}");
    // Six pairs, one line of progress each.
    assert_eq!(stderr.matches(" → ").count(), 6, "{stderr}");
    let stored: Vec<PathBuf> = std::fs::read_dir(studio.join("evals").join(CALIBRATION_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(stored.len(), 1);
    let calibration: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stored[0]).unwrap()).unwrap();
    assert_eq!(calibration["pairs"].as_array().unwrap().len(), 6);
    assert_eq!(calibration["set_source"].as_str(), Some(set_arg.as_str()));

    // 3. The same judge, now calibrated and failed: still refused.
    let out = gate("g2");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(stdout.contains("judge calibration: FAILED"), "{stdout}");
    assert!(stdout.contains("failed calibration"), "{stdout}");
    let results = read_results(&studio.join("evals/g2")).unwrap();
    let status = results.judge_calibration.unwrap();
    assert_eq!(status.state, CalibrationState::Failed);
    assert_eq!(status.file.as_deref(), Some(stored[0].as_path()));
    assert_eq!(
        promoted_adapter(&promoted_file(studio), "Ann").unwrap(),
        None
    );
}

fn turn(speaker: &str, text: &str) -> SimTurn {
    SimTurn {
        speaker: speaker.into(),
        text: text.into(),
        finish_reason: FinishReason::EndOfGeneration,
        provenance: Provenance {
            model: "planted".into(),
            model_fingerprint: String::new(),
            adapter: None,
            seed: 0,
            prompt_sha256: String::new(),
            prompt_tokens_sha256: String::new(),
            dropped_turns: 0,
            sampling: None,
            unapplied: Vec::new(),
        },
    }
}

/// Planted transcripts of the tea scene go through the evaluation's scoring
/// with the tiny model as the judge: its answers parse (what it says is
/// random), and the rules find exactly what was planted.
#[test]
fn planted_flaws_are_found_beside_the_tiny_judge() {
    let t = common::tiny();
    let (dir, _) = studio();
    let scenes = load_scenes(
        &["tea".into()],
        &dir.path().join("characters/scenes"),
        &dir.path().join("characters"),
    )
    .unwrap();
    let scene = &scenes[0];
    let ann_first = "<system_thinking>Ann wants to put Bob at ease.</system_thinking>Ann: \
                     <role_action>pours the tea</role_action>Sit down, Bob, and tell me what has \
                     happened at the farm.";
    let clean = SimTranscript {
        turns: vec![
            turn("Ann", ann_first),
            turn(
                "Bob",
                "<system_thinking>Bob blurts it out.</system_thinking>Bob: <role_thinking>No \
                 easy way to say it.</role_thinking>The bank has called in the loan. We lose the \
                 farm at Michaelmas.",
            ),
            turn(
                "Environment",
                "<system_thinking>Weather.</system_thinking>Rain begins to drum on the vicarage \
                 windows.",
            ),
            turn(
                "Ann",
                "<system_thinking>Ann is practical.</system_thinking>Ann: Then we shall go to \
                 the squire together tomorrow. <role_action>puts a hand on his arm</role_action>",
            ),
        ],
    };
    // Bob's turn spoken as Ann, with a second line for her.
    let mut other_speaks = clean.clone();
    other_speaks.turns[1].text = "<system_thinking>Bob answers.</system_thinking>Ann: Oh, Bob, \
        how dreadful for you all!\nAnn: Drink your tea while it is hot."
        .into();
    // Ann's last turn says her first line again.
    let mut repeated = clean.clone();
    repeated.turns[3].text = ann_first.into();

    let engine = common::start(&t.model);
    let sampling = judge_sampling(&common::sampling(1, 64), true);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let found = |transcript: &SimTranscript| {
        // The judge's answer parses (the grammar), whatever it says.
        let answer = rt
            .block_on(judge_transcript(
                &engine, scene, transcript, &sampling, true,
            ))
            .unwrap();
        let flaws = rule_flaws(scene, transcript, &RuleOptions::default());
        let unit = UnitResult::new("tea".into(), 1, transcript.actor_turns(), &answer, None)
            .with_rules(&flaws);
        let rules = unit.rules.unwrap();
        let found: Vec<(Rule, Dimension, usize, u8)> = flaws
            .iter()
            .map(|f| (f.rule, f.dimension, f.turn, f.severity))
            .collect();
        (found, rules)
    };
    let (none, rules) = found(&clean);
    assert_eq!(none, [], "a clean transcript has no rule flaws");
    assert_eq!(rules.scores.overall, 100.0);
    let (speaks, rules) = found(&other_speaks);
    assert_eq!(
        speaks,
        [
            (Rule::WrongSpeaker, Dimension::CharacterFidelity, 1, 4),
            (Rule::LineForOther, Dimension::StorylineQuality, 1, 3),
        ]
    );
    // 3 actor turns: 100 − 5·(4 − 0.9) = 84.5 on Character Fidelity.
    assert!(
        (rules.scores.dimensions[2] - 84.5).abs() < 1e-9,
        "{rules:?}"
    );
    let (again, rules) = found(&repeated);
    assert_eq!(
        again,
        [(Rule::RepeatedTurn, Dimension::Anthropomorphism, 3, 4)]
    );
    assert_eq!(rules.severity, [0, 4, 0, 0]);
}

fn unit(scene: usize, seed: u32, severity: [u8; 4]) -> UnitResult {
    let flaws = |s: u8| {
        vec![Flaw {
            flaw: "x".into(),
            severity: s,
        }]
    };
    let answer = JudgeAnswer {
        storyline_consistency: flaws(severity[0]),
        anthropomorphism: flaws(severity[1]),
        character_fidelity: flaws(severity[2]),
        storyline_quality: flaws(severity[3]),
    };
    UnitResult::new(format!("scene-{scene}"), seed, 6, &answer, None).with_rules(&[])
}

fn synthetic(label: &str, shift: [i8; 4]) -> SystemResult {
    let base = [[4, 3, 4, 5], [3, 4, 5, 4], [5, 4, 3, 4], [4, 5, 4, 3]];
    let units = (0..8)
        .map(|i| {
            let row = base[i % 4];
            let severity = std::array::from_fn(|d| (row[d] as i8 + shift[d]).clamp(1, 5) as u8);
            unit(i / 2, i as u32 % 2, severity)
        })
        .collect();
    SystemResult::new(label.into(), None, units, 1000, 7).unwrap()
}

#[test]
fn the_gate_promotes_the_better_and_refuses_the_regressing() {
    let dir = tempfile::tempdir().unwrap();
    let file = promoted_file(dir.path());
    let current = synthetic("current", [0, 0, 0, 0]);
    let better = synthetic("better", [-1, -1, -2, -1]);
    let regressing = synthetic("regressing", [-2, -2, 1, -2]);

    // A judge that passed calibration (its figures do not matter here).
    let trusted = CalibrationStatus {
        fingerprint: "ab".repeat(32),
        state: CalibrationState::Passed,
        dimensions: Vec::new(),
        calibrated_at: None,
        file: None,
    };
    let decide =
        |a: &SystemResult, b: &SystemResult, n, seed| decide(a, b, Some(&trusted), n, seed);
    let yes = decide(&current, &better, 1000, 7).unwrap();
    assert!(yes.promote, "{yes:?}");
    assert!(yes.checks.iter().take(4).all(|c| c.low > 0.0));
    let no = decide(&current, &regressing, 1000, 7).unwrap();
    assert!(!no.promote, "{no:?}");
    let regressed: Vec<&str> = no
        .checks
        .iter()
        .filter(|c| c.regressed)
        .map(|c| c.key.as_str())
        .collect();
    assert_eq!(regressed, ["character_fidelity"]);
    // Better overall does not buy a regression on one dimension.
    let overall = no.checks.last().unwrap();
    assert_eq!(overall.key, "overall");
    assert!(overall.difference > 0.0 && !overall.regressed);

    // What the command does with the two decisions.
    for (decision, adapter) in [(&yes, "better.gguf"), (&no, "regressing.gguf")] {
        if decision.promote {
            let promotion = Promotion {
                adapter: adapter.into(),
                sha256: "0".repeat(64),
                promoted_at: "now".into(),
                evaluation: "evals/x".into(),
                replaced: "base".into(),
            };
            promote(&file, "Ann", promotion).unwrap();
        }
    }
    let kept = promoted_adapter(&file, "Ann").unwrap().unwrap();
    assert_eq!(kept.adapter, PathBuf::from("better.gguf"));
    // Deterministic for a seed.
    assert_eq!(decide(&current, &regressing, 1000, 7).unwrap(), no);
}

#[test]
fn bad_input_gives_one_clear_error() {
    let (dir, _) = studio();
    let studio = dir.path();
    let broken = studio.join("broken.json");
    std::fs::write(&broken, "{\"book\": \"B\", \"scenario\": 3}").unwrap();
    let missing_adapter = studio.join("nope.gguf").display().to_string();
    let cases: [(Vec<String>, &str); 4] = [
        (vec!["no-such-scene".into()], "no scene 'no-such-scene'"),
        (vec![broken.display().to_string()], "broken.json"),
        (
            vec!["tea".into(), "--adapter".into(), missing_adapter.clone()],
            "nope.gguf' does not exist",
        ),
        (
            vec!["--gate".into(), "base".into(), missing_adapter],
            "does not exist",
        ),
    ];
    for (args, needle) in cases {
        let mut all = vec!["eval".to_string()];
        all.extend(args);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = her(studio, &refs);
        let (_, err) = text(&out);
        assert!(!out.status.success(), "{all:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{all:?}: {err}");
        assert!(
            lines[0].starts_with("error: ") && err.contains(needle),
            "{all:?}: {err}"
        );
    }
}

#[test]
fn without_a_judge_model_the_judge_section_picks_the_judge() {
    let (dir, _) = studio();
    let studio = dir.path();
    let judge = judge_file(studio, "section-judge.gguf");
    let judge_path = format!("judge.model_path={}", judge.display());
    let mut args = vec![
        "--set",
        "judge.kind=local",
        "--set",
        &judge_path,
        "eval",
        "tea",
    ];
    args.extend(SHORT);
    args.extend(["--name", "by-section"]);
    let out = her(studio, &args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let results = read_results(&studio.join("evals/by-section")).unwrap();
    // Its own engine on its own file (same bytes as the actor's here).
    assert!(
        results.judge.path.ends_with("section-judge.gguf"),
        "{:?}",
        results.judge
    );
    assert_ne!(results.judge.path, results.model.path);
    assert_eq!(results.judge.sha256, results.model.sha256);
    assert_eq!(results.systems[0].units.len(), 1);
}
