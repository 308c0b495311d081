//! One session = one append-only JSONL file. Every change is one line,
//! written and fsynced before it is applied in memory; nothing is ever
//! rewritten, so a crash costs at most the line being written. Reading a
//! file back is `replay.rs`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};

use time::OffsetDateTime;
use time::macros::format_description;

use crate::fsutil::read::{self, Kind};

use super::error::{LoadIssue, SessionError, TreeError};
use super::event::{SessionEvent, SessionHeader};
use super::lock::{Holder, SessionLock};
use super::replay::{Replayed, replay_file};
use super::state::Session;
use super::tree::NodeId;

/// An open session file, positioned for appending; the only writer of it
/// (see [`SessionLock`]) while it is open.
#[derive(Debug)]
pub struct SessionFile {
    path: PathBuf,
    file: File,
    lock: SessionLock,
    session_id: String,
    /// Number of '\n' bytes in the file.
    newlines: usize,
    /// The file ends with a line without '\n' (cut off by a crash).
    partial_tail: bool,
    /// A write failed part-way: recount before the next one.
    stale: bool,
}

impl SessionFile {
    /// Creates `<dir>/YYYYMMDD-HHMMSS-<slug>-<4 hex>.jsonl` with the header
    /// on line 1 (fsynced, like every later line).
    pub fn create(dir: &Path, header: SessionHeader) -> Result<(Self, Session), SessionError> {
        fs::create_dir_all(dir).map_err(|e| SessionError::io("create folder", dir, e))?;
        let line = serde_json::to_string(&SessionEvent::Header(header.clone()))?;
        let stamp = OffsetDateTime::now_utc()
            .format(format_description!(
                "[year][month][day]-[hour][minute][second]"
            ))
            .unwrap_or_default();
        let slug = [
            header.title.as_str(),
            header.character.as_deref().unwrap_or(""),
        ]
        .into_iter()
        .map(slug)
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "session".to_string());
        let (path, mut file) = create_unique(dir, |hex| format!("{stamp}-{slug}-{hex}.jsonl"))?;
        let written = file
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| SessionError::io("write", &path, e))
            .and_then(|()| SessionLock::acquire(&path));
        let lock = match written {
            Ok(lock) => lock,
            Err(e) => {
                // Our own fresh file, holding nothing of value yet.
                let _ = fs::remove_file(&path);
                return Err(e);
            }
        };
        sync_dir(dir);
        let session = Session::new(header);
        Ok((
            Self {
                path,
                file,
                lock,
                session_id: session.id().to_string(),
                newlines: 1,
                partial_tail: false,
                stale: false,
            },
            session,
        ))
    }

    /// Replays a session file. Unusable lines are skipped and reported; only
    /// a missing or invalid header fails. The file is not modified. Another
    /// writer holding it is [`SessionError::Locked`] (read it with
    /// [`load_session`] instead, or [`SessionFile::fork`] it).
    pub fn open(path: &Path) -> Result<(Self, Session, Vec<LoadIssue>), SessionError> {
        // Locked before reading: nobody appends between our read and our first write.
        let lock = SessionLock::acquire(path)?;
        let Replayed {
            session,
            issues,
            newlines,
            partial_tail,
        } = replay_file(path)?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| SessionError::io("open for appending", path, e))?;
        Ok((
            Self {
                path: path.to_path_buf(),
                file,
                lock,
                session_id: session.id().to_string(),
                newlines,
                partial_tail,
                stale: false,
            },
            session,
            issues,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Who had this session open when they died (or were killed): their
    /// lock was released by the kernel and is now ours.
    pub fn taken_over(&self) -> Option<&Holder> {
        self.lock.taken_over()
    }

    /// Writes one event as one line and fsyncs it; returns its line number.
    /// This does not check the event against the session: prefer
    /// [`SessionFile::commit`], which does and applies it too.
    pub fn append(&mut self, event: &SessionEvent) -> Result<usize, SessionError> {
        if matches!(event, SessionEvent::Header(_)) {
            return Err(SessionError::Event {
                path: self.path.clone(),
                cause: TreeError::Header,
            });
        }
        if self.stale {
            (self.newlines, self.partial_tail) = line_state(&self.path)?;
            self.stale = false;
        }
        let mut buf = Vec::with_capacity(256);
        if self.partial_tail {
            // End the cut-off line so ours stays parseable on its own.
            buf.push(b'\n');
        }
        serde_json::to_writer(&mut buf, event)?;
        buf.push(b'\n');
        let line = self.newlines + usize::from(self.partial_tail) + 1;
        let written = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Part of the line may have reached the disk.
            self.stale = true;
            return Err(SessionError::io("append to", &self.path, e));
        }
        self.newlines = line;
        self.partial_tail = false;
        Ok(line)
    }

    /// Checks `event` against `session`, appends it, and only then applies
    /// it: if the write fails (disk full) memory still matches the file.
    /// Returns the node a `message` event created.
    pub fn commit(
        &mut self,
        session: &mut Session,
        event: SessionEvent,
    ) -> Result<Option<NodeId>, SessionError> {
        if session.id() != self.session_id {
            return Err(SessionError::WrongSession {
                path: self.path.clone(),
                file: self.session_id.clone(),
                session: session.id().to_string(),
            });
        }
        let path = &self.path;
        let to_error = |cause| SessionError::Event {
            path: path.clone(),
            cause,
        };
        session.check(&event).map_err(to_error)?;
        let line = self.append(&event)?;
        session
            .apply_at(&event, line)
            .map_err(|cause| SessionError::Event {
                path: self.path.clone(),
                cause,
            })
    }

    /// Builds an event from the session and commits it: the usual way to
    /// run an op, e.g. `file.commit_with(&mut s, |s| s.tree().swipe_event(n, m))`.
    pub fn commit_with(
        &mut self,
        session: &mut Session,
        build: impl FnOnce(&Session) -> Result<SessionEvent, TreeError>,
    ) -> Result<Option<NodeId>, SessionError> {
        let event = build(session).map_err(|cause| SessionError::Event {
            path: self.path.clone(),
            cause,
        })?;
        self.commit(session, event)
    }

    /// Commits events one by one (e.g. the selections of a jump); stops at
    /// the first failure, with everything before it written and applied.
    pub fn commit_all(
        &mut self,
        session: &mut Session,
        events: impl IntoIterator<Item = SessionEvent>,
    ) -> Result<(), SessionError> {
        for event in events {
            self.commit(session, event)?;
        }
        Ok(())
    }
}

