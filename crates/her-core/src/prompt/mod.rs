//! Building the exact prompt HER models were trained on.
//!
//! Pure functions: a character and a transcript in, ChatML text out. The
//! engine sees the result as a [`crate::generation::PromptSource`] so it can drop
//! the oldest turns when the context window is full.

mod additions;
mod chatml;
pub mod lore;
mod macros;
pub mod next_speaker;
mod system;

pub use additions::{Additions, HistoryLayers, Insert};
pub use chatml::{CONVERSATION_START, HerPrompt, Line, PromptPart, Turn, TurnRole};
pub use lore::{NoteInsert, estimate_tokens};
pub use macros::expand_macros;
pub use system::{MEMORY_LABEL, Section, join_sections, system_prompt, system_sections};

/// How to build a prompt beyond the character and the transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptOptions {
    pub variant: PromptVariant,
    /// The user's persona name, for `{{user}}`.
    pub user_name: String,
}

impl PromptOptions {
    pub fn new(variant: PromptVariant, user_name: impl Into<String>) -> Self {
        Self {
            variant,
            user_name: user_name.into(),
        }
    }
}

/// Which of HER's two system-prompt layouts to use (training data or CoSER evaluation).
pub use crate::generation::PromptVariant;
