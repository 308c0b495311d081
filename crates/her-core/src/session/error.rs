//! Errors of the session module and the problems a load reports.

use crate::fsutil::IoError;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// An event that cannot be applied to a session (or an op that cannot be
/// turned into one). Keys are the nodes' stable keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("unknown node '{0}'")]
    UnknownNode(usize),
    #[error("unknown key '{0}'")]
    UnknownKey(String),
    #[error("key '{0}' is already used by another message")]
    DuplicateKey(String),
    #[error("'{child}' is not a child of '{parent}'")]
    NotAChild { parent: String, child: String },
    #[error("message '{0}' is deleted")]
    Deleted(String),
    #[error("the virtual root has no message and no alternatives")]
    Root,
    #[error("alternative '{index}' does not exist under '{parent}' (it has '{count}')")]
    NoSuchAlternative {
        parent: String,
        index: usize,
        count: usize,
    },
    #[error("a header can only be line 1 of a session file")]
    Header,
    #[error(
        "an extension event needs a JSON object whose 'type' is not a built-in type, got '{0}'"
    )]
    BadExtension(String),
}

/// Errors reading or writing session files and exports.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("'{}' line 1: not a session header: {reason}", path.display())]
    BadHeader { path: PathBuf, reason: String },
    #[error("'{}': event not written: {cause}", path.display())]
    Event { path: PathBuf, cause: TreeError },
    #[error("'{}' holds session '{file}', not session '{session}'", path.display())]
    WrongSession {
        path: PathBuf,
        file: String,
        session: String,
    },
    #[error(
        "session '{}' is already open for writing by {}",
        path.display(),
        super::lock::Holder::describe(holder.as_ref())
    )]
    Locked {
        path: PathBuf,
        holder: Option<super::lock::Holder>,
    },
    #[error("session '{}' is open read-only: {reason}; nothing was saved", path.display())]
    ReadOnly { path: PathBuf, reason: String },
    #[error("cannot encode as JSON: {0}")]
    Encode(serde_json::Error),
    #[error(transparent)]
    Read(#[from] crate::fsutil::read::ReadError),
}

impl SessionError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, cause: io::Error) -> Self {
        Self::Io(IoError::new(action, path.into(), cause))
    }
}

// By hand, not `#[from]`: the message already shows the cause, so it must not
// also be the `source()` (an error chain would print it twice).
impl From<serde_json::Error> for SessionError {
    fn from(cause: serde_json::Error) -> Self {
        Self::Encode(cause)
    }
}

/// A line of a session file that was skipped on load. The file is left as
/// it is; the UI shows these so nothing disappears silently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadIssue {
    /// 1-based line number in the file.
    pub line: usize,
    pub message: String,
}

impl LoadIssue {
    /// The issue stands for a line left out. Only the header can be read
    /// with a notice (a newer format version), and a bad header fails the load.
    pub fn skipped_a_line(&self) -> bool {
        self.line > 1
    }
}

impl fmt::Display for LoadIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}
