//! Sessions: a branch tree of messages (swipes, edits and continuations are
//! sibling alternatives), stored as an append-only JSONL event log, and
//! exports of the active branch.
//!
//! Every change is a [`SessionEvent`]: ops build one, `SessionFile::commit`
//! writes it (fsynced) and then applies it, and opening a file replays the
//! same events, so the tree on disk and in memory cannot disagree.

mod error;
mod event;
mod export;
mod fork;
mod listing;
mod lock;
mod message;
mod ops;
mod replay;
mod state;
mod store;
#[cfg(test)]
mod tests;
mod tree;

pub use error::{LoadIssue, SessionError, TreeError};
pub use event::{FORMAT_VERSION, KNOWN_TYPES, SessionEvent, SessionHeader, decode_line};
pub use export::{
    ExportFormat, ExportOptions, export, to_markdown, to_plain_text, to_sillytavern, write_atomic,
};
pub use fork::{FORK_EVENT, fork_session};
pub use listing::{SessionSummary, TRASH_DIR, list_sessions, trash_session};
pub use lock::{Holder, SessionLock, holder_file};
pub use message::{Message, MessageMeta, Role, new_key, now_rfc3339};
pub use state::{OtherEvent, Session};
pub use store::{SessionFile, load_session, slug};
pub use tree::{BranchTree, Node, NodeId, TreeRow, UNREADABLE_SPEAKER, UNREADABLE_TEXT};
