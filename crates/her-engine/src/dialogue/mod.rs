//! The dialogue layer: a turn generated, streamed and recorded, for one
//! character or a scene, and the judge run on a backend. The TUI, headless
//! chat, eval and RL rollouts all build on it.

mod conversation;
pub mod judge;
mod record;
mod scene;

pub use conversation::{Conversation, TurnOutcome, character_sampling, stream_reply};
pub use record::{
    Recorder, new_header, reply_message, role_of_speaker, start_session, transcript_of,
};
pub use scene::SceneConversation;
