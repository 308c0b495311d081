//! What is drawn over a screen: each overlay in its folder with its state
//! (in `app::Overlay`, or its own `state.rs`), its keys and its view;
//! `dialogs`, `lists` and `scroll` route keys to them.

pub mod arena;
pub mod confirm;
pub(crate) mod dialogs;
pub mod evals;
pub mod help;
pub(crate) mod lists;
pub mod locked;
pub mod prompt;
pub mod rate;
pub mod raw;
pub mod rl_rate;
pub mod runs;
pub(crate) mod scroll;
pub mod tokens;
pub mod tree;
pub(crate) mod view;
