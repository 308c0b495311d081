//! Chat front ends. The headless one reads stdin and writes stdout; the TUI
//! builds on the same conversation logic.

mod conversation;
mod headless;
pub mod prompt_view;

pub use conversation::{Conversation, TurnOutcome};
pub use headless::{HeadlessOptions, run_headless};
