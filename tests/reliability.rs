//! The reliability harness: `kill -9` at random moments against the real TUI
//! in tmux (SmolLM2) and against `her train sft` (the tiny model), then the
//! checks that matter: no completed turn lost, every file still loads, a
//! killed run resumes to byte-identical adapters.
//!
//! CI runs a few kills (`RELIABILITY_CHAT_KILLS`, default 3; `RELIABILITY_TRAIN_KILLS`,
//! default 2); `scripts/reliability` runs the long version (≥ 100 each).
//! Each test prints one `… tried N, survived N, lost N` line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::tmux::{Tmux, her_command, idle, new_her_pid, session_file, studio};
use her_core::rng::SplitMix64;

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn kill(pid: u32) {
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
}

/// Keys of the message lines complete on disk now (a line being written
/// has no newline yet and is not a completed turn).
fn completed_messages(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let complete = bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(&[][..], |end| &bytes[..end]);
    String::from_utf8_lossy(complete)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "message")
        .filter_map(|v| v["key"].as_str().map(str::to_string))
        .collect()
}

#[derive(Default)]
struct Tally {
    tried: usize,
    survived: usize,
    lost: usize,
}

#[test]
fn killed_chats_lose_no_completed_turn() {
    let model = common::smollm2();
    let kills = count("RELIABILITY_CHAT_KILLS", 3);
    let dir = studio();
    let tmux = Tmux::new("kills");
    let mut rng = SplitMix64::new(2026);
    let mut path: Option<PathBuf> = None;
    let mut tally = Tally::default();
    let mut problems = Vec::new();
    for k in 0..kills {
        let rest = match &path {
            None => "chat --character elizabeth-bennet".to_string(),
            Some(p) => format!("chat --session {}", p.display()),
        };
        let window = format!("w{k}");
        tmux.start(&window, &her_command(dir.path(), &model, 200, &rest));
        let pid = new_her_pid(dir.path(), &[]);
        tmux.wait_for(&window, "the chat", idle);
        let file = path.get_or_insert_with(|| session_file(dir.path())).clone();
        let saved_before = completed_messages(&file).len();
        tmux.keys(
            &window,
            &[&format!("Turn {k}, tell me about the ball."), "Enter"],
        );
        // The user's line and its reply complete on disk (read from the file:
        // a long story scrolls the line off the screen).
        let reply_saved = || completed_messages(&file).len() >= saved_before + 2;
        // Before the reply, while it streams, or after it is saved.
        match rng.next_u64() % 3 {
            0 => std::thread::sleep(Duration::from_millis(rng.next_u64() % 300)),
            1 => {
                tmux.wait_for(&window, "the reply to stream", |s| {
                    s.contains("writing…") || reply_saved()
                });
                std::thread::sleep(Duration::from_millis(rng.next_u64() % 1500));
            }
            _ => {
                tmux.wait_for(&window, "the saved reply", |_| reply_saved());
            }
        }
        let before = completed_messages(&file);
        kill(pid);
        tally.tried += 1;
        tmux.wait_for(&window, "the killed process", |s| s.contains("EXITED:137"));
        let (session, issues) = match her_core::session::load_session(&file) {
            Ok(loaded) => loaded,
            Err(err) => {
                problems.push(format!("kill {k}: the session does not load: {err}"));
                continue;
            }
        };
        let keys: HashSet<&str> = session
            .tree()
            .active_path()
            .into_iter()
            .chain(session.tree().rows().into_iter().map(|r| r.node))
            .filter_map(|id| session.tree().node(id))
            .map(|n| n.key.as_str())
            .collect();
        let missing = before.iter().filter(|k| !keys.contains(k.as_str())).count();
        tally.lost += missing;
        if missing == 0 && issues.is_empty() {
            tally.survived += 1;
        } else {
            problems.push(format!("kill {k}: {missing} turns lost, issues {issues:?}"));
        }
    }
    println!(
        "chat kills: tried {}, survived {}, lost {} completed turns",
        tally.tried, tally.survived, tally.lost
    );
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(tally.survived, kills);
}

/// Steps of each training run, and the window after its first progress
/// line in which a kill lands (a run takes longer than that).
const STEPS: u32 = 30;
const KILL_WINDOW_MS: u64 = 1500;

