//! The app's test fixtures: the `her` binary under test, tmux, and
//! her-testkit's models (the tiny Qwen3 written once per test binary under
//! target/, the real SmolLM2 that the README's test command fetches).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

pub mod tmux;

/// The `her` binary under test: this build's, or `TEST_HER_BIN` (to run
/// the end-to-end checks against another build, e.g. the code before a fix).
pub fn her_bin() -> PathBuf {
    std::env::var_os("TEST_HER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_her")))
}

pub use her_testkit::*;

pub fn tiny() -> &'static Tiny {
    tiny_in(Path::new(env!("CARGO_TARGET_TMPDIR")))
}

/// Runs `cmd` with `input` on its stdin (then closed), collecting the output.
pub fn fed(cmd: &mut std::process::Command, input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}
