//! The pieces a HER reply is made of.

use serde::{Deserialize, Serialize};

/// The four layers of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// The LLM's third-person plan: hidden from every character.
    SystemThinking,
    /// The character's first-person inner thought: hidden from other characters.
    RoleThinking,
    /// A visible action.
    RoleAction,
    /// What the character says aloud (plain text).
    Speech,
}

/// Tag families, each with the spellings models are known to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TagFamily {
    /// `system_thinking`, `system_think`, `think`, `thought`.
    System,
    /// `role_thinking`, `long_role_thinking`.
    RoleThinking,
    /// `role_action`.
    RoleAction,
    /// `role_speech`: never trained, unwrapped to plain speech.
    RoleSpeech,
}

impl TagFamily {
    /// The family of a tag name (case-insensitive), if it is a HER tag.
    pub fn from_name(name: &str) -> Option<Self> {
        // Lower-case into a stack buffer: this runs for every tag of every reply.
        const LONGEST: usize = "long_role_thinking".len();
        if name.len() > LONGEST {
            return None;
        }
        let mut buf = [0u8; LONGEST];
        for (dst, src) in buf.iter_mut().zip(name.bytes()) {
            *dst = src.to_ascii_lowercase();
        }
        match &buf[..name.len()] {
            b"system_thinking" | b"system_think" | b"think" | b"thought" => Some(Self::System),
            b"role_thinking" | b"long_role_thinking" => Some(Self::RoleThinking),
            b"role_action" => Some(Self::RoleAction),
            b"role_speech" => Some(Self::RoleSpeech),
            _ => None,
        }
    }

    /// The layer a block of this family holds.
    pub fn layer(self) -> Layer {
        match self {
            Self::System => Layer::SystemThinking,
            Self::RoleThinking => Layer::RoleThinking,
            Self::RoleAction => Layer::RoleAction,
            Self::RoleSpeech => Layer::Speech,
        }
    }
}

/// What a segment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum SegmentKind {
    /// Content of one layer.
    Text { layer: Layer },
    /// A HER tag's own markup, e.g. `<role_action>`.
    Tag { family: TagFamily, closing: bool },
    /// The `Name: ` speaker prefix (name, colon and space).
    Speaker,
}

impl SegmentKind {
    pub const fn text(layer: Layer) -> Self {
        Self::Text { layer }
    }

    /// The layer of text segments.
    pub fn layer(self) -> Option<Layer> {
        match self {
            Self::Text { layer } => Some(layer),
            _ => None,
        }
    }
}

/// A run of the raw reply with one meaning. Concatenating the segments of a
/// reply gives back its raw text exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub kind: SegmentKind,
    pub text: String,
}

impl Segment {
    pub fn new(kind: SegmentKind, text: impl Into<String>) -> Self {
        Self {
            kind,
            text: text.into(),
        }
    }

    /// For a speaker segment, the name without ": ".
    pub fn speaker_name(&self) -> Option<&str> {
        (self.kind == SegmentKind::Speaker).then(|| self.text.trim_end().trim_end_matches(':'))
    }
}

/// Appends `segment`, merging it into the last one when both are text of the
/// same layer, so the result does not depend on how the input was chunked.
pub fn push_merged(segments: &mut Vec<Segment>, segment: Segment) {
    if segment.text.is_empty() {
        return;
    }
    if let Some(last) = segments.last_mut()
        && last.kind == segment.kind
        && matches!(segment.kind, SegmentKind::Text { .. })
    {
        last.text.push_str(&segment.text);
        return;
    }
    segments.push(segment);
}
