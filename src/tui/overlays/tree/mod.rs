//! The branch tree: every message, the active branch marked.

pub mod update;
pub mod view;
