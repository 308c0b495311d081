//! Evaluations with their scores per dimension.

pub(crate) mod update;
pub(crate) mod view;
