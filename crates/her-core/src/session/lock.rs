//! One writer per session: whoever appends to a session file holds an OS
//! advisory lock (`flock`) on it. The kernel drops the lock when its holder
//! exits or is killed, so a lock can never go stale; a small hidden file
//! beside the session says who holds it, for the message a second opener
//! sees, and tells a new holder that the previous one died holding it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::SessionError;

/// Who holds (or held) a session's lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// RFC 3339, when the lock was taken.
    pub since: String,
}

impl Holder {
    fn this_process() -> Self {
        Self {
            pid: std::process::id(),
            host: host_name(),
            since: super::now_rfc3339(),
        }
    }

    /// "pid 4242 on studio-pc since 2026-01-02T10:00:00Z"
    pub fn describe(holder: Option<&Holder>) -> String {
        match holder {
            Some(h) => format!("pid {} on {} since {}", h.pid, h.host, h.since),
            None => "a process that did not say who it is".to_string(),
        }
    }
}

/// The lock on one session file; released (and its holder file removed)
/// when dropped.
#[derive(Debug)]
pub struct SessionLock {
    /// The holder file this process wrote, removed while still locked.
    owner_file: Option<PathBuf>,
    /// The holder recorded by a process that died holding the lock.
    taken_over: Option<Holder>,
    /// Declared last: dropped (closing the descriptor, which unlocks) after
    /// `Drop::drop` removed the holder file.
    _file: File,
}

impl SessionLock {
    /// Locks `path` for writing, without waiting: another holder is
    /// [`SessionError::Locked`]. The session file must exist.
    pub fn acquire(path: &Path) -> Result<Self, SessionError> {
        // Only a regular file is locked and read: a FIFO, device or folder is
        // refused here, before anything waits on it.
        crate::fsutil::read::open_regular(path)?;
        // A read-only session file can still be locked (and then opened read-only).
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .or_else(|e| match e.kind() {
                ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => File::open(path),
                _ => Err(e),
            })
            .map_err(|e| SessionError::io("read", path, e))?;
        match try_lock(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                return Err(SessionError::Locked {
                    path: path.to_path_buf(),
                    holder: read_holder(path),
                });
            }
            Err(e) if is_unsupported(&e) => {
                // Some network file systems cannot lock: carry on unprotected.
                tracing::warn!(
                    "cannot lock '{}' ({e}); a second window could write to it too",
                    path.display()
                );
            }
            Err(e) => return Err(SessionError::io("lock", path, e)),
        }
        // The lock is ours: a holder file still there was left by a process
        // that ended without closing the session.
        let taken_over = read_holder(path);
        let owner = holder_file(path);
        let owner_file = match write_holder(&owner, &Holder::this_process()) {
            Ok(()) => Some(owner),
            Err(e) => {
                // A read-only folder: the lock holds anyway, unnamed.
                tracing::info!(
                    "cannot record the lock holder in '{}': {e}",
                    owner.display()
                );
                None
            }
        };
        Ok(Self {
            owner_file,
            taken_over,
            _file: file,
        })
    }

    /// The holder recorded by a process that died (or was killed) while it
    /// had this session open; its lock was released by the kernel.
    pub fn taken_over(&self) -> Option<&Holder> {
        self.taken_over.as_ref()
    }
}

impl Drop for SessionLock {
    fn drop(&mut self) {
        if let Some(path) = &self.owner_file {
            let _ = fs::remove_file(path);
        }
    }
}

/// `.NAME.lock` beside the session file `NAME`: hidden, so the session list
/// never shows it.
pub fn holder_file(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.lock"))
}

fn read_holder(path: &Path) -> Option<Holder> {
    let bytes = fs::read(holder_file(path)).ok()?;
    // Anything but a small JSON object is not ours: ignore it.
    if bytes.len() > 4096 {
        return None;
    }
    serde_json::from_slice(&bytes).ok()
}

/// Written whole (temporary file + rename), so a reader never sees half of it.
fn write_holder(path: &Path, holder: &Holder) -> io::Result<()> {
    let text = serde_json::to_string(holder).map_err(io::Error::other)?;
    let tmp = path.with_extension(format!("lock.{}", std::process::id()));
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

#[cfg(unix)]
fn try_lock(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock only reads the descriptor number, which `file` keeps open.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(unix))]
fn try_lock(_file: &File) -> io::Result<()> {
    Err(io::Error::from(ErrorKind::Unsupported))
}

fn is_unsupported(e: &io::Error) -> bool {
    if e.kind() == ErrorKind::Unsupported {
        return true;
    }
    #[cfg(unix)]
    if matches!(
        e.raw_os_error(),
        Some(libc::ENOLCK | libc::EOPNOTSUPP | libc::ENOSYS | libc::EBADF)
    ) {
        return true;
    }
    false
}

fn host_name() -> String {
    let name = fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_default();
    let name = name.trim();
    if name.is_empty() {
        "this machine".to_string()
    } else {
        name.to_string()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn session_file(dir: &Path) -> PathBuf {
        let path = dir.join("s.jsonl");
        fs::write(&path, "{}\n").unwrap();
        path
    }

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = session_file(dir.path());
        let first = SessionLock::acquire(&path).unwrap();
        assert!(first.taken_over().is_none());
        assert!(holder_file(&path).is_file());
        // Another descriptor, even in the same process, is another opener.
        let err = SessionLock::acquire(&path).unwrap_err();
        let SessionError::Locked { holder, .. } = &err else {
            panic!("expected Locked, got {err}");
        };
        assert_eq!(holder.as_ref().unwrap().pid, std::process::id());
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id()))
        );
        drop(first);
        assert!(
            !holder_file(&path).exists(),
            "the holder file goes with the lock"
        );
        let again = SessionLock::acquire(&path).unwrap();
        assert!(again.taken_over().is_none());
    }

    #[test]
    fn a_holder_file_left_behind_is_reported_as_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = session_file(dir.path());
        let dead = Holder {
            pid: 999_999,
            host: "elsewhere".into(),
            since: "2026-01-01T00:00:00Z".into(),
        };
        write_holder(&holder_file(&path), &dead).unwrap();
        let lock = SessionLock::acquire(&path).unwrap();
        assert_eq!(lock.taken_over(), Some(&dead));
        let now: Holder = serde_json::from_slice(&fs::read(holder_file(&path)).unwrap()).unwrap();
        assert_eq!(now.pid, std::process::id());
    }

    #[test]
    fn garbage_in_the_holder_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = session_file(dir.path());
        fs::write(holder_file(&path), vec![b'x'; 10_000]).unwrap();
        let first = SessionLock::acquire(&path).unwrap();
        assert!(first.taken_over().is_none());
        fs::write(holder_file(&path), "not json").unwrap();
        let SessionError::Locked { holder, .. } = SessionLock::acquire(&path).unwrap_err() else {
            panic!("expected Locked");
        };
        assert_eq!(holder, None);
    }

    #[test]
    fn a_missing_session_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = SessionLock::acquire(&dir.path().join("none.jsonl")).unwrap_err();
        assert!(
            err.to_string().starts_with("cannot read '") && err.to_string().contains("none.jsonl"),
            "{err}"
        );
    }
}
