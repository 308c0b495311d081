//! The character and session pickers.

pub mod state;
pub mod update;
pub(crate) mod view;
