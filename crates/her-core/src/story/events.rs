//! The session-log events of lore, memory and the author's note, and the
//! state they add up to. They are extension events (`SessionEvent::Other`):
//! older versions of her-studio keep them untouched.
//!
//! - `lore_attach` / `lore_detach`: a book attached to this session;
//! - `note`: the session's author's note (the newest wins);
//! - `memory_pin` / `memory_unpin`: a pinned memory (of a message, or typed);
//! - `summary`: a version of the rolling summary, covering the branch up to
//!   the message `upto`; the newest one on the active branch is used, so
//!   edits are new versions and other branches keep theirs;
//! - `reply_context`: what the prompt of reply `key` added (lore, memory,
//!   note) and the timed lore effects its scan started or ended. Replaying the
//!   timed events along a branch gives that branch's timed state.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::character::AuthorNote;
use crate::lore::TimedEvent;
use crate::prompt::Additions;
use crate::session::Session;

pub const LORE_ATTACH: &str = "lore_attach";
pub const LORE_DETACH: &str = "lore_detach";
pub const NOTE: &str = "note";
pub const MEMORY_PIN: &str = "memory_pin";
pub const MEMORY_UNPIN: &str = "memory_unpin";
pub const SUMMARY: &str = "summary";
pub const REPLY_CONTEXT: &str = "reply_context";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BookEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoteEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub note: AuthorNote,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PinEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub text: String,
    /// The message pinned (`None`: a line the user wrote). A message's pin
    /// counts only on branches through that message.
    #[serde(default)]
    pub key: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnpinEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

/// Who wrote a summary version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SummarySource {
    /// The model, when the context filled up.
    Model,
    /// The user, with `/memory edit`.
    User,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub text: String,
    /// Key of the newest message the summary covers.
    pub upto: String,
    /// How many messages of the branch it covers (for display).
    #[serde(default)]
    pub messages: usize,
    pub source: SummarySource,
    /// The model that wrote it (`source` = model), as its generation named
    /// it: the chat model or the judge (`memory.summarizer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyContextEvent {
    #[serde(rename = "type")]
    pub kind: String,
    /// The reply this prompt produced.
    pub key: String,
    #[serde(default)]
    pub additions: Additions,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timed: Vec<TimedEvent>,
}

/// Everything the story events of one session add up to.
#[derive(Debug, Clone, Default)]
pub struct StoryLog {
    /// Session books, in attach order.
    pub attached: Vec<String>,
    pub note: Option<AuthorNote>,
    /// Pins still in force, oldest first.
    pub pins: Vec<PinEvent>,
    /// Every summary version, in log order.
    pub summaries: Vec<SummaryEvent>,
    /// The newest context recorded for each reply.
    pub contexts: HashMap<String, ReplyContextEvent>,
}

impl StoryLog {
    /// Reads the story events of `session`. A story event that cannot be
    /// decoded is skipped; the returned warnings name its line, as for other
    /// session lines.
    pub fn read(session: &Session) -> (StoryLog, Vec<String>) {
        let mut log = StoryLog::default();
        let mut warnings = Vec::new();
        for event in session.other_events() {
            let kind = event.value.get("type").and_then(Value::as_str);
            let result = match kind {
                Some(LORE_ATTACH | LORE_DETACH) => {
                    decode::<BookEvent>(&event.value).map(|e| log.book(e))
                }
                Some(NOTE) => decode::<NoteEvent>(&event.value).map(|e| log.note = Some(e.note)),
                Some(MEMORY_PIN) => decode::<PinEvent>(&event.value).map(|e| log.pins.push(e)),
                Some(MEMORY_UNPIN) => {
                    decode::<UnpinEvent>(&event.value).map(|e| log.pins.retain(|p| p.id != e.id))
                }
                Some(SUMMARY) => {
                    decode::<SummaryEvent>(&event.value).map(|e| log.summaries.push(e))
                }
                Some(REPLY_CONTEXT) => decode::<ReplyContextEvent>(&event.value).map(|e| {
                    log.contexts.insert(e.key.clone(), e);
                }),
                _ => Ok(()),
            };
            if let Err(problem) = result {
                warnings.push(format!(
                    "line {}: not a valid '{}' event ({problem}); skipped",
                    event.line,
                    kind.unwrap_or_default()
                ));
            }
        }
        (log, warnings)
    }

    fn book(&mut self, event: BookEvent) {
        self.attached.retain(|n| *n != event.name);
        if event.kind == LORE_ATTACH {
            self.attached.push(event.name);
        }
    }

    /// The newest summary whose `upto` is one of `path` (the branch's keys).
    pub fn summary_on<'a>(&'a self, path: &[String]) -> Option<&'a SummaryEvent> {
        self.summaries.iter().rev().find(|s| path.contains(&s.upto))
    }

    /// Pins that count on a branch with the keys `path`.
    pub fn pins_on<'a>(&'a self, path: &'a [String]) -> impl Iterator<Item = &'a PinEvent> {
        self.pins
            .iter()
            .filter(|p| p.key.as_ref().is_none_or(|k| path.contains(k)))
    }

    /// The timed lore events recorded along `path`, in branch order.
    pub fn timed_on<'a>(&'a self, path: &'a [String]) -> impl Iterator<Item = &'a TimedEvent> {
        path.iter()
            .filter_map(|k| self.contexts.get(k))
            .flat_map(|c| c.timed.iter())
    }
}

fn decode<T: for<'de> Deserialize<'de>>(value: &Value) -> Result<T, String> {
    serde_json::from_value(value.clone()).map_err(|e| e.to_string())
}
