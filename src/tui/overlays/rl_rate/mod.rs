//! The stars an RL run waits on.

pub mod state;
pub(crate) mod view;
