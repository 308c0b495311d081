//! What the transcript shows, derived from the session's active branch.

use serde::{Deserialize, Serialize};

use her_core::format::{Ending, Layer, Segment, SegmentKind, StreamedReply, parse_reply};

/// Where a thinking layer is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaneMode {
    /// In a side pane, for the selected reply.
    Pane,
    /// In the transcript, between the other layers.
    Inline,
    Hidden,
}

impl PaneMode {
    /// pane → inline → hidden → pane.
    pub fn next(self) -> Self {
        match self {
            Self::Pane => Self::Inline,
            Self::Inline => Self::Hidden,
            Self::Hidden => Self::Pane,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Pane => "pane",
            Self::Inline => "inline",
            Self::Hidden => "hidden",
        }
    }
}

/// How both thinking layers are shown; remembered between runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaneModes {
    /// The LLM's plan (system thinking).
    pub plan: PaneMode,
    /// The character's inner thoughts (role thinking).
    pub thoughts: PaneMode,
}

impl Default for PaneModes {
    fn default() -> Self {
        Self {
            plan: PaneMode::Pane,
            thoughts: PaneMode::Inline,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    User,
    Character,
    Narrator,
}

/// One message as the transcript draws it.
#[derive(Debug, Clone, PartialEq)]
pub struct ShownMessage {
    /// The session node this message is (empty while streaming).
    pub key: String,
    pub name: String,
    pub speaker: Speaker,
    pub raw: String,
    pub segments: Vec<Segment>,
    /// (index, count) of this message among its alternatives.
    pub alternative: (usize, usize),
    pub streaming: bool,
    pub incomplete: bool,
    /// The user's rating, as a short label.
    pub rating: Option<String>,
}

impl ShownMessage {
    pub fn new(
        key: String,
        name: String,
        speaker: Speaker,
        raw: String,
        alternative: (usize, usize),
    ) -> Self {
        let segments = parse_reply(&raw, Ending::Natural);
        Self {
            key,
            name,
            speaker,
            raw,
            segments,
            alternative,
            streaming: false,
            incomplete: false,
            rating: None,
        }
    }

    pub fn streaming(name: String, reply: &StreamedReply) -> Self {
        Self {
            key: String::new(),
            name,
            speaker: Speaker::Character,
            raw: reply.raw(),
            segments: reply.segments.clone(),
            alternative: (0, 1),
            streaming: true,
            incomplete: false,
            rating: None,
        }
    }

    pub fn layer_text(&self, layer: Layer) -> String {
        self.segments
            .iter()
            .filter(|s| s.kind == SegmentKind::text(layer))
            .map(|s| s.text.as_str())
            .collect()
    }

    /// The role-thinking blocks, one per entry.
    pub fn thoughts(&self) -> Vec<String> {
        self.segments
            .iter()
            .filter(|s| s.kind == SegmentKind::text(Layer::RoleThinking))
            .map(|s| s.text.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect()
    }
}
