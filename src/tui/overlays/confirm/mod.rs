//! A yes/no question.

pub mod state;
pub mod update;
pub mod view;
