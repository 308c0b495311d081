//! `her eval` end to end on the tiny random-weight Qwen3 (actor and judge):
//! every scene is played, saved as a session and judged, every verdict parses
//! thanks to the grammar, and the report has all four dimensions. Plus the
//! gate on synthetic results, and bad input giving one clear error.
//! Only structure and determinism are asserted, never what a random model writes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use her_studio::eval::judge::{Flaw, JudgeAnswer};
use her_studio::eval::promote::{Promotion, promote, promoted_adapter, promoted_file};
use her_studio::eval::results::{SystemResult, UnitResult};
use her_studio::eval::{Dimension, decide, read_results};
use her_studio::session::{list_sessions, load_session};

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
    for system in &results.systems {
        // Every verdict parsed: a unit per scene and seed.
        assert_eq!(system.units.len(), 4, "{}", system.label);
        assert_eq!(system.summary.len(), 5);
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
    // The per-scene file keeps the judge's flaws: 2 systems × 2 seeds.
    let lines = std::fs::read_to_string(eval_dir.join("scenes/tea.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 4);
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
fn the_gate_on_the_tiny_model_logs_its_decision() {
    let t = common::tiny();
    let (dir, _) = studio();
    let studio = dir.path();
    let lora = t.lora.display().to_string();
    let mut args = vec!["eval", "--gate", "base", &lora, "--character", "Ann"];
    args.extend(SHORT);
    args.extend(["--next-speaker", "random", "--name", "g"]);
    let out = her(studio, &args);
    let (stdout, stderr) = text(&out);
    // 0: promoted, 3: refused; either way the decision is logged.
    let code = out.status.code().unwrap();
    assert!(code == 0 || code == 3, "{code}\n{stdout}\n{stderr}");
    assert!(stdout.contains("decision: "), "{stdout}");
    assert!(studio.join("evals/g/gate.json").is_file());
    let log = std::fs::read_to_string(studio.join("adapters/gate-log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 1);
    let promoted = promoted_adapter(&promoted_file(studio), "Ann").unwrap();
    assert_eq!(promoted.is_some(), code == 0);
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
    UnitResult::new(format!("scene-{scene}"), seed, 6, &answer, None)
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
