//! Lorebooks (SillyTavern's World Info): book files, import and export, and
//! the activation engine that decides which entries go into the prompt and
//! says why.
//!
//! - `model`: the book as stored in `characters/lore/NAME.toml`;
//! - `st_json` / `v3`: SillyTavern World Info JSON, lorebook V3 and card
//!   `character_book`s, in and out;
//! - `activate`: the engine (keys, recursion, groups, timed effects, budget);
//! - `explain` / `placement`: what the engine reports and where entries go.
//!
//! Pure code: no terminal, engine or configuration loading, so it moves to
//! the core crate as it is.

pub mod activate;
pub mod decorators;
pub mod error;
pub mod explain;
pub mod file;
pub mod import;
mod json;
pub mod model;
pub mod placement;
pub mod st_json;
pub mod v3;
pub mod validate;

pub use activate::{
    Budget, Library, ScanContext, ScanInput, ScanMessage, ScanOutcome, ScanSettings, Scope,
    Strategy, TimedEvent, TimedState,
};
pub use error::LoreError;
pub use explain::{Activation, LeftOut, Placement, Reason, Source, Why};
pub use file::{LORE_DIR, find_book, load_book, lore_dir, parse_book, save_book};
pub use import::{BookFormat, ImportedBook, export_book, parse_book_json, read_book_file};
pub use model::{Book, BookDefaults, Entry, Logic, Position, RecursionDelay, Role};
pub use placement::{Arranged, arrange};
