//! The user's operations, as events. Nothing here changes the tree: apply
//! or commit the returned event, so memory and file cannot disagree.

use super::error::TreeError;
use super::event::SessionEvent;
use super::message::{Message, MessageMeta, new_key, now_rfc3339};
use super::tree::{BranchTree, Node, NodeId};

impl BranchTree {
    /// A message under the current leaf; it becomes selected.
    pub fn append_event(&self, message: Message) -> SessionEvent {
        self.message_under(self.leaf(), message)
    }

    /// A message under `parent` (the root for a new first message, e.g. an
    /// alternative greeting); it becomes selected.
    pub fn append_under_event(
        &self,
        parent: NodeId,
        message: Message,
    ) -> Result<SessionEvent, TreeError> {
        self.live(parent)?;
        Ok(self.message_under(parent, message))
    }

    /// Swipe / regenerate: `message` becomes a new alternative of `node`
    /// and is selected.
    pub fn swipe_event(&self, node: NodeId, message: Message) -> Result<SessionEvent, TreeError> {
        let parent = self.parent_of(node)?;
        Ok(self.message_under(parent, message))
    }

    /// An edited copy of `node` as a new selected alternative; the original
    /// stays as it was (its replies remain on its branch).
    pub fn edit_event(
        &self,
        node: NodeId,
        text: impl Into<String>,
    ) -> Result<SessionEvent, TreeError> {
        let old = self.live(node)?;
        let parent = self.parent_of(node)?;
        let message = Message {
            speaker: old.message.speaker.clone(),
            role: old.message.role,
            text: text.into(),
            created_at: now_rfc3339(),
            meta: MessageMeta {
                edited_from: Some(old.key.clone()),
                ..MessageMeta::default()
            },
        };
        Ok(self.message_under(parent, message))
    }

    /// `node` continued with `addition` (generated after its text), as a new
    /// selected alternative; `meta` describes the continuation's generation.
    pub fn continue_event(
        &self,
        node: NodeId,
        addition: &str,
        meta: MessageMeta,
    ) -> Result<SessionEvent, TreeError> {
        let old = self.live(node)?;
        let parent = self.parent_of(node)?;
        let message = Message {
            speaker: old.message.speaker.clone(),
            role: old.message.role,
            text: format!("{}{addition}", old.message.text),
            created_at: now_rfc3339(),
            meta: MessageMeta {
                continued_from: Some(old.key.clone()),
                ..meta
            },
        };
        Ok(self.message_under(parent, message))
    }

    /// Selects alternative `index` (0-based, counting non-deleted children
    /// only, like [`BranchTree::siblings_of`]) under `parent`.
    pub fn select_event(&self, parent: NodeId, index: usize) -> Result<SessionEvent, TreeError> {
        self.node_or_err(parent)?;
        let visible = self.visible_children(parent);
        let child = visible
            .get(index)
            .ok_or_else(|| TreeError::NoSuchAlternative {
                parent: self.describe(parent),
                index,
                count: visible.len(),
            })?;
        Ok(self.select_child(parent, *child))
    }

    /// Selects the alternative `step` places from `node` (←: -1, →: +1),
    /// wrapping around. `None` when there is no other alternative. To
    /// generate a new swipe at the right end, check `siblings_of` first.
    pub fn cycle_event(
        &self,
        node: NodeId,
        step: isize,
    ) -> Result<Option<SessionEvent>, TreeError> {
        self.live(node)?;
        let parent = self.parent_of(node)?;
        let (index, count) = self.siblings_of(node);
        if count < 2 {
            return Ok(None);
        }
        let count_i = isize::try_from(count).unwrap_or(isize::MAX);
        let index_i = isize::try_from(index).unwrap_or(0);
        let target = usize::try_from((index_i + step).rem_euclid(count_i)).unwrap_or(0);
        self.select_event(parent, target).map(Some)
    }

    /// Hides `node` and what follows it. If it was the selected alternative
    /// the selection moves to a neighbour (see `apply`).
    pub fn delete_event(&self, node: NodeId) -> Result<SessionEvent, TreeError> {
        let n = self.node_or_err(node)?;
        if node == NodeId::ROOT {
            return Err(TreeError::Root);
        }
        Ok(SessionEvent::Delete { key: n.key.clone() })
    }

    /// The selections that make the branch through `node` active (only those
    /// that change something; empty if it already is).
    pub fn jump_to_events(&self, node: NodeId) -> Result<Vec<SessionEvent>, TreeError> {
        self.node_or_err(node)?;
        let mut events = Vec::new();
        for id in self.path_to(node) {
            let n = self.live(id)?;
            let parent = n.parent.unwrap_or(NodeId::ROOT);
            let Some(p) = self.node(parent) else { continue };
            if p.children.get(p.selected) != Some(&id) {
                events.push(self.select_child(parent, id));
            }
        }
        Ok(events)
    }

    // ---- helpers ----

    fn message_under(&self, parent: NodeId, message: Message) -> SessionEvent {
        SessionEvent::Message {
            key: new_key(),
            parent: self.key_of(parent),
            message,
        }
    }

    fn select_child(&self, parent: NodeId, child: NodeId) -> SessionEvent {
        SessionEvent::Select {
            parent: self.key_of(parent),
            child: self.key_of(child).unwrap_or_default(),
        }
    }

    /// The key written for a parent: `None` for the root.
    fn key_of(&self, id: NodeId) -> Option<String> {
        (id != NodeId::ROOT)
            .then(|| self.node(id).map(|n| n.key.clone()))
            .flatten()
    }

    fn node_or_err(&self, id: NodeId) -> Result<&Node, TreeError> {
        self.node(id).ok_or(TreeError::UnknownNode(id.0))
    }

    /// The node, if it exists and is not deleted.
    fn live(&self, id: NodeId) -> Result<&Node, TreeError> {
        let n = self.node_or_err(id)?;
        if n.deleted {
            return Err(TreeError::Deleted(n.key.clone()));
        }
        Ok(n)
    }

    fn parent_of(&self, id: NodeId) -> Result<NodeId, TreeError> {
        self.node_or_err(id)?.parent.ok_or(TreeError::Root)
    }
}
