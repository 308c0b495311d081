//! The stars an RL run waits on.

pub mod state;
pub(crate) mod update;
pub(crate) mod view;
