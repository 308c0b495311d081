//! The branch tree: every message ever written in a session, with the
//! alternatives (swipes, edits, continuations) as siblings.
//!
//! [`BranchTree::apply`] is the only way to change a tree; the ops in
//! `ops.rs` only build events. Replaying a file therefore rebuilds exactly
//! the tree that was in memory when the events were written.

use std::collections::{HashMap, HashSet};

use super::error::TreeError;
use super::event::SessionEvent;
use super::export::label_text;
use super::message::{Message, Role};

/// What a placeholder for an unreadable message says.
pub const UNREADABLE_TEXT: &str = "a message here could not be read";
/// The speaker name a placeholder shows.
pub const UNREADABLE_SPEAKER: &str = "(unreadable)";

/// Index of a node in the arena. Stable for the life of a tree, but not
/// across files: the file uses [`Node::key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub usize);

impl NodeId {
    /// The virtual root: no message; its children are the first messages
    /// (several when there are alternative greetings).
    pub const ROOT: NodeId = NodeId(0);
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub id: NodeId,
    /// Stable uuid written in the file; empty for the virtual root.
    pub key: String,
    pub parent: Option<NodeId>,
    pub children: Vec<NodeId>,
    /// Index into `children` of the alternative the active branch follows.
    pub selected: usize,
    /// Empty for the virtual root.
    pub message: Message,
    pub deleted: bool,
    /// A placeholder for a message whose line in the file could not be
    /// read; the messages written after it hang under it. Never written.
    pub unreadable: bool,
}

/// A row of the tree view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeRow {
    pub node: NodeId,
    /// 0 for first messages.
    pub depth: usize,
    pub on_active_path: bool,
    /// Speaker and the first 40 characters of the visible text.
    pub label: String,
    /// Non-deleted alternatives at this place, this one included.
    pub alternatives: usize,
}

/// What an event does to the arena, resolved and validated.
enum Change {
    Insert { parent: NodeId },
    Select { parent: NodeId, index: usize },
    Delete { node: NodeId },
    Nothing,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BranchTree {
    nodes: Vec<Node>,
    by_key: HashMap<String, NodeId>,
}

impl Default for BranchTree {
    fn default() -> Self {
        Self::new()
    }
}

impl BranchTree {
    pub fn new() -> Self {
        let root = Node {
            id: NodeId::ROOT,
            key: String::new(),
            parent: None,
            children: Vec::new(),
            selected: 0,
            message: Message {
                speaker: String::new(),
                role: Role::System,
                text: String::new(),
                created_at: String::new(),
                meta: Default::default(),
            },
            deleted: false,
            unreadable: false,
        };
        Self {
            nodes: vec![root],
            by_key: HashMap::new(),
        }
    }

    /// Checks that `event` would apply, without changing anything.
    pub fn check(&self, event: &SessionEvent) -> Result<(), TreeError> {
        self.plan(event).map(|_| ())
    }

