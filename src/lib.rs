//! her-studio: role-play with HER-style models in the terminal.
//!
//! The pure core (format, prompt, character, config) knows nothing of
//! terminals or threads; the engine owns llama.cpp on its own thread.

pub mod annotate;
pub mod app;
pub mod bench;
pub mod character;
pub mod chat;
pub mod cli;
pub mod commands;
pub mod config;
pub mod doctor;
pub mod engine;
pub mod eval;
pub mod format;
pub mod fsutil;
pub mod generation;
pub mod gguf;
pub mod hashing;
pub mod judge;
pub mod logging;
pub mod lore;
pub mod prefs;
pub mod prompt;
pub mod session;
pub mod story;
pub mod studio;
pub mod train;
pub mod tui;