/// `her train sft` on the tiny model in `studio`, run `name` (resumed when
/// it already has a run.json), with stderr collected as it comes.
fn start_training(studio: &Path, name: &str) -> (Child, Arc<Mutex<Vec<u8>>>) {
    let t = common::tiny();
    let run = studio.join("runs").join(name);
    let mut cmd = Command::new(common::her_bin());
    cmd.arg("--studio")
        .arg(studio)
        .arg("--set")
        .arg(format!("train.max_steps={STEPS}"))
        .args(["--set", "train.batch_size=2"])
        .args([
            "--set",
            "train.checkpoint_every=1",
            "--set",
            "train.eval_every=0",
        ])
        .arg("--set")
        .arg(format!("log.file={}/her.log", studio.display()))
        .args(["train", "sft", "--model"])
        .arg(&t.model)
        .arg("--data")
        .arg(common::repo_root().join("assets/datasets/elizabeth-sft.jsonl"));
    if run.join("run.json").is_file() {
        cmd.arg("--resume").arg(&run);
    } else {
        cmd.args(["--name", name]);
    }
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut stderr = child.stderr.take().unwrap();
    let sink = Arc::clone(&seen);
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    (child, seen)
}

/// The files a finished run is judged by.
fn adapters(run: &Path) -> Vec<Vec<u8>> {
    ["adapter.gguf", "peft/adapter_model.safetensors"]
        .iter()
        .map(|f| std::fs::read(run.join(f)).unwrap_or_default())
        .collect()
}

/// Every file of a killed run still loads: metric lines and the newest checkpoint.
fn run_files_load(run: &Path) -> Result<(), String> {
    if let Ok(text) = std::fs::read_to_string(run.join("metrics.jsonl")) {
        let complete = text.rsplit_once('\n').map_or("", |(done, _)| done);
        for (i, line) in complete.lines().enumerate() {
            serde_json::from_str::<serde_json::Value>(line)
                .map_err(|e| format!("metrics.jsonl line {}: {e}", i + 1))?;
        }
    }
    if let Some(latest) = her_train::checkpoint::latest(&run.join("checkpoints")) {
        her_train::checkpoint::load(&latest, &candle_core::Device::Cpu)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[test]
fn killed_training_runs_resume_to_identical_adapters() {
    let kills = count("RELIABILITY_TRAIN_KILLS", 2);
    let reference_dir = tempfile::tempdir().unwrap();
    let (mut child, _) = start_training(reference_dir.path(), "k");
    assert!(child.wait().unwrap().success());
    let reference = adapters(&reference_dir.path().join("runs/k"));
    assert!(reference.iter().all(|a| !a.is_empty()));

    let mut rng = SplitMix64::new(7);
    let mut tally = Tally::default();
    let mut problems = Vec::new();
    while tally.tried < kills {
        // One run, killed one to three times, then resumed to its end.
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("runs/k");
        let in_this_run = (1 + rng.next_u64() as usize % 3).min(kills - tally.tried);
        let mut killed = 0;
        let mut ok = true;
        for _ in 0..in_this_run {
            let (mut child, seen) = start_training(dir.path(), "k");
            let start = Instant::now();
            while !String::from_utf8_lossy(&seen.lock().unwrap()).contains("step ")
                && child.try_wait().unwrap().is_none()
                && start.elapsed() < Duration::from_secs(120)
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(rng.next_u64() % KILL_WINDOW_MS));
            if child.try_wait().unwrap().is_some() {
                // It finished first: no kill landed.
                break;
            }
            kill(child.id());
            let _ = child.wait();
            killed += 1;
            tally.tried += 1;
            if let Err(e) = run_files_load(&run) {
                problems.push(format!("after kill {}: {e}", tally.tried));
                ok = false;
            }
        }
        if !run.join("adapter.gguf").is_file() {
            let (mut child, seen) = start_training(dir.path(), "k");
            if !child.wait().unwrap().success() {
                let err = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
                problems.push(format!("the resume failed: {err}"));
                ok = false;
            }
        }
        if adapters(&run) != reference {
            problems.push("the resumed adapters differ from the reference".into());
            ok = false;
        }
        if ok {
            tally.survived += killed;
        } else {
            tally.lost += killed;
        }
    }
    println!(
        "training kills: tried {}, survived {}, lost {} (runs not resumed to identical adapters)",
        tally.tried, tally.survived, tally.lost
    );
    assert!(problems.is_empty(), "{problems:#?}");
}