/// Loads a session without keeping the file open (exports, ratings).
pub fn load_session(path: &Path) -> Result<(Session, Vec<LoadIssue>), SessionError> {
    let replayed = replay_file(path)?;
    Ok((replayed.session, replayed.issues))
}

/// Lines with their 1-based numbers; a final piece without '\n' is a line.
pub(super) struct Lines<'a> {
    rest: &'a [u8],
    number: usize,
}

pub(super) fn lines(bytes: &[u8]) -> std::iter::Peekable<Lines<'_>> {
    Lines {
        rest: bytes,
        number: 0,
    }
    .peekable()
}

impl<'a> Iterator for Lines<'a> {
    type Item = (usize, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        self.number += 1;
        let (line, rest) = match memchr::memchr(b'\n', self.rest) {
            Some(at) => (&self.rest[..at], &self.rest[at + 1..]),
            None => (self.rest, &[][..]),
        };
        self.rest = rest;
        Some((self.number, line))
    }
}

/// ('\n' count, whether the file ends inside a line), read line by line.
fn line_state(path: &Path) -> Result<(usize, bool), SessionError> {
    let (mut newlines, mut partial) = (0, false);
    for line in read::lines(path, Kind::Session)? {
        let line = line?;
        newlines += usize::from(line.terminated);
        partial = !line.terminated;
    }
    Ok((newlines, partial))
}

/// The file-name part made of a title: lowercase ASCII letters, digits and
/// single '-', at most 40 characters.
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if out.len() >= 40 {
            break;
        }
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// Creates a new file whose name `name(hex)` does not exist yet.
fn create_unique(
    dir: &Path,
    name: impl Fn(&str) -> String,
) -> Result<(PathBuf, File), SessionError> {
    let mut last = None;
    for _ in 0..32 {
        let bytes = uuid::Uuid::new_v4().into_bytes();
        let hex = format!("{:02x}{:02x}", bytes[0], bytes[1]);
        let path = dir.join(name(&hex));
        match OpenOptions::new().append(true).create_new(true).open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => last = Some(path),
            Err(e) => return Err(SessionError::io("create", path, e)),
        }
    }
    let path = last.unwrap_or_else(|| dir.to_path_buf());
    Err(SessionError::io(
        "create",
        path,
        io::Error::new(ErrorKind::AlreadyExists, "no free file name"),
    ))
}

/// Makes a new or renamed directory entry durable. Best effort: some
/// platforms cannot open a directory, and the data itself is already synced.
pub(crate) fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
impl SessionFile {
    /// Swaps the append handle, so a test can simulate a full disk.
    pub(crate) fn swap_handle(&mut self, file: File) -> File {
        std::mem::replace(&mut self.file, file)
    }
}
