//! The real `her` binary in a real terminal (tmux), for the end-to-end
//! tests: a tmux server per test, a studio folder per test, and the `her`
//! command lines they run.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Tmux {
    socket: String,
}

impl Tmux {
    pub fn new(tag: &str) -> Self {
        Self {
            socket: format!("her-test-{tag}-{}", std::process::id()),
        }
    }

    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux is installed by scripts/setup.sh");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn start(&self, name: &str, command: &str) {
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

    pub fn capture(&self, name: &str) -> String {
        self.run(&["capture-pane", "-p", "-t", name])
    }

    pub fn keys(&self, name: &str, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", name];
        args.extend_from_slice(keys);
        self.run(&args);
        std::thread::sleep(Duration::from_millis(150));
    }

    /// Quits `her` in window `name` (ctrl+q); the screen with its exit status.
    pub fn quit(&self, name: &str) -> String {
        self.keys(name, &["C-q"]);
        self.wait_for(name, "the exit", |s| s.contains("EXITED:"))
    }

    pub fn wait_for(&self, name: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
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

pub fn studio() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("characters")).unwrap();
    std::fs::create_dir_all(dir.path().join("sessions")).unwrap();
    std::fs::copy(
        super::repo_root().join("characters/elizabeth-bennet.toml"),
        dir.path().join("characters/elizabeth-bennet.toml"),
    )
    .unwrap();
    dir
}

pub fn her_command(studio: &Path, model: &Path, max_tokens: u32, rest: &str) -> String {
    her_command_as("", studio, model, max_tokens, rest)
}

/// `her_command` with a prefix before the binary (e.g. [`without_root_override`]).
pub fn her_command_as(
    prefix: &str,
    studio: &Path,
    model: &Path,
    max_tokens: u32,
    rest: &str,
) -> String {
    format!(
        "HOME={home} {prefix}{bin} --studio {studio} --set log.file={studio}/her.log --set model.threads=2 --set sampling.max_new_tokens={max_tokens} --set model.path={model} {rest}; echo EXITED:$?; sleep 60",
        home = studio.display(),
        bin = super::her_bin().display(),
        studio = studio.display(),
        model = model.display(),
    )
}

pub fn session_file(studio: &Path) -> PathBuf {
    std::fs::read_dir(studio.join("sessions"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .expect("a session file")
}

pub fn idle(screen: &str) -> bool {
    screen.contains("┌message to Elizabeth Bennet")
}

/// The `her` process (not the shell around it) serving this studio.
pub fn her_pid(studio: &Path) -> Option<u32> {
    her_pids(studio).into_iter().next()
}

/// Every `her` process serving this studio, oldest first.
pub fn her_pids(studio: &Path) -> Vec<u32> {
    let Ok(bin) = std::fs::canonicalize(super::her_bin()) else {
        return Vec::new();
    };
    let needle = studio.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let exe = std::fs::read_link(e.path().join("exe")).ok()?;
            let cmdline = std::fs::read_to_string(e.path().join("cmdline")).ok()?;
            (exe == bin && cmdline.contains(&needle)).then_some(pid)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Waits until a `her` process not in `known` serves this studio.
pub fn new_her_pid(studio: &Path, known: &[u32]) -> u32 {
    let start = Instant::now();
    loop {
        if let Some(pid) = her_pids(studio).into_iter().find(|p| !known.contains(p)) {
            return pid;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no new her process"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Root ignores file permissions; a test of a read-only folder or file runs
/// `her` without that power (setpriv drops CAP_DAC_OVERRIDE and friends).
pub fn without_root_override() -> &'static str {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap_or("");
    if euid == "0" {
        assert!(
            Command::new("setpriv").arg("--version").output().is_ok(),
            "running as root: setpriv (util-linux) is needed to test permission errors"
        );
        "setpriv --bounding-set=-dac_override,-dac_read_search,-fowner -- "
    } else {
        ""
    }
}

/// Runs `her` to completion with the studio and model of a test.
pub fn her_cli(studio: &Path, model: &Path, args: &[&str]) -> std::process::Output {
    Command::new(super::her_bin())
        .env("HOME", studio)
        .arg("--studio")
        .arg(studio)
        .arg("--set")
        .arg(format!("log.file={}/her.log", studio.display()))
        .arg("--set")
        .arg(format!("model.path={}", model.display()))
        .args(args)
        .output()
        .unwrap()
}
