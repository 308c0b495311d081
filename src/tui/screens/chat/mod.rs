//! The chat: the open session, its composer and transcript, replies and
//! their saving, slash commands, the story (lore, note, memory) and the
//! rolling summary.

pub mod commands;
pub mod composer;
pub(crate) mod reply;
pub mod session;
pub(crate) mod steer;
pub(crate) mod story;
pub mod story_commands;
pub(crate) mod summary;
pub mod transcript;
pub mod update;
pub(crate) mod view;
pub mod writes;
