//! Logging to a file: the terminal belongs to the chat, so nothing is logged there.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

/// Sends `tracing` (and through it llama.cpp's logs) to `file`. `level` is a
/// tracing filter such as "info"; `HER_LOG` overrides it. Returns the file
/// used, or an error text when it cannot be opened (then nothing is logged).
pub fn init(file: &Path, level: &str) -> Result<PathBuf, String> {
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create log folder '{}': {e}", parent.display()))?;
    }
    let handle = OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .map_err(|e| format!("cannot open log file '{}': {e}", file.display()))?;
    let filter = std::env::var("HER_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(Mutex::new(handle))
        .try_init()
        .map_err(|e| format!("logging already set up: {e}"))?;
    Ok(file.to_path_buf())
}
