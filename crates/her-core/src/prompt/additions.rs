//! What a session adds to a character's prompt besides the transcript:
//! activated lorebook entries, long-term memory and the author's note,
//! already chosen and laid out for HER's prompt.
//!
//! The mapping onto HER's layout (see the README's "Lore in HER's prompt"):
//! - entries "before" / "after the character" and those around the example
//!   messages extend `===Background===` (HER's place for world and plot
//!   knowledge; its layout has no example-message section), before and after
//!   the character's own background;
//! - entries "in the scenario" follow the scenario in `===Current Scenario===`;
//! - memory (pinned memories, then the rolling summary) closes the background:
//!   HER's training data carries the story so far (CoSER's plot summary) there;
//! - the author's note, with the entries placed around it, and entries "at
//!   depth N" become ChatML turns of their role inserted N turns from the end;
//! - outlet entries replace `{{outlet::NAME}}` in the character's fields.
//!
//! The value is serializable: the session log keeps it with each reply, so a
//! preference record rebuilds the exact prompt the reply answered.

use serde::{Deserialize, Serialize};

use crate::lore::Role;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Additions {
    /// Before the character's background.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub background_top: Vec<String>,
    /// After the character's background.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub background_bottom: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scenario: Vec<String>,
    /// The memory paragraph(s) that close the background.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub memory: String,
    /// Turns inserted into the history.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inserts: Vec<Insert>,
    /// `{{outlet::NAME}}` texts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outlets: Vec<(String, String)>,
    /// Oldest transcript lines the memory's summary stands for: they are
    /// left out of the history (the newest line always stays).
    #[serde(skip_serializing_if = "is_zero")]
    pub summarised: usize,
    /// Which of the character's own thinking layers its earlier replies
    /// keep (config `chat.history_plan`, `chat.history_thoughts`). Logged
    /// with the reply like the rest, since it shapes the prompt as much.
    #[serde(skip_serializing_if = "HistoryLayers::is_her")]
    pub history: HistoryLayers,
}

/// What history keeps of the character's own earlier replies. HER's rule,
/// the default: the plan (`<system_thinking>`) is dropped, the inner
/// thoughts (`<role_thinking>`) kept. Other characters' thoughts are never
/// kept: they could not have heard them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HistoryLayers {
    pub plan: bool,
    pub thoughts: bool,
}

impl HistoryLayers {
    pub const HER: Self = Self {
        plan: false,
        thoughts: true,
    };

    pub fn is_her(&self) -> bool {
        *self == Self::HER
    }
}

impl Default for HistoryLayers {
    fn default() -> Self {
        Self::HER
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A turn inserted `depth` turns from the end of the history (0: right
/// before the reply).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Insert {
    pub depth: u32,
    pub role: Role,
    /// For the prompt view: "lore", "author's note".
    pub label: String,
    pub text: String,
}

impl Additions {
    pub fn is_empty(&self) -> bool {
        *self == Additions::default()
    }

    /// Replaces every `{{outlet::NAME}}` in `text` with that outlet's entries
    /// (nothing when no entry is there).
    pub fn fill_outlets(&self, text: &str) -> String {
        const OPEN: &str = "{{outlet::";
        if !text.contains(OPEN) {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find(OPEN) {
            out.push_str(&rest[..at]);
            let after = &rest[at + OPEN.len()..];
            let Some(end) = after.find("}}") else {
                out.push_str(&rest[at..]);
                return out;
            };
            let name = after[..end].trim();
            if let Some((_, body)) = self.outlets.iter().find(|(n, _)| n == name) {
                out.push_str(body);
            }
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        out
    }
}

pub(crate) fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outlets_fill_their_macros_and_unknown_ones_vanish() {
        let a = Additions {
            outlets: vec![("map".into(), "North is the sea.".into())],
            ..Additions::default()
        };
        assert_eq!(
            a.fill_outlets("See: {{outlet::map}}. {{outlet::none}}End {{outlet::"),
            "See: North is the sea.. End {{outlet::"
        );
    }
}
