//! Evaluations with their scores per dimension.

pub(crate) mod view;
