//! Hostile and damaged input through the `her` binary and the library:
//! endless devices, FIFOs and folders where files belong (a clean error,
//! at once), damaged lines in sessions and preference logs (the rest still
//! loads, and the user is told how much was skipped), a resumed finished run
//! (metrics unchanged), errors that print their cause once, NUL in a config
//! string, and a `$HOME` that cannot hold a config.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use her_core::prefs::{
    ContextMessage, PreferenceRecord, RatedLayer, Rating, RatingScore, Role as PrefRole,
    append_to_log,
};
use her_core::session::{Message, Role, SessionFile, SessionHeader, UNREADABLE_TEXT, load_session};

/// `her` in `studio` with an isolated home and the log in `home`.
fn her(studio: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_her"));
    cmd.env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .arg("--studio")
        .arg(studio)
        .arg("--set")
        .arg(format!("log.file={}", home.join("her.log").display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars() {
        if name.starts_with("HER_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Runs `cmd`, killing it if it takes more than 60 s (a blocked read).
fn run_bounded(mut cmd: Command) -> Output {
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after 60 s (a blocked or endless read?): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A failed run: non-zero exit, one `error:` line holding every needle, no panic.
fn assert_one_clear_error(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "expected one error line, got: {err}");
    for needle in needles {
        assert!(errors[0].contains(needle), "'{needle}' not in: {err}");
    }
    assert_cause_once(errors[0]);
}

/// No part of an error line repeats the one before it ("X: X").
fn assert_cause_once(line: &str) {
    let parts: Vec<&str> = line.split(": ").collect();
    for pair in parts.windows(2) {
        assert_ne!(pair[0], pair[1], "a cause printed twice: {line}");
    }
    assert!(line.matches("(os error").count() <= 1, "{line}");
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// An empty studio folder with a config naming the repository's model.
fn new_studio() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let model = common::repo_root().join("assets/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    std::fs::write(
        dir.path().join("config.toml"),
        format!("[model]\npath = {:?}\n", model.display().to_string()),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("characters")).unwrap();
    dir
}

// ---- defect 1: unbounded reads ----

#[test]
fn import_of_an_endless_device_or_a_fifo_fails_at_once() {
    let studio = new_studio();
    let home = tempfile::tempdir().unwrap();
    let zero_json = home.path().join("card.json");
    std::os::unix::fs::symlink("/dev/zero", &zero_json).unwrap();
    let zero_png = home.path().join("card.png");
    std::os::unix::fs::symlink("/dev/zero", &zero_png).unwrap();
    let fifo = home.path().join("pipe.json");
    mkfifo(&fifo);
    for (path, what) in [
        (&zero_json, "a character device"),
        (&zero_png, "a character device"),
        (&fifo, "a named pipe (FIFO)"),
        (&home.path().to_path_buf(), "neither a character card"),
    ] {
        let mut cmd = her(studio.path(), home.path());
        cmd.arg("import").arg(path);
        let out = run_bounded(cmd);
        assert_one_clear_error(&out, &[what]);
    }
    let written = std::fs::read_dir(studio.path().join("characters")).unwrap();
    assert_eq!(written.count(), 0);
}

#[test]
fn training_and_annotation_inputs_refuse_fifos_and_devices() {
    let studio = new_studio();
    let home = tempfile::tempdir().unwrap();
    let fifo = home.path().join("data.jsonl");
    mkfifo(&fifo);
    let zero = home.path().join("zero.jsonl");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let path_text = |p: &Path| p.display().to_string();
    for (args, needle) in [
        (
            vec![
                "train".to_string(),
                "sft".into(),
                "--data".into(),
                path_text(&fifo),
            ],
            "a named pipe (FIFO)",
        ),
        (
            vec![
                "train".to_string(),
                "sft".into(),
                "--data".into(),
                path_text(&zero),
            ],
            "a character device",
        ),
        (
            vec![
                "train".to_string(),
                "dpo".into(),
                "--data".into(),
                path_text(&fifo),
            ],
            "a named pipe (FIFO)",
        ),
        (
            vec!["annotate".to_string(), path_text(&zero)],
            "a character device",
        ),
        (
            vec!["annotate".to_string(), path_text(&fifo)],
            "a named pipe (FIFO)",
        ),
        (
            vec!["export".to_string(), "session".into(), path_text(&fifo)],
            "a named pipe (FIFO)",
        ),
        (
            vec![
                "train".to_string(),
                "sft".into(),
                "--model".into(),
                path_text(&fifo),
                "--data".into(),
                path_text(&common::repo_root().join("assets/datasets/elizabeth-sft.jsonl")),
            ],
            "a named pipe (FIFO)",
        ),
    ] {
        let mut cmd = her(studio.path(), home.path());
        cmd.args(&args);
        let out = run_bounded(cmd);
        assert_one_clear_error(&out, &[needle]);
    }
}

#[test]
fn a_dataset_over_the_configured_limit_is_refused_naming_the_key() {
    let studio = new_studio();
    let home = tempfile::tempdir().unwrap();
    // A sparse file: 2 MiB without using the disk.
    let big = home.path().join("big.jsonl");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(2 * 1024 * 1024)
        .unwrap();
    let mut cmd = her(studio.path(), home.path());
    cmd.args(["--set", "limits.dataset_mb=1", "train", "sft", "--data"])
        .arg(&big);
    let out = run_bounded(cmd);
    assert_one_clear_error(
        &out,
        &[
            "over the 1 MiB limit",
            "raise 'limits.dataset_mb' in config.toml",
        ],
    );
}

// ---- defect 2: a damaged line in the middle of a session ----

/// A 14-turn session; returns its path.
fn fourteen_turns(dir: &Path) -> PathBuf {
    let mut header = SessionHeader::new("At Netherfield");
    header.character = Some("Elizabeth Bennet".into());
    let (mut file, mut session) = SessionFile::create(dir, header).unwrap();
    for i in 0..14 {
        let message = if i % 2 == 0 {
            Message::new("Darcy", Role::User, format!("turn {i}"))
        } else {
            Message::new("Elizabeth Bennet", Role::Character, format!("turn {i}"))
        };
        file.commit_with(&mut session, |s| Ok(s.tree().append_event(message)))
            .unwrap();
    }
    file.path().to_path_buf()
}

fn damage_line(path: &Path, number: usize) {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i + 1 == number {
                format!("{}\u{0}\u{7f}garbage", &l[..l.len() / 3])
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn a_damaged_session_line_hides_no_later_turn() {
    let studio = new_studio();
    let home = tempfile::tempdir().unwrap();
    let path = fourteen_turns(&studio.path().join("sessions"));
    // Line 6 holds turn 4; every later turn hangs under it.
    damage_line(&path, 6);

    let (session, issues) = load_session(&path).unwrap();
    let tree = session.tree();
    let shown: Vec<&str> = tree
        .active_path()
        .into_iter()
        .map(|id| tree.node(id).unwrap().message.text.as_str())
        .collect();
    assert_eq!(shown.len(), 14, "{shown:?}");
    assert!(shown[4].contains(UNREADABLE_TEXT), "{shown:?}");
    for (i, text) in shown.iter().enumerate().filter(|(i, _)| *i != 4) {
        assert_eq!(*text, format!("turn {i}"));
    }
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].line, 6);

    let out_file = home.path().join("story.txt");
    let mut cmd = her(studio.path(), home.path());
    cmd.args(["export", "session", "--format", "txt", "--out"])
        .arg(&out_file)
        .arg(&path);
    let out = run_bounded(cmd);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: line 6: "),
        "{}",
        stderr(&out)
    );
    let story = std::fs::read_to_string(&out_file).unwrap();
    assert!(story.contains(UNREADABLE_TEXT), "{story}");
    for i in (0..14).filter(|&i| i != 4) {
        assert!(
            story.contains(&format!("turn {i}")),
            "turn {i} missing: {story}"
        );
    }
}

// ---- defect 7: one bad line in a preferences log ----

fn rating(id: &str, reply: &str) -> PreferenceRecord {
    PreferenceRecord::Rating(Rating {
        id: id.into(),
        annotator: "alice".into(),
        implicit: false,
        character: "Elizabeth Bennet".into(),
        session: None,
        context: vec![
            ContextMessage::new(PrefRole::System, "You are Elizabeth Bennet."),
            ContextMessage::new(PrefRole::User, "Darcy: Miss Bennet."),
        ],
        reply: format!("<system_thinking>Polite.</system_thinking>{reply}"),
        score: RatingScore::Stars(4),
        layer: RatedLayer::Whole,
        tags: Vec::new(),
        rationale: None,
        provenance: None,
        created_at: "2025-03-01T10:00:00Z".into(),
    })
}

/// A log of three ratings whose middle line is damaged.
fn log_with_a_bad_line(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    append_to_log(path, &[rating("r1", "Sir."), rating("r2", "Indeed.")]).unwrap();
    let mut text = std::fs::read_to_string(path).unwrap();
    text.push_str("{\"kind\":\"rating\",\"id\":\"r-broken\",\n");
    std::fs::write(path, text).unwrap();
    append_to_log(path, &[rating("r3", "Quite.")]).unwrap();
}

/// A wrong `--thinking-edits` value is named with the values it takes.
#[test]
fn a_wrong_thinking_edits_filter_is_named() {
    let studio = new_studio();
    let home = tempfile::tempdir().unwrap();
    let mut cmd = her(studio.path(), home.path());
    cmd.args(["prefs", "summary", "--thinking-edits", "sometimes"]);
    let out = run_bounded(cmd);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--thinking-edits 'sometimes': expected keep, drop or only"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn one_bad_prefs_line_stops_no_report_merge_or_export() {
    let studio = new_studio();
    let home = tempfile::tempdir().unwrap();
    log_with_a_bad_line(&studio.path().join("prefs/annotations/q.alice.jsonl"));

    let mut cmd = her(studio.path(), home.path());
    cmd.args(["prefs", "summary"]);
    let out = run_bounded(cmd);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(" 3 ratings"), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("q.alice.jsonl:3: "),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("skipped 1 line"), "{}", stderr(&out));

    let exported = home.path().join("kto.jsonl");
    let mut cmd = her(studio.path(), home.path());
    cmd.args(["export", "prefs", "--format", "kto", "--out"])
        .arg(&exported);
    let out = run_bounded(cmd);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("skipped 1 line"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&exported).unwrap().lines().count(),
        3
    );

    let other = tempfile::tempdir().unwrap();
    let incoming = other.path().join("bob.jsonl");
    log_with_a_bad_line(&incoming);
    let fresh = new_studio();
    let mut cmd = her(fresh.path(), home.path());
    cmd.args(["prefs", "merge"]).arg(&incoming);
    let out = run_bounded(cmd);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("alice: added 3 records"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("skipped 1 line"), "{}", stderr(&out));
}

// ---- defect 8: resuming a finished run ----

#[test]
fn resuming_a_finished_run_twice_leaves_its_metrics_unchanged() {
    use her_studio::config::TrainConfig;
    use her_train::data::{Message as Turn, Sample};
    use her_train::sft::SftJob;
    use her_train::train_loop::{RunSpec, run};
    let dir = tempfile::tempdir().unwrap();
    let turn = |role: &str, content: String| Turn {
        role: role.into(),
        content,
    };
    let data: Vec<Sample> = (0..8)
        .map(|i| Sample {
            messages: vec![
                turn("user", format!("Darcy: question {i}?")),
                turn(
                    "assistant",
                    format!("<system_thinking>Answer.</system_thinking>Elizabeth: answer {i}."),
                ),
            ],
        })
        .collect();
    let model = common::tiny().model.clone();
    let job = |resume| SftJob {
        spec: RunSpec {
            model_fingerprint: her_engine::local::fingerprint(&model).unwrap(),
            model: model.clone(),
            settings: TrainConfig {
                rank: 4,
                max_steps: 3,
                batch_size: 2,
                eval_fraction: 0.25,
                eval_every: 2,
                checkpoint_every: 0,
                ..TrainConfig::default()
            },
            run: dir.path().join("run"),
            resume,
            init_adapter: None,
        },
        sources: Vec::new(),
    };
    let never = AtomicBool::new(false);
    run(&job(false), data.clone(), &never, &mut |_| {}).unwrap();
    let metrics = dir.path().join("run/metrics.jsonl");
    let first = std::fs::read_to_string(&metrics).unwrap();
    let evals = |text: &str| text.lines().filter(|l| l.contains("\"eval\"")).count();
    // Before training, at step 2, and at the end.
    assert_eq!(evals(&first), 3, "{first}");
    for _ in 0..2 {
        let resumed = run(&job(true), data.clone(), &never, &mut |_| {}).unwrap();
        assert!(!resumed.interrupted);
        assert_eq!(std::fs::read_to_string(&metrics).unwrap(), first);
    }
}

// ---- defect 9: the smaller items ----

#[test]
fn an_io_error_prints_its_cause_once() {
    let studio = new_studio();
    let home = tempfile::tempdir().unwrap();
    let path = fourteen_turns(&studio.path().join("sessions"));
    // Writing the export over a folder fails with "Is a directory".
    let folder = home.path().join("taken");
    std::fs::create_dir(&folder).unwrap();
    let mut cmd = her(studio.path(), home.path());
    cmd.args(["export", "session", "--out"])
        .arg(&folder)
        .arg(&path);
    let out = run_bounded(cmd);
    assert_one_clear_error(&out, &["Is a directory (os error 21)"]);
    // And reading a folder as a session says what it is.
    let mut cmd = her(studio.path(), home.path());
    cmd.args(["export", "session"]).arg(&folder);
    let out = run_bounded(cmd);
    assert_one_clear_error(&out, &["it is a folder, not a regular file"]);
    let mut cmd = her(studio.path(), home.path());
    cmd.args(["export", "session"])
        .arg(home.path().join("missing.jsonl"));
    let out = run_bounded(cmd);
    assert_one_clear_error(&out, &["No such file or directory (os error 2)"]);
}

#[test]
fn prefs_merge_of_a_device_says_what_it_is() {
    let studio = new_studio();
    let home = tempfile::tempdir().unwrap();
    let mut cmd = her(studio.path(), home.path());
    cmd.args(["prefs", "merge", "/dev/null"]);
    let out = run_bounded(cmd);
    assert_one_clear_error(&out, &["'/dev/null'", "a character device"]);
    assert!(!stderr(&out).contains("no such file"), "{}", stderr(&out));
}

#[test]
fn a_nul_in_a_config_string_is_refused_naming_the_key() {
    let studio = new_studio();
    let home = tempfile::tempdir().unwrap();
    let config = studio.path().join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("[chat]\nuser_name = \"Ann\\u0000ie\"\n");
    std::fs::write(&config, text).unwrap();
    let mut cmd = her(studio.path(), home.path());
    cmd.arg("characters");
    let out = run_bounded(cmd);
    assert_one_clear_error(&out, &["'chat.user_name'", "NUL"]);
}

#[test]
fn a_home_that_cannot_hold_a_config_is_no_user_config() {
    let studio = new_studio();
    let logs = tempfile::tempdir().unwrap();
    // $HOME is a file: ~/.config/her-studio/config.toml cannot exist.
    let home_file = logs.path().join("not-a-folder");
    std::fs::write(&home_file, "").unwrap();
    let mut cmd = her(studio.path(), &home_file);
    cmd.arg("--set")
        .arg(format!(
            "log.file={}",
            logs.path().join("her.log").display()
        ))
        .arg("characters");
    let out = run_bounded(cmd);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = std::fs::read_to_string(logs.path().join("her.log")).unwrap();
    assert!(log.contains("cannot be reached"), "{log}");
    assert!(log.contains("continuing without it"), "{log}");
}
