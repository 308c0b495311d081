//! The events a session file is made of: one JSON object per line.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::message::{Message, new_key, now_rfc3339};

/// The version written into new headers.
pub const FORMAT_VERSION: u32 = 1;

/// The event types this version understands; any other type is kept as
/// [`SessionEvent::Other`].
pub const KNOWN_TYPES: [&str; 5] = ["header", "message", "select", "delete", "rename"];

/// Line 1 of every session file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionHeader {
    pub version: u32,
    pub id: String,
    pub title: String,
    pub character: Option<String>,
    pub scene: Option<String>,
    pub model: Option<String>,
    pub model_fingerprint: Option<String>,
    pub adapter_sha256: Option<String>,
    /// The generation settings in force when the session started.
    #[serde(default)]
    pub config: Value,
    pub created_at: String,
}

impl SessionHeader {
    /// A header for a new session created now, with a fresh id.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            version: FORMAT_VERSION,
            id: new_key(),
            title: title.into(),
            character: None,
            scene: None,
            model: None,
            model_fingerprint: None,
            adapter_sha256: None,
            config: Value::Object(serde_json::Map::new()),
            created_at: now_rfc3339(),
        }
    }
}

/// One line of a session file. Deserializing never fails on an unknown
/// `type`: such events become [`SessionEvent::Other`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SessionEvent {
    Header(SessionHeader),
    /// A new node; `parent` is the parent's key, `None` for a first message.
    Message {
        key: String,
        parent: Option<String>,
        message: Message,
    },
    /// `child` becomes the alternative the active branch follows under `parent`.
    Select {
        parent: Option<String>,
        child: String,
    },
    /// Hides a node (and so its subtree); nothing is removed.
    Delete {
        key: String,
    },
    Rename {
        title: String,
    },
    /// An event of a type this version does not know (e.g. `rating`, written
    /// by a later module), kept as it was read and written back as is. It must
    /// be an object with a string `type` outside [`KNOWN_TYPES`].
    #[serde(untagged)]
    Other(Value),
}

/// The built-in events, decoded on their own: through `SessionEvent` the
/// untagged catch-all would replace serde's precise error ("missing field
/// `key`") by a vague one.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Known {
    Header(SessionHeader),
    Message {
        key: String,
        parent: Option<String>,
        message: Message,
    },
    Select {
        parent: Option<String>,
        child: String,
    },
    Delete {
        key: String,
    },
    Rename {
        title: String,
    },
}

impl From<Known> for SessionEvent {
    fn from(known: Known) -> Self {
        match known {
            Known::Header(h) => Self::Header(h),
            Known::Message {
                key,
                parent,
                message,
            } => Self::Message {
                key,
                parent,
                message,
            },
            Known::Select { parent, child } => Self::Select { parent, child },
            Known::Delete { key } => Self::Delete { key },
            Known::Rename { title } => Self::Rename { title },
        }
    }
}

impl<'de> Deserialize<'de> for SessionEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        decode_value(Value::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

impl SessionEvent {
    /// The event's `type` as written in the file.
    pub fn type_name(&self) -> &str {
        match self {
            Self::Header(_) => "header",
            Self::Message { .. } => "message",
            Self::Select { .. } => "select",
            Self::Delete { .. } => "delete",
            Self::Rename { .. } => "rename",
            Self::Other(value) => value.get("type").and_then(Value::as_str).unwrap_or(""),
        }
    }
}

/// Decodes one line; the error says why it cannot be used (without the line
/// number, which the caller knows).
pub fn decode_line(line: &str) -> Result<SessionEvent, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| {
        format!(
            "not valid JSON ({} at column {})",
            json_reason(&e),
            e.column()
        )
    })?;
    decode_value(value)
}

fn decode_value(value: Value) -> Result<SessionEvent, String> {
    let Some(kind) = value.get("type").and_then(Value::as_str) else {
        return Err("not an event (no string 'type' field)".to_string());
    };
    if !KNOWN_TYPES.contains(&kind) {
        return Ok(SessionEvent::Other(value));
    }
    let kind = kind.to_string();
    serde_json::from_value::<Known>(value)
        .map(SessionEvent::from)
        .map_err(|e| format!("not a valid '{kind}' event ({e})"))
}

/// serde_json's message without its " at line L column C" suffix: the caller
/// reports the file's line itself.
fn json_reason(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}
