//! The crate graph enforces the layers (ARCHITECTURE.md); this test checks
//! the graph itself, so a new `[dependencies]` line cannot quietly add an
//! arrow the rules forbid.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Every crate `package` reaches through normal (not dev or build)
/// dependencies, or only its direct ones with `direct`.
fn normal_deps(package: &str, direct: bool) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args(["--format", "{p}", "-p", package]);
    if direct {
        cmd.args(["--depth", "1"]);
    }
    let out = cmd.output().expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != package)
        .map(str::to_owned)
        .collect()
}

fn assert_none_of(package: &str, deps: &BTreeSet<String>, forbidden: &[&str]) {
    let found: Vec<&&str> = forbidden.iter().filter(|f| deps.contains(**f)).collect();
    assert!(
        found.is_empty(),
        "{package} must not depend on {found:?} (see ARCHITECTURE.md)"
    );
}

const HEAVY: &[&str] = &[
    "llama-cpp-2",
    "candle-core",
    "candle-nn",
    "ratatui",
    "crossterm",
    "tokio",
    "anyhow",
    "clap",
];

#[test]
fn the_core_and_the_gguf_crate_name_no_runtime_model_or_terminal_crate() {
    let core = normal_deps("her-core", false);
    assert_none_of("her-core", &core, HEAVY);
    assert!(
        core.iter().all(|d| !d.starts_with("her-")),
        "her-core uses none of ours: {core:?}"
    );
    let gguf = normal_deps("her-gguf", false);
    assert_none_of("her-gguf", &gguf, HEAVY);
    assert_none_of("her-gguf", &gguf, &["her-engine", "her-train", "her-eval"]);
}

#[test]
fn the_engine_and_eval_know_nothing_of_training_or_the_terminal() {
    let engine = normal_deps("her-engine", false);
    assert_none_of(
        "her-engine",
        &engine,
        &[
            "her-train",
            "her-eval",
            "candle-core",
            "ratatui",
            "crossterm",
            "anyhow",
            "clap",
        ],
    );
    let eval = normal_deps("her-eval", false);
    assert_none_of(
        "her-eval",
        &eval,
        &[
            "her-train",
            "candle-core",
            "ratatui",
            "crossterm",
            "anyhow",
            "clap",
        ],
    );
    let train = normal_deps("her-train", false);
    assert_none_of(
        "her-train",
        &train,
        &["her-eval", "ratatui", "crossterm", "anyhow", "clap"],
    );
}

#[test]
fn only_the_trainer_names_candle_and_only_the_engine_names_llama_cpp() {
    for package in [
        "her-core",
        "her-gguf",
        "her-engine",
        "her-eval",
        "her-studio",
    ] {
        let direct = normal_deps(package, true);
        assert_none_of(package, &direct, &["candle-core", "candle-nn"]);
    }
    for package in [
        "her-core",
        "her-gguf",
        "her-train",
        "her-eval",
        "her-studio",
    ] {
        let direct = normal_deps(package, true);
        assert_none_of(package, &direct, &["llama-cpp-2"]);
    }
    assert!(normal_deps("her-train", true).contains("candle-core"));
    assert!(normal_deps("her-engine", true).contains("llama-cpp-2"));
}

#[test]
fn anyhow_and_the_terminal_crates_are_the_apps_alone() {
    for package in [
        "her-core",
        "her-gguf",
        "her-engine",
        "her-train",
        "her-eval",
    ] {
        let all = normal_deps(package, false);
        assert_none_of(package, &all, &["anyhow", "ratatui", "crossterm", "clap"]);
    }
}
