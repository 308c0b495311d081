//! A session in memory: header, current title, branch tree and the events
//! this version does not understand.

use serde_json::Value;

use super::error::TreeError;
use super::event::{KNOWN_TYPES, SessionEvent, SessionHeader};
use super::tree::{BranchTree, NodeId};

/// An event of a type this version does not know, kept for the modules that
/// do (ratings read `rating` events from here).
#[derive(Debug, Clone, PartialEq)]
pub struct OtherEvent {
    /// 1-based line in the session file; 0 if it was never written.
    pub line: usize,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    header: SessionHeader,
    title: String,
    tree: BranchTree,
    other: Vec<OtherEvent>,
}

impl Session {
    /// An empty session (nothing but its header).
    pub fn new(header: SessionHeader) -> Self {
        Self {
            title: header.title.clone(),
            header,
            tree: BranchTree::new(),
            other: Vec::new(),
        }
    }

    /// The header as written on line 1 (its title is the original one).
    pub fn header(&self) -> &SessionHeader {
        &self.header
    }

    pub fn id(&self) -> &str {
        &self.header.id
    }

    /// The current title (the header's, or the last rename).
    pub fn title(&self) -> &str {
        &self.title
    }

    pub fn tree(&self) -> &BranchTree {
        &self.tree
    }

    /// Unknown events in file order.
    pub fn other_events(&self) -> &[OtherEvent] {
        &self.other
    }

    pub fn rename_event(&self, title: impl Into<String>) -> SessionEvent {
        SessionEvent::Rename {
            title: title.into(),
        }
    }

    /// Checks that `event` would apply, without changing anything.
    pub fn check(&self, event: &SessionEvent) -> Result<(), TreeError> {
        if let SessionEvent::Other(value) = event {
            check_extension(value)?;
        }
        self.tree.check(event)
    }

    /// Applies an event in memory only (no file): for tests and previews.
    /// To keep a session, use `SessionFile::commit`.
    pub fn apply(&mut self, event: &SessionEvent) -> Result<Option<NodeId>, TreeError> {
        self.apply_at(event, 0)
    }

    /// Applies an event read from (or written to) line `line`.
    pub(crate) fn apply_at(
        &mut self,
        event: &SessionEvent,
        line: usize,
    ) -> Result<Option<NodeId>, TreeError> {
        self.check(event)?;
        match event {
            SessionEvent::Rename { title } => {
                self.title = title.clone();
                Ok(None)
            }
            SessionEvent::Other(value) => {
                self.other.push(OtherEvent {
                    line,
                    value: value.clone(),
                });
                Ok(None)
            }
            _ => self.tree.apply(event),
        }
    }
}

impl Session {
    /// Adds a placeholder for the unreadable message `key` under `parent`
    /// (replay only: placeholders are never written to the file).
    pub(crate) fn insert_placeholder(&mut self, key: &str, parent: NodeId, line: usize) -> NodeId {
        self.tree.insert_placeholder(key, parent, line)
    }
}

/// An extension event must read back as one: an object whose `type` is a
/// string that is not a built-in type.
fn check_extension(value: &Value) -> Result<(), TreeError> {
    match value.get("type").and_then(Value::as_str) {
        Some(kind) if !KNOWN_TYPES.contains(&kind) => Ok(()),
        Some(kind) => Err(TreeError::BadExtension(kind.to_string())),
        None => Err(TreeError::BadExtension(
            "(no string 'type' field)".to_string(),
        )),
    }
}
