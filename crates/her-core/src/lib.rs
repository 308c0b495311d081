//! her-studio's pure core: the HER reply format, prompt building, session
//! logs, characters and scenes, lorebooks and the story they add to a prompt,
//! preference records and exports, the judge's verdicts, and the vocabulary
//! every layer shares (sampler settings, prompt source, provenance).
//!
//! No llama.cpp, no candle, no terminal, no async runtime: everything here is
//! plain data and pure functions plus bounded, atomic file I/O.

pub mod character;
pub mod chatml;
pub mod format;
pub mod fsutil;
pub mod generation;
pub mod hashing;
pub mod judge;
pub mod lore;
pub mod prefs;
pub mod prompt;
pub mod rng;
pub mod sampling_edit;
pub mod session;
pub mod story;
