//! Training runs with their loss curves.

pub(crate) mod update;
pub(crate) mod view;
