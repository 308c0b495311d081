//! Sessions in the real TUI (tmux) when things get in the way: a read-only
//! sessions folder or session file, two windows on one session, and a
//! window killed while it held a session.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::tmux::{
    Tmux, her_cli, her_command, her_command_as, idle, new_her_pid, studio, without_root_override,
};
use her_core::character::load_character;
use her_core::session::{SessionHeader, holder_file, load_session};

/// A session with Elizabeth's greeting, written as the TUI writes a new one.
fn saved_session(studio: &Path) -> PathBuf {
    let lizzy = load_character(&studio.join("characters/elizabeth-bennet.toml")).unwrap();
    let mut header = SessionHeader::new("At Netherfield");
    header.character = Some(lizzy.name.clone());
    let (file, _) =
        her_engine::dialogue::start_session(&studio.join("sessions"), header, Some(&lizzy))
            .unwrap();
    file.path().to_path_buf()
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The user lines of a session's active branch.
fn user_lines(path: &Path) -> Vec<String> {
    let (session, issues) = load_session(path).unwrap();
    assert!(issues.is_empty(), "{}: {issues:?}", path.display());
    let tree = session.tree();
    tree.active_path()
        .into_iter()
        .filter_map(|id| tree.node(id))
        .filter(|n| n.message.role == her_core::session::Role::User)
        .map(|n| n.message.text.clone())
        .collect()
}

fn sessions(studio: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(studio.join("sessions"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "jsonl")
                && !p.file_name().unwrap().to_string_lossy().starts_with('.')
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_read_only_sessions_folder_is_said_on_the_picker_and_the_exit_fails() {
    let t = common::tiny();
    let dir = studio();
    let folder = dir.path().join("sessions");
    set_mode(&folder, 0o555);
    let tmux = Tmux::new("rofolder");
    tmux.start(
        "her",
        &her_command_as(
            without_root_override(),
            dir.path(),
            &t.model,
            8,
            "chat --character elizabeth-bennet",
        ),
    );
    let screen = tmux.wait_for("her", "the error on the session picker", |s| {
        s.contains("cannot start a new session") && s.contains("resume a session")
    });
    assert!(screen.contains("Permission denied"), "{screen}");
    // "+ new session" again: the error goes with the next key, and comes back.
    tmux.keys("her", &["Down"]);
    tmux.wait_for("her", "the notice cleared", |s| {
        !s.contains("cannot start a new session")
    });
    tmux.keys("her", &["Enter"]);
    tmux.wait_for("her", "the error again", |s| {
        s.contains("cannot start a new session")
    });
    let end = tmux.quit("her");
    set_mode(&folder, 0o755);
    assert!(end.contains("EXITED:1"), "{end}");
    assert!(
        end.contains("error: cannot start a new session") && end.contains("paths.sessions"),
        "the reason on stderr after the terminal is restored: {end}"
    );
}

#[test]
fn a_read_only_session_file_opens_read_only_and_stays_as_it_was() {
    let t = common::tiny();
    let dir = studio();
    let path = saved_session(dir.path());
    set_mode(&path, 0o444);
    let before = std::fs::read(&path).unwrap();
    let tmux = Tmux::new("rofile");
    tmux.start(
        "her",
        &her_command_as(
            without_root_override(),
            dir.path(),
            &t.model,
            8,
            &format!("chat --session {}", path.display()),
        ),
    );
    let screen = tmux.wait_for("her", "the read-only chat", |s| s.contains("┌read-only:"));
    assert!(screen.contains("opened read-only"), "{screen}");
    tmux.keys("her", &["Hello there", "Enter"]);
    tmux.wait_for("her", "the refused message", |s| {
        s.contains("nothing was saved")
    });
    tmux.keys("her", &["Escape"]);
    tmux.keys("her", &["+"]);
    tmux.wait_for("her", "the refused rating", |s| {
        s.contains("nothing was saved")
    });
    let end = tmux.quit("her");
    set_mode(&path, 0o644);
    assert!(end.contains("EXITED:0"), "{end}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert!(!holder_file(&path).exists());
}

#[test]
fn a_second_window_chooses_fork_or_read_only_and_a_killed_holder_is_taken_over() {
    let t = common::tiny();
    let dir = studio();
    let path = saved_session(dir.path());
    let open = format!("chat --session {}", path.display());
    let tmux = Tmux::new("lock");

    // Window one holds the session.
    tmux.start("one", &her_command(dir.path(), &t.model, 8, &open));
    let one = new_her_pid(dir.path(), &[]);
    tmux.wait_for("one", "the first window", idle);
    // Window two is asked, names the holder, and forks.
    tmux.start("two", &her_command(dir.path(), &t.model, 8, &open));
    let two = new_her_pid(dir.path(), &[one]);
    let screen = tmux.wait_for("two", "the choice", |s| {
        s.contains("open in another her window")
    });
    assert!(screen.contains(&format!("pid {one}")), "{screen}");
    tmux.keys("two", &["f"]);
    tmux.wait_for("two", "the fork", |s| idle(s) && s.contains("forked into"));
    tmux.keys("two", &["From the fork", "Enter"]);
    tmux.wait_for("two", "the fork's reply", |s| {
        idle(s) && s.contains("From the fork") && !s.contains("writing…")
    });
    tmux.keys("one", &["From the original", "Enter"]);
    tmux.wait_for("one", "the original's reply", |s| {
        idle(s) && s.contains("From the original") && !s.contains("writing…")
    });
    // A line chat on the held session is refused, before any model loads.
    let headless = her_cli(
        dir.path(),
        &t.model,
        &["chat", "--headless", "--session", path.to_str().unwrap()],
    );
    let err = String::from_utf8_lossy(&headless.stderr);
    assert!(!headless.status.success(), "{err}");
    assert!(
        err.contains(&format!("already open for writing by pid {one}")) && err.contains("--fork"),
        "{err}"
    );
    for window in ["one", "two"] {
        let end = tmux.quit(window);
        assert!(end.contains("EXITED:0"), "{end}");
    }
    let files = sessions(dir.path());
    assert_eq!(files.len(), 2, "{files:?}");
    let fork = files.iter().find(|f| **f != path).unwrap();
    assert_eq!(user_lines(&path), ["From the original"]);
    assert_eq!(user_lines(fork), ["From the fork"]);
    let _ = two;

    // Window three is killed while it holds the session.
    tmux.start("three", &her_command(dir.path(), &t.model, 8, &open));
    let three = new_her_pid(dir.path(), &[]);
    tmux.wait_for("three", "the third window", idle);
    Command::new("kill")
        .args(["-9", &three.to_string()])
        .status()
        .unwrap();
    tmux.wait_for("three", "the killed window", |s| s.contains("EXITED:137"));
    assert!(
        holder_file(&path).exists(),
        "left behind by the killed window"
    );
    // The kernel released its lock: window four takes the session over.
    tmux.start("four", &her_command(dir.path(), &t.model, 8, &open));
    let four = new_her_pid(dir.path(), &[]);
    tmux.wait_for("four", "the takeover", |s| {
        s.contains(&format!("left open by pid {three}")) && s.contains("it is yours now")
    });
    // Window five only reads: nothing it does reaches the file.
    tmux.start("five", &her_command(dir.path(), &t.model, 8, &open));
    let screen = tmux.wait_for("five", "the choice", |s| {
        s.contains("open in another her window")
    });
    assert!(screen.contains(&format!("pid {four}")), "{screen}");
    tmux.keys("five", &["r"]);
    tmux.wait_for("five", "the read-only chat", |s| s.contains("┌read-only:"));
    tmux.keys("five", &["Escape"]);
    tmux.keys("five", &["+"]);
    tmux.wait_for("five", "the refused rating", |s| {
        s.contains("nothing was saved")
    });
    let end = tmux.quit("five");
    assert!(end.contains("EXITED:0"), "{end}");
    tmux.keys("four", &["After the takeover", "Enter"]);
    tmux.wait_for("four", "the reply", |s| {
        idle(s) && s.contains("After the takeover") && !s.contains("writing…")
    });
    let end = tmux.quit("four");
    assert!(end.contains("EXITED:0"), "{end}");
    assert_eq!(
        user_lines(&path),
        ["From the original", "After the takeover"]
    );
    assert!(!holder_file(&path).exists(), "removed by the last holder");
    let ratings = std::fs::read_to_string(&path).unwrap();
    assert!(!ratings.contains("\"type\":\"rating\""), "{ratings}");
}
