//! Full screens: each a state, an update and a view.

pub mod annotate;
pub mod chat;
pub mod picker;
