//! The one training loop every method runs: data → held-out split →
//! manifest → steps (stop, checkpoints, held-out evaluations, progress) →
//! export, driven by an [`objective::Objective`] per method.

pub mod trainer;
