//! Forking a session: its story so far copied into a new session file that
//! the caller then writes alone, for when another window holds the original.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use serde_json::json;

use super::error::{LoadIssue, SessionError};
use super::event::SessionEvent;
use super::message::new_key;
use super::state::Session;
use super::store::{SessionFile, load_session};

/// The `type` of the event a fork ends with, naming where it came from.
pub const FORK_EVENT: &str = "forked_from";

/// Copies the session at `source` into a new file in `dir` and opens it for
/// writing (locked). Every line after the header is copied byte for byte,
/// except a last line still being written (no newline yet); then the fork
/// records its origin and is renamed "<title> (fork)". The source is only read.
pub fn fork_session(
    source: &Path,
    dir: &Path,
) -> Result<(SessionFile, Session, Vec<LoadIssue>), SessionError> {
    let (original, _) = load_session(source)?;
    let bytes = fs::read(source).map_err(|e| SessionError::io("read", source, e))?;
    let mut header = original.header().clone();
    header.id = new_key();
    header.created_at = super::now_rfc3339();
    let body = match memchr::memchr(b'\n', &bytes) {
        Some(end_of_header) => {
            let rest = &bytes[end_of_header + 1..];
            let complete = memchr::memrchr(b'\n', rest).map_or(0, |at| at + 1);
            &rest[..complete]
        }
        None => &[][..],
    };
    let (file, _) = SessionFile::create(dir, header)?;
    let path = file.path().to_path_buf();
    // Nobody knows the new name yet: the lock can go while the body is added.
    drop(file);
    let copied = OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(body).and_then(|()| f.sync_all()));
    if let Err(e) = copied {
        let _ = fs::remove_file(&path);
        return Err(SessionError::io("write", &path, e));
    }
    let (mut file, mut session, issues) = SessionFile::open(&path)?;
    let origin = json!({
        "type": FORK_EVENT,
        "session": original.id(),
        "file": source.file_name().map(|n| n.to_string_lossy().into_owned()),
        "created_at": super::now_rfc3339(),
    });
    file.commit(&mut session, SessionEvent::Other(origin))?;
    let title = format!("{} (fork)", session.title());
    let rename = session.rename_event(title);
    file.commit(&mut session, rename)?;
    Ok((file, session, issues))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::session::{Message, Role, SessionHeader};

    #[test]
    fn a_fork_has_the_whole_story_a_new_id_and_its_own_lock() {
        let dir = tempfile::tempdir().unwrap();
        let (mut file, mut session) =
            SessionFile::create(dir.path(), SessionHeader::new("At the ball")).unwrap();
        for (who, role, text) in [
            ("Elizabeth", Role::Character, "Good evening."),
            ("Darcy", Role::User, "Will you dance?"),
        ] {
            let event = session.tree().append_event(Message::new(who, role, text));
            file.commit(&mut session, event).unwrap();
        }
        // Half a line: the holder is writing it right now.
        let mut f = OpenOptions::new().append(true).open(file.path()).unwrap();
        f.write_all(b"{\"type\":\"mess").unwrap();

        let (mut fork, mut forked, issues) = fork_session(file.path(), dir.path()).unwrap();
        assert!(issues.is_empty(), "{issues:?}");
        assert_ne!(fork.path(), file.path());
        assert_ne!(forked.id(), session.id());
        assert_eq!(forked.title(), "At the ball (fork)");
        assert_eq!(forked.tree().active_path().len(), 2);
        let origin = &forked.other_events()[0].value;
        assert_eq!(origin["type"], FORK_EVENT);
        assert_eq!(origin["session"], session.id());
        // Both files are writable at once, each by its own holder.
        let event = forked.tree().append_event(Message::new(
            "Elizabeth",
            Role::Character,
            "Only in the fork.",
        ));
        fork.commit(&mut forked, event).unwrap();
        let (original, _) = load_session(file.path()).unwrap();
        assert_eq!(original.tree().active_path().len(), 2);
        assert!(matches!(
            SessionFile::open(fork.path()),
            Err(SessionError::Locked { .. })
        ));
    }
}
