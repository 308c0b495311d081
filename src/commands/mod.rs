//! Runners for the commands that are more than a call into one module.

pub mod annotate;
pub mod chat;
pub mod eval;
pub mod import_adapter;
pub mod judge;
pub mod prefs;
pub mod prompt;
pub mod train;
pub mod train_plan;
pub mod train_rl;
