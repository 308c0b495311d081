//! The detailed rating dialog.

pub mod state;
pub(crate) mod update;
pub(crate) mod view;
