//! The text overlay of `/prompt`, `/lore` and `/memory`.

pub mod view;
