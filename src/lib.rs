//! her-studio: role-play with HER-style models in the terminal.
//!
//! The pure core (format, prompt, character, config) knows nothing of
//! terminals or threads; the engine owns llama.cpp on its own thread.

pub mod annotate;
pub mod app;
pub mod bench;
pub mod cli;
pub mod commands;
pub mod config;
pub mod doctor;
pub mod logging;
pub mod studio;
pub mod tui;

// The core's modules under their old paths while the layers move into crates.
pub use her_core::{
    character, format, fsutil, generation, hashing, judge, lore, prefs, prompt, session, story,
};
pub use her_engine as engine;
pub use her_engine::dialogue as chat;
pub use her_eval as eval;
pub use her_gguf as gguf;
pub use her_train as train;
