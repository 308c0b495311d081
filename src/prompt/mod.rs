//! Building the exact prompt HER models were trained on.
//!
//! Pure functions: a character and a transcript in, ChatML text out. The
//! engine sees the result as a [`crate::engine::PromptSource`] so it can drop
//! the oldest turns when the context window is full.

mod chatml;
mod system;

pub use chatml::{CONVERSATION_START, HerPrompt, Line, Turn, TurnRole};
pub use system::{Section, system_prompt, system_sections};

/// Which of HER's two system-prompt layouts to use (training data or CoSER evaluation).
pub use crate::config::PromptVariant;
