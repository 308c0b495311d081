//! $EDITOR: the one effect that suspends the terminal.

use std::path::PathBuf;

use crate::tui::terminal::{self, TerminalGuard};

/// Suspends the TUI, edits `text` in $VISUAL/$EDITOR, and comes back.
pub fn edit_externally(guard: &mut TerminalGuard, text: &str) -> std::io::Result<String> {
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    let path: PathBuf = std::env::temp_dir().join(format!("her-message-{}.md", std::process::id()));
    std::fs::write(&path, text)?;
    terminal::restore();
    let mut parts = editor.split_whitespace();
    let program = parts.next().unwrap_or("vi");
    let status = std::process::Command::new(program)
        .args(parts)
        .arg(&path)
        .status();
    let back = terminal::reenter();
    guard.terminal.clear()?;
    back?;
    let status = status?;
    let edited = her_core::fsutil::read::text(&path, her_core::fsutil::read::Kind::Text)
        .map_err(|e| std::io::Error::other(e.to_string()));
    let _ = std::fs::remove_file(&path);
    let edited = edited?;
    if status.success() {
        Ok(edited)
    } else {
        Err(std::io::Error::other(format!(
            "'{editor}' exited with {status}"
        )))
    }
}
