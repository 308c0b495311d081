//! One message of a session and the metadata kept with it.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::macros::format_description;

/// Who speaks a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The human's persona.
    User,
    /// A character played by the model.
    Character,
    /// The world / environment voice.
    Narrator,
    /// A note for the model (scene change, instruction).
    System,
}

/// A message as it was produced: `text` is raw, so a model reply starts with
/// the `<system_thinking>` prefill and parses like any other reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub speaker: String,
    pub role: Role,
    pub text: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    #[serde(default)]
    pub meta: MessageMeta,
}

impl Message {
    /// A message created now, with empty metadata.
    pub fn new(speaker: impl Into<String>, role: Role, text: impl Into<String>) -> Self {
        Self {
            speaker: speaker.into(),
            role,
            text: text.into(),
            created_at: now_rfc3339(),
            meta: MessageMeta::default(),
        }
    }

    /// The same message with `meta` replaced.
    pub fn with_meta(mut self, meta: MessageMeta) -> Self {
        self.meta = meta;
        self
    }
}

/// What is known about how a message came to be. Empty fields are left out of
/// the file to keep lines short.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// Cut off (connection dropped, cancelled): the text may end mid-sentence.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub incomplete: bool,
    /// Key of the node this message is an edited copy of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_from: Option<String>,
    /// Key of the node whose text this message extends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continued_from: Option<String>,
    /// A thinking block of another reply rewritten by the writer, with this
    /// reply generated on from it (`/plan`, `/thought`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking_edit: Option<Box<crate::format::ThinkingEdit>>,
    /// Model fingerprint, adapter hash, seed… as the engine reported them;
    /// kept opaque so the engine can add fields without a format change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<serde_json::Value>,
}

/// The current time as RFC 3339 UTC with millisecond precision.
pub fn now_rfc3339() -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    // Formatting a UTC date with this fixed description cannot fail in
    // practice; an empty string would still be a valid (if useless) value.
    OffsetDateTime::now_utc().format(format).unwrap_or_default()
}

/// A new stable node key.
pub fn new_key() -> String {
    uuid::Uuid::new_v4().to_string()
}
