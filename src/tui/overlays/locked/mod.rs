//! The choice for a session another window writes to.

pub mod state;
pub mod update;
pub mod view;
