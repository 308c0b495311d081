//! The raw overlay: the selected reply exactly as generated.

pub mod view;
