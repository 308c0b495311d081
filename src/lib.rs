//! her-studio: role-play with HER-style models in the terminal. This crate
//! is the app: config loading, the TUI, the commands and their flags, the
//! benchmarks' orchestration and `her doctor`. The layers it drives are the
//! workspace's crates (her-core, her-gguf, her-engine, her-train, her-eval);
//! see ARCHITECTURE.md.

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
