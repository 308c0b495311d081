//! Views: pure functions of borrowed state that draw into a frame.

mod dialogs;
mod evals;
mod overlays;
mod rl_rate;
mod runs;
mod screens;
pub mod transcript;
pub mod wrap;

pub use screens::{draw, transcript_rows};