    /// Applies a tree event (`message`, `select`, `delete`); other events
    /// leave the tree alone. Returns the node a `message` event created.
    pub fn apply(&mut self, event: &SessionEvent) -> Result<Option<NodeId>, TreeError> {
        match (self.plan(event)?, event) {
            (Change::Insert { parent }, SessionEvent::Message { key, message, .. }) => {
                let id = NodeId(self.nodes.len());
                self.nodes.push(Node {
                    id,
                    key: key.clone(),
                    parent: Some(parent),
                    children: Vec::new(),
                    selected: 0,
                    message: message.clone(),
                    deleted: false,
                    unreadable: false,
                });
                self.by_key.insert(key.clone(), id);
                if let Some(p) = self.nodes.get_mut(parent.0) {
                    p.children.push(id);
                    // A new alternative is what the user wants to see.
                    p.selected = p.children.len() - 1;
                }
                Ok(Some(id))
            }
            (Change::Select { parent, index }, _) => {
                if let Some(p) = self.nodes.get_mut(parent.0) {
                    p.selected = index;
                }
                Ok(None)
            }
            (Change::Delete { node }, _) => {
                self.mark_deleted(node);
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// Adds a node under `parent` standing for the message with `key`,
    /// whose line `line` of the file could not be read (see `replay.rs`).
    /// Like a new message it becomes the alternative the branch follows.
    pub(crate) fn insert_placeholder(&mut self, key: &str, parent: NodeId, line: usize) -> NodeId {
        let id = NodeId(self.nodes.len());
        let parent = if self.node(parent).is_some() {
            parent
        } else {
            NodeId::ROOT
        };
        self.nodes.push(Node {
            id,
            key: key.to_string(),
            parent: Some(parent),
            children: Vec::new(),
            selected: 0,
            message: Message {
                speaker: UNREADABLE_SPEAKER.to_string(),
                role: Role::System,
                text: format!("[{UNREADABLE_TEXT}: line {line} of the session file is damaged]"),
                created_at: String::new(),
                meta: Default::default(),
            },
            deleted: false,
            unreadable: true,
        });
        self.by_key.insert(key.to_string(), id);
        if let Some(p) = self.nodes.get_mut(parent.0) {
            p.children.push(id);
            p.selected = p.children.len() - 1;
        }
        id
    }

    fn plan(&self, event: &SessionEvent) -> Result<Change, TreeError> {
        match event {
            SessionEvent::Message { key, parent, .. } => {
                if key.is_empty() || self.by_key.contains_key(key) {
                    return Err(TreeError::DuplicateKey(key.clone()));
                }
                Ok(Change::Insert {
                    parent: self.resolve_parent(parent.as_deref())?,
                })
            }
            SessionEvent::Select { parent, child } => {
                let parent_id = self.resolve_parent(parent.as_deref())?;
                let child_id = self.resolve(child)?;
                let index = self
                    .children(parent_id)
                    .iter()
                    .position(|&c| c == child_id)
                    .ok_or_else(|| TreeError::NotAChild {
                        parent: self.describe(parent_id),
                        child: child.clone(),
                    })?;
                if self.is_deleted(child_id) {
                    return Err(TreeError::Deleted(child.clone()));
                }
                Ok(Change::Select {
                    parent: parent_id,
                    index,
                })
            }
            SessionEvent::Delete { key } => Ok(Change::Delete {
                node: self.resolve(key)?,
            }),
            SessionEvent::Header(_) => Err(TreeError::Header),
            SessionEvent::Rename { .. } | SessionEvent::Other(_) => Ok(Change::Nothing),
        }
    }

    fn mark_deleted(&mut self, node: NodeId) {
        let Some(n) = self.nodes.get_mut(node.0) else {
            return;
        };
        n.deleted = true;
        let Some(parent) = n.parent else { return };
        let Some(siblings) = self.nodes.get(parent.0).map(|p| p.children.clone()) else {
            return;
        };
        let Some(at) = siblings.iter().position(|&c| c == node) else {
            return;
        };
        let selected = self.nodes.get(parent.0).map_or(0, |p| p.selected);
        if selected != at {
            return;
        }
        // Prefer the next alternative, then the previous one; with none left
        // the selection stays and the active path ends at the parent.
        let next = (at + 1..siblings.len())
            .chain((0..at).rev())
            .find(|&i| siblings.get(i).is_some_and(|&c| !self.is_deleted(c)));
        if let (Some(i), Some(p)) = (next, self.nodes.get_mut(parent.0)) {
            p.selected = i;
        }
    }

    fn resolve(&self, key: &str) -> Result<NodeId, TreeError> {
        self.by_key
            .get(key)
            .copied()
            .ok_or_else(|| TreeError::UnknownKey(key.to_string()))
    }

    fn resolve_parent(&self, key: Option<&str>) -> Result<NodeId, TreeError> {
        key.map_or(Ok(NodeId::ROOT), |k| self.resolve(k))
    }

    /// A node's key for messages, or a readable name for the root.
    pub(crate) fn describe(&self, id: NodeId) -> String {
        if id == NodeId::ROOT {
            "(top level)".to_string()
        } else {
            self.node(id)
                .map_or_else(|| id.0.to_string(), |n| n.key.clone())
        }
    }

    // ---- queries ----

    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id.0)
    }

    /// The node with this stable key.
    pub fn find(&self, key: &str) -> Option<NodeId> {
        self.by_key.get(key).copied()
    }

    /// Messages in the tree, deleted ones included (the root is not one).
    pub fn len(&self) -> usize {
        self.nodes.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every message node in creation order (the root excluded).
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().skip(1)
    }

    pub(crate) fn is_deleted(&self, id: NodeId) -> bool {
        self.node(id).is_some_and(|n| n.deleted)
    }

    fn children(&self, id: NodeId) -> &[NodeId] {
        self.node(id).map_or(&[], |n| n.children.as_slice())
    }

    /// Children that are not deleted, in order: the alternatives a user sees.
    pub fn visible_children(&self, id: NodeId) -> Vec<NodeId> {
        self.children(id)
            .iter()
            .copied()
            .filter(|&c| !self.is_deleted(c))
            .collect()
    }

    /// First message → leaf, following each node's selection and stopping
    /// before a deleted node. The virtual root is not included.
    pub fn active_path(&self) -> Vec<NodeId> {
        let mut path = Vec::new();
        let mut at = NodeId::ROOT;
        while let Some(node) = self.node(at) {
            match node.children.get(node.selected) {
                Some(&next) if !self.is_deleted(next) => {
                    path.push(next);
                    at = next;
                }
                _ => break,
            }
        }
        path
    }

    /// The last node of the active path, or the root for an empty session.
    pub fn leaf(&self) -> NodeId {
        self.active_path().last().copied().unwrap_or(NodeId::ROOT)
    }

    /// `(index, count)` of `id` among its non-deleted alternatives, 0-based,
    /// for a "2/5" counter. A deleted node gets the index it would have.
    /// The root is `(0, 1)`, an unknown node `(0, 0)`.
    pub fn siblings_of(&self, id: NodeId) -> (usize, usize) {
        let Some(node) = self.node(id) else {
            return (0, 0);
        };
        let Some(parent) = node.parent else {
            return (0, 1);
        };
        let mut index = 0;
        let mut count = 0;
        for &c in self.children(parent) {
            if c == id {
                index = count;
            }
            if !self.is_deleted(c) {
                count += 1;
            }
        }
        (index, count)
    }

    /// First message → `id`. Empty for the root or an unknown node.
    pub fn path_to(&self, id: NodeId) -> Vec<NodeId> {
        let mut path = Vec::new();
        let mut at = id;
        while at != NodeId::ROOT {
            let Some(node) = self.node(at) else {
                return Vec::new();
            };
            path.push(at);
            at = node.parent.unwrap_or(NodeId::ROOT);
        }
        path.reverse();
        path
    }

    /// The tree view: non-deleted nodes depth-first, children in order.
    pub fn rows(&self) -> Vec<TreeRow> {
        let active: HashSet<NodeId> = self.active_path().into_iter().collect();
        let mut rows = Vec::new();
        // Iterative so a long chat (a deep chain) cannot overflow the stack.
        let mut stack: Vec<(NodeId, usize)> = self
            .visible_children(NodeId::ROOT)
            .into_iter()
            .rev()
            .map(|c| (c, 0))
            .collect();
        while let Some((id, depth)) = stack.pop() {
            let Some(node) = self.node(id) else { continue };
            rows.push(TreeRow {
                node: id,
                depth,
                on_active_path: active.contains(&id),
                label: label_text(&node.message),
                alternatives: self.siblings_of(id).1,
            });
            stack.extend(
                self.visible_children(id)
                    .into_iter()
                    .rev()
                    .map(|c| (c, depth + 1)),
            );
        }
        rows
    }
}
