//! The runtime's half of session writes: the open session's file takes
//! the events `update` queued, one fsynced line each, in order.

use std::path::PathBuf;

use crate::tui::message::Msg;
use her_core::session::{SessionEvent, SessionFile};

/// Appends `events` to `file` when it is the file at `path` (the session
/// open in this window); stops at the first event that cannot be written.
pub fn append(file: Option<&mut SessionFile>, path: PathBuf, events: &[SessionEvent]) -> Msg {
    let Some(file) = file.filter(|f| f.path() == path) else {
        return Msg::WriteFailed {
            path,
            written: 0,
            error: "the session file is not open for writing in this window".into(),
        };
    };
    for (written, event) in events.iter().enumerate() {
        if let Err(err) = file.append(event) {
            return Msg::WriteFailed {
                path,
                written,
                error: err.to_string(),
            };
        }
    }
    Msg::Appended {
        path,
        count: events.len(),
    }
}
