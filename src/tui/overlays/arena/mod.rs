//! The blind A/B round.

pub mod state;
pub(crate) mod update;
pub(crate) mod view;
