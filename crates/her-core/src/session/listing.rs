//! The sessions folder: the list the UI shows, and the trash.

use std::fs;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use memchr::memmem;

use crate::fsutil::read::{self, Kind};

use super::error::SessionError;
use super::event::{SessionEvent, decode_line};
use super::store::{lines, sync_dir};

/// Where trashed sessions go, inside the sessions folder.
pub const TRASH_DIR: &str = ".trash";

/// One row of the session list.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSummary {
    pub path: PathBuf,
    /// The current title (after renames); the file name if the header is
    /// unreadable.
    pub title: String,
    pub character: Option<String>,
    pub scene: Option<String>,
    pub created_at: String,
    pub modified: SystemTime,
    /// `message` events in the file: every alternative, deleted ones included.
    pub messages: usize,
    /// Why the file cannot be opened, if it cannot (listed, not hidden).
    pub problem: Option<String>,
}

/// The sessions in `dir`, most recently modified first. Reads only the
/// header, renames and a byte count of message lines: no replay.
pub fn list_sessions(dir: &Path) -> Result<Vec<SessionSummary>, SessionError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(SessionError::io("list", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| SessionError::io("list", dir, e))?;
        let path = entry.path();
        let is_session = path.extension().is_some_and(|e| e == "jsonl")
            && !entry.file_name().to_string_lossy().starts_with('.')
            && entry.file_type().is_ok_and(|t| t.is_file());
        if is_session {
            out.push(summarize(&path));
        }
    }
    out.sort_by(|a, b| {
        b.modified
            .cmp(&a.modified)
            .then_with(|| b.created_at.cmp(&a.created_at))
            .then_with(|| a.path.cmp(&b.path))
    });
    Ok(out)
}

/// A file that cannot be read is listed with its problem, not left out.
fn summarize(path: &Path) -> SessionSummary {
    let bytes = read::bytes(path, Kind::Session);
    let modified = fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut summary = SessionSummary {
        path: path.to_path_buf(),
        title: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        character: None,
        scene: None,
        created_at: String::new(),
        modified,
        messages: 0,
        problem: None,
    };
    let bytes = match bytes {
        Ok(bytes) => bytes,
        Err(err) => {
            summary.problem = Some(err.to_string());
            return summary;
        }
    };
    // Our writer puts "type" first and writes no spaces, so a byte search
    // finds exactly the message lines.
    summary.messages = memmem::find_iter(&bytes, b"\n{\"type\":\"message\"").count();
    let first = lines(&bytes).next().map_or(&[][..], |(_, l)| l);
    let header = std::str::from_utf8(first)
        .map_err(|_| "not valid UTF-8".to_string())
        .and_then(decode_line);
    match header {
        Ok(SessionEvent::Header(h)) => {
            summary.title = last_rename(&bytes).unwrap_or(h.title);
            summary.character = h.character;
            summary.scene = h.scene;
            summary.created_at = h.created_at;
        }
        Ok(other) => {
            summary.problem = Some(format!(
                "line 1: not a session header: a '{}' event",
                other.type_name()
            ))
        }
        Err(reason) => summary.problem = Some(format!("line 1: not a session header: {reason}")),
    }
    summary
}

fn last_rename(bytes: &[u8]) -> Option<String> {
    let mut title = None;
    for at in memmem::find_iter(bytes, b"\n{\"type\":\"rename\"") {
        let line = &bytes[at + 1..];
        let line = memchr::memchr(b'\n', line).map_or(line, |end| &line[..end]);
        if let Ok(SessionEvent::Rename { title: t }) = std::str::from_utf8(line)
            .map_err(|e| e.to_string())
            .and_then(decode_line)
        {
            title = Some(t);
        }
    }
    title
}

/// Moves a session into `<its folder>/.trash/` (renamed `-1`, `-2`… if the
/// name is taken there); returns the new path. Nothing is deleted.
pub fn trash_session(path: &Path) -> Result<PathBuf, SessionError> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(SessionError::io(
            "move to trash",
            path,
            io::Error::new(ErrorKind::InvalidInput, "not a file path"),
        ));
    };
    let trash = dir.join(TRASH_DIR);
    fs::create_dir_all(&trash).map_err(|e| SessionError::io("create folder", &trash, e))?;
    let mut target = trash.join(name);
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut n = 1;
    while target.exists() {
        target = trash.join(format!("{stem}-{n}.jsonl"));
        n += 1;
    }
    fs::rename(path, &target).map_err(|e| SessionError::io("move to trash", path, e))?;
    sync_dir(&trash);
    sync_dir(dir);
    Ok(target)
}
