//! The one I/O error every crate reports: what it was doing, on which path,
//! and what the OS said, so a message always names the file.

use std::io;
use std::path::PathBuf;

/// `cannot ACTION 'PATH': CAUSE`. The cause is part of the message (and not
/// a `source`) so chains printed with `{:#}` do not repeat it.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} '{}': {cause}", path.display())]
pub struct IoError {
    pub action: &'static str,
    pub path: PathBuf,
    pub cause: io::Error,
}

impl IoError {
    pub fn new(action: &'static str, path: impl Into<PathBuf>, cause: io::Error) -> Self {
        Self {
            action,
            path: path.into(),
            cause,
        }
    }

    /// For `map_err`: `fs::create_dir_all(dir).map_err(IoError::at("create", dir))?`.
    pub fn at(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |cause| Self::new(action, path, cause)
    }

    pub fn kind(&self) -> io::ErrorKind {
        self.cause.kind()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_action_path_and_cause() {
        let err = IoError::new(
            "write",
            "/tmp/x.toml",
            io::Error::new(io::ErrorKind::PermissionDenied, "denied"),
        );
        assert_eq!(err.to_string(), "cannot write '/tmp/x.toml': denied");
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
    }
}
