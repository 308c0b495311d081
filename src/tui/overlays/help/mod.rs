//! The help overlay: keys by layer and the commands.

pub mod view;
