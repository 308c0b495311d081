//! The detailed rating dialog.

pub mod state;
pub(crate) mod view;
