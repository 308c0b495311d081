//! Statistics for human preference annotations: Bradley–Terry ratings,
//! bootstrap confidence intervals and inter-annotator agreement.
//!
//! Everything here is deterministic: the same input (and seed) gives the
//! same output, so reports can be regenerated and diffed.

pub mod agreement;
pub mod bootstrap;
pub mod bt;

pub use agreement::{cohen_kappa, krippendorff_alpha_nominal};
pub use bootstrap::{
    Interval, bootstrap_bt, bootstrap_bt_with, bootstrap_mean, bootstrap_statistic, percentile,
};
pub use bt::{
    BtFit, BtOptions, Comparison, ELO_BASE, ELO_SCALE, Outcome, elo_from_score, fit_bt, fit_bt_with,
};

use thiserror::Error;

/// Errors from the statistics functions. Every variant is a problem with the
/// input; none signals a bug, so callers can show the message to the user.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum StatsError {
    #[error("there are no items to rate (n = 0)")]
    NoItems,
    #[error("comparison #{position} refers to item {index}, but there are only {n} items")]
    IndexOutOfRange {
        position: usize,
        index: usize,
        n: usize,
    },
    #[error("comparison #{position} compares item {index} with itself")]
    SelfComparison { position: usize, index: usize },
    #[error("comparison #{position} has weight {weight}; weights must be finite and >= 0")]
    InvalidWeight { position: usize, weight: f64 },
    #[error("there are no comparisons (or all have zero weight)")]
    NoComparisons,
    #[error("option `{name}` has the invalid value {value}")]
    InvalidOption { name: &'static str, value: f64 },
    #[error(
        "without a prior the Bradley–Terry fit has no finite solution: some item never wins \
         or never loses against the rest (set prior_strength > 0)"
    )]
    NotIdentifiable,
    #[error("the annotators labelled different numbers of items ({a} vs {b})")]
    LengthMismatch { a: usize, b: usize },
    #[error("there is no data")]
    Empty,
    #[error("value #{position} is not a finite number")]
    NonFiniteValue { position: usize },
    #[error("the number of bootstrap resamples must be at least 1")]
    NoResamples,
    #[error("no unit has two or more values, so there is nothing to compare")]
    NoPairableValues,
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, StatsError>;
