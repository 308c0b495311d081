//! Tests of the session module: tree ops, the event log, exports and a
//! replay property.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod export_tests;
mod prop_tests;
mod replay_tests;
mod store_tests;
mod tree_tests;

use std::path::Path;

use super::*;

/// A fixed time, so exports can be compared with golden strings.
pub(super) const AT: &str = "2024-05-01T14:03:07.000Z";

pub(super) fn msg(speaker: &str, role: Role, text: &str) -> Message {
    Message {
        created_at: AT.to_string(),
        ..Message::new(speaker, role, text)
    }
}

pub(super) fn header(title: &str) -> SessionHeader {
    SessionHeader {
        character: Some("Elizabeth".to_string()),
        created_at: AT.to_string(),
        ..SessionHeader::new(title)
    }
}

/// Applies the event `build` makes in memory, which must succeed; returns
/// the new node.
pub(super) fn apply(
    session: &mut Session,
    build: impl FnOnce(&BranchTree) -> SessionEvent,
) -> Option<NodeId> {
    let event = build(session.tree());
    session.apply(&event).unwrap()
}

pub(super) fn create(dir: &Path, title: &str) -> (SessionFile, Session) {
    SessionFile::create(dir, header(title)).unwrap()
}

/// Commits the event `build` makes, which must succeed; returns the new
/// node (the root for events that create none).
pub(super) fn commit(
    file: &mut SessionFile,
    session: &mut Session,
    build: impl FnOnce(&Session) -> SessionEvent,
) -> NodeId {
    file.commit_with(session, |s| Ok(build(s)))
        .unwrap()
        .unwrap_or(NodeId::ROOT)
}
