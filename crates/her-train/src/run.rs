//! A run folder: the settings and data hashes that made it, a metrics log
//! (one JSON line per step and per evaluation), checkpoints and the adapter
//! in both formats.
//!
//! ```text
//! runs/2026-11-25-elizabeth-sft/
//!   run.json            settings, model fingerprint, data files and sample hashes
//!   metrics.jsonl       {"kind":"step",...} / {"kind":"eval",...}, appended
//!   checkpoints/step-000050/
//!   adapter.gguf        for llama.cpp (`/adapter runs/…/adapter.gguf`)
//!   peft/               adapter_model.safetensors + adapter_config.json
//! ```

use her_core::fsutil::IoError;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use her_core::fsutil::read::{self, Kind, ReadError};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("cannot encode: {0}")]
    Encode(serde_json::Error),
}

// By hand, not `#[from]`: the message already shows the cause, so it must
// not also be the `source()` (an error chain would print it twice).
impl From<serde_json::Error> for RunError {
    fn from(cause: serde_json::Error) -> Self {
        Self::Encode(cause)
    }
}

pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    pub fn create(root: &Path) -> Result<Self, RunError> {
        std::fs::create_dir_all(root).map_err(IoError::at("create", root))?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    pub fn adapter_gguf(&self) -> PathBuf {
        self.root.join("adapter.gguf")
    }

    pub fn peft_dir(&self) -> PathBuf {
        self.root.join("peft")
    }

    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }

    /// Writes `run.json` (atomically).
    pub fn write_manifest(&self, manifest: &impl Serialize) -> Result<(), RunError> {
        let path = self.root.join("run.json");
        let json = serde_json::to_vec_pretty(manifest)?;
        her_core::fsutil::write_atomic(&path, &json, true)
            .map_err(|cause| RunError::Io(IoError::new("write", path, cause)))
    }

    /// Appends one line to `metrics.jsonl` and syncs it.
    pub fn log(&self, line: &impl Serialize) -> Result<(), RunError> {
        append_jsonl(&self.metrics(), line)
    }

    /// Drops the metric lines written after the checkpoint at `step` was
    /// saved, which a resumed run writes again: the later steps, the export
    /// line and, when `step` ends the run (`finished`), the final evaluation,
    /// logged after the final checkpoint. Resuming a finished run twice
    /// leaves the file as it was.
    pub fn truncate_metrics(&self, step: u64, finished: bool) -> Result<(), RunError> {
        retain_jsonl(&self.metrics(), |line| match step_of(line) {
            Some(s) if s < step => true,
            Some(s) if s == step => match line.get("kind").and_then(|k| k.as_str()) {
                Some("export") => false,
                Some("eval") => !finished,
                _ => true,
            },
            _ => false,
        })
    }
}

/// Appends one JSON line to `path` and syncs it (a killed run loses at most
/// the line being written).
pub fn append_jsonl(path: &Path, line: &impl Serialize) -> Result<(), RunError> {
    let mut text = serde_json::to_string(line)?;
    text.push('\n');
    let io = |cause| RunError::Io(IoError::new("append to", path.to_path_buf(), cause));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_data())
        .map_err(io)
}

/// Keeps only the lines of `path` whose `"step"` is at most `step`
/// (atomically rewritten; a missing file is fine).
pub fn truncate_jsonl(path: &Path, step: u64) -> Result<(), RunError> {
    retain_jsonl(path, |line| step_of(line).is_some_and(|s| s <= step))
}

fn step_of(line: &serde_json::Value) -> Option<u64> {
    line.get("step").and_then(serde_json::Value::as_u64)
}

/// Rewrites `path` (atomically) with the JSON lines `keep` accepts, byte
/// for byte; lines that are not JSON go. A missing file is fine.
fn retain_jsonl(path: &Path, keep: impl Fn(&serde_json::Value) -> bool) -> Result<(), RunError> {
    let text = match read::optional_text(path, Kind::RunRecord)? {
        Some(text) => text,
        None => return Ok(()),
    };
    let kept: String = text
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| keep(&v)))
        .map(|l| format!("{l}\n"))
        .collect();
    her_core::fsutil::write_atomic(path, kept.as_bytes(), true)
        .map_err(|cause| RunError::Io(IoError::new("rewrite", path.to_path_buf(), cause)))
}

/// Resident and peak memory of this process in MiB (Linux; 0 elsewhere).
pub fn memory_mib() -> (f64, f64) {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return (0.0, 0.0);
    };
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// "1h02m", "3m10s", "42s".
pub fn eta(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

/// The progress line printed (over itself) while training.
pub fn progress_line(
    step: u64,
    total: u64,
    loss: f64,
    tokens_per_s: f64,
    eta_s: f64,
    rss: f64,
) -> String {
    const WIDTH: usize = 24;
    let done = if total == 0 {
        WIDTH
    } else {
        (step as usize * WIDTH / total as usize).min(WIDTH)
    };
    format!(
        "step {step}/{total} ▕{}{}▏ loss {loss:.4} · {tokens_per_s:.0} tok/s · ETA {} · {:.0} MiB",
        "█".repeat(done),
        "░".repeat(WIDTH - done),
        eta(eta_s),
        rss
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn metrics_append_and_truncate_for_a_resume() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(&dir.path().join("r")).unwrap();
        for step in 1..=5u64 {
            run.log(&serde_json::json!({"kind": "step", "step": step}))
                .unwrap();
        }
        run.truncate_metrics(3, false).unwrap();
        let text = std::fs::read_to_string(run.metrics()).unwrap();
        assert_eq!(text.lines().count(), 3);
    }

    #[test]
    fn resuming_a_finished_run_drops_only_its_final_eval() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(&dir.path().join("r")).unwrap();
        let lines = [
            serde_json::json!({"kind": "eval", "step": 0, "eval_loss": 2.0}),
            serde_json::json!({"kind": "step", "step": 1}),
            serde_json::json!({"kind": "eval", "step": 1, "eval_loss": 1.5}),
            serde_json::json!({"kind": "step", "step": 2}),
            serde_json::json!({"kind": "eval", "step": 2, "eval_loss": 1.0}),
        ];
        for line in &lines {
            run.log(line).unwrap();
        }
        let whole = std::fs::read_to_string(run.metrics()).unwrap();
        // Stopped at step 1: the eval at 1 came before its checkpoint and stays.
        run.truncate_metrics(1, false).unwrap();
        let text = std::fs::read_to_string(run.metrics()).unwrap();
        assert_eq!(text.lines().count(), 3);
        for line in &lines[3..] {
            run.log(line).unwrap();
        }
        // Finished at 2: the final eval is written again after the resume.
        run.truncate_metrics(2, true).unwrap();
        let text = std::fs::read_to_string(run.metrics()).unwrap();
        assert_eq!(text.lines().count(), 4);
        run.log(&lines[4]).unwrap();
        assert_eq!(std::fs::read_to_string(run.metrics()).unwrap(), whole);
    }

    #[test]
    fn progress_and_eta_read_well() {
        assert_eq!(eta(42.4), "42s");
        assert_eq!(eta(190.0), "3m10s");
        assert_eq!(eta(3720.0), "1h02m");
        let line = progress_line(6, 24, 1.23456, 88.0, 190.0, 1024.0);
        assert_eq!(
            line,
            "step 6/24 ▕██████░░░░░░░░░░░░░░░░░░▏ loss 1.2346 · 88 tok/s · ETA 3m10s · 1024 MiB"
        );
    }
}
