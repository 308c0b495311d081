//! Training runs with their loss curves.

pub(crate) mod view;
