//! What is drawn over a screen: each overlay a state (in `app::Overlay`
//! or its own module), keys and a view.

pub mod arena;
pub(crate) mod dialogs;
pub mod evals;
pub(crate) mod lists;
pub mod rate;
pub mod rl_rate;
pub mod runs;
pub(crate) mod view;
