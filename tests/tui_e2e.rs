//! The real `her` binary in a real terminal (tmux): pick a character, chat,
//! swipe, toggle panes, quit, reopen the session; and a crash test that
//! kills the process mid-reply.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(tag: &str) -> Self {
        Self {
            socket: format!("her-test-{tag}-{}", std::process::id()),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux is installed by scripts/setup.sh");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn start(&self, name: &str, command: &str) {
        self.run(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            "150",
            "-y",
            "32",
            command,
        ]);
    }

    fn capture(&self, name: &str) -> String {
        self.run(&["capture-pane", "-p", "-t", name])
    }

    fn keys(&self, name: &str, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", name];
        args.extend_from_slice(keys);
        self.run(&args);
        std::thread::sleep(Duration::from_millis(150));
    }

    fn wait_for(&self, name: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.capture(name);
            if pred(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}; screen:\n{screen}\nsessions: {}",
                self.run(&["list-sessions"])
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

fn studio() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("characters")).unwrap();
    std::fs::create_dir_all(dir.path().join("sessions")).unwrap();
    std::fs::copy(
        common::repo_root().join("characters/elizabeth-bennet.toml"),
        dir.path().join("characters/elizabeth-bennet.toml"),
    )
    .unwrap();
    dir
}

fn her_command(studio: &Path, model: &Path, max_tokens: u32, rest: &str) -> String {
    format!(
        "HOME={home} {bin} --studio {studio} --set log.file={studio}/her.log --set model.threads=2 --set sampling.max_new_tokens={max_tokens} --set model.path={model} {rest}; echo EXITED:$?; sleep 60",
        home = studio.display(),
        bin = env!("CARGO_BIN_EXE_her"),
        studio = studio.display(),
        model = model.display(),
    )
}

fn session_file(studio: &Path) -> PathBuf {
    std::fs::read_dir(studio.join("sessions"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .expect("a session file")
}

/// The transcript rows: everything above the composer box, without the title row.
fn transcript(screen: &str) -> Vec<String> {
    screen
        .lines()
        .skip(1)
        .take_while(|l| {
            !l.starts_with("┌message") && !l.starts_with("┌LLM") && !l.starts_with("┌editing")
        })
        .map(|l| l.split('│').next().unwrap_or("").trim_end().to_string())
        .collect()
}

fn idle(screen: &str) -> bool {
    screen.contains("┌message to Elizabeth Bennet")
}

#[test]
fn pick_chat_swipe_toggle_quit_and_reopen() {
    let t = common::tiny();
    let dir = studio();
    let tmux = Tmux::new("chat");
    // `her` alone opens the character picker.
    tmux.start("her", &her_command(dir.path(), &t.model, 12, ""));
    tmux.wait_for("her", "the character picker", |s| {
        s.contains("Choose a character")
    });
    tmux.keys("her", &["eliz"]);
    tmux.keys("her", &["Enter"]);
    tmux.wait_for("her", "the session picker", |s| s.contains("new session"));
    tmux.keys("her", &["Enter"]);
    tmux.wait_for("her", "the chat screen", idle);
    tmux.keys("her", &["Hello there", "Enter"]);
    let screen = tmux.wait_for("her", "the first reply", |s| {
        idle(s) && s.contains("Hello there")
    });
    assert!(screen.contains("Mr. Darcy"), "{screen}");
    // Swipe past the last alternative of the newest reply: a second one is written.
    tmux.keys("her", &["Escape"]);
    tmux.keys("her", &["Right"]);
    tmux.wait_for("her", "the second alternative", |s| {
        s.contains("‹2/2›") && !s.contains("writing…")
    });
    // Toggle both panes: plan pane -> inline, thoughts inline -> hidden.
    tmux.keys("her", &["F2"]);
    tmux.keys("her", &["F3"]);
    let before = tmux.wait_for("her", "the toggled panes", |s| {
        s.contains("character thinking: hidden") && !s.contains("┌LLM thinking")
    });
    tmux.keys("her", &["q"]);
    tmux.wait_for("her", "a clean exit", |s| s.contains("EXITED:0"));

    // Reopen: the same branch, the same pane choices, the same transcript.
    let file = session_file(dir.path());
    tmux.start(
        "again",
        &her_command(
            dir.path(),
            &t.model,
            12,
            &format!("chat --session {}", file.display()),
        ),
    );
    let after = tmux.wait_for("again", "the reopened session", |s| {
        idle(s) && s.contains("Hello there")
    });
    assert!(after.contains("plan inline · thoughts hidden"), "{after}");
    assert_eq!(
        transcript(&before),
        transcript(&after),
        "before:\n{before}\nafter:\n{after}"
    );
    tmux.keys("again", &["C-q"]);
    tmux.wait_for("again", "a clean exit", |s| s.contains("EXITED:0"));
}

/// The `her` process (not the shell around it) serving this studio.
fn her_pid(studio: &Path) -> Option<u32> {
    let bin = std::fs::canonicalize(env!("CARGO_BIN_EXE_her")).ok()?;
    let needle = studio.display().to_string();
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .find_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let exe = std::fs::read_link(e.path().join("exe")).ok()?;
            let cmdline = std::fs::read_to_string(e.path().join("cmdline")).ok()?;
            (exe == bin && cmdline.contains(&needle)).then_some(pid)
        })
}

#[test]
fn sigkill_while_a_reply_streams_loses_only_that_reply() {
    let model = common::smollm2();
    let dir = studio();
    let tmux = Tmux::new("crash");
    tmux.start(
        "her",
        &her_command(
            dir.path(),
            &model,
            2000,
            "chat --character elizabeth-bennet",
        ),
    );
    tmux.wait_for("her", "the chat screen", idle);
    tmux.keys(
        "her",
        &["Tell me a very long story about Netherfield.", "Enter"],
    );
    tmux.wait_for("her", "the reply to stream", |s| {
        s.contains("writing…") && s.contains("ctx ")
    });
    std::thread::sleep(Duration::from_millis(800));
    let pid = her_pid(dir.path()).expect("her is running");
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    tmux.wait_for("her", "the killed process", |s| s.contains("EXITED:137"));

    let file = session_file(dir.path());
    let (session, issues) = her_studio::session::load_session(&file).unwrap();
    assert!(issues.is_empty(), "{issues:?}");
    let texts: Vec<String> = session
        .tree()
        .active_path()
        .into_iter()
        .map(|id| session.tree().node(id).unwrap().message.text.clone())
        .collect();
    assert_eq!(texts.len(), 2, "greeting and the user's message: {texts:?}");
    assert_eq!(texts[1], "Tell me a very long story about Netherfield.");
    // The TUI reopens it and shows both.
    tmux.start(
        "again",
        &her_command(
            dir.path(),
            &model,
            8,
            &format!("chat --session {}", file.display()),
        ),
    );
    let screen = tmux.wait_for("again", "the reopened session", |s| {
        idle(s) && s.contains("Netherfield")
    });
    assert!(screen.contains("Mr. Darcy"), "{screen}");
    tmux.keys("again", &["C-q"]);
}
