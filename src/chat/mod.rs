//! Chat front ends. The headless one reads stdin and writes stdout; the TUI
//! builds on the same conversation logic.

mod conversation;
mod headless;
pub mod prompt_view;
mod record;
mod scene;
pub mod story;

pub use conversation::{Conversation, TurnOutcome, character_sampling, stream_reply};
pub use headless::{HeadlessError, HeadlessOptions, Saving, run_headless, run_headless_scene};
pub use record::{
    Recorder, new_header, reply_message, role_of_speaker, start_session, transcript_of,
};
pub use scene::SceneConversation;
