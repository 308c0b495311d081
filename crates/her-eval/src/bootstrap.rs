//! Confidence intervals for the mean scores: a percentile bootstrap over the
//! evaluated units (one unit = one scene played with one seed), seeded so a
//! report can be regenerated exactly. Comparisons resample the units *paired*:
//! base and adapter played the same scenes with the same seeds, so the
//! difference per unit carries the signal and the scene-to-scene spread cancels.

pub use her_core::prefs::stats::Interval;
use her_core::prefs::stats::{StatsError, bootstrap_statistic};

use super::score::mean;

/// Columns per unit: the four dimensions and the overall score.
pub const COLUMNS: usize = 5;

/// 95% intervals of the column means of `units`.
pub fn mean_intervals(
    units: &[[f64; COLUMNS]],
    resamples: usize,
    seed: u64,
) -> Result<[Interval; COLUMNS], StatsError> {
    let intervals = bootstrap_statistic(units, resamples, seed, |sample| {
        Ok(column_means(sample).to_vec())
    })?;
    to_array(intervals)
}

/// 95% intervals of the mean of `candidate − baseline`, unit by unit.
/// Both slices hold the same units in the same order.
pub fn paired_difference_intervals(
    baseline: &[[f64; COLUMNS]],
    candidate: &[[f64; COLUMNS]],
    resamples: usize,
    seed: u64,
) -> Result<[Interval; COLUMNS], StatsError> {
    let differences: Vec<[f64; COLUMNS]> = baseline
        .iter()
        .zip(candidate)
        .map(|(b, c)| std::array::from_fn(|i| c[i] - b[i]))
        .collect();
    mean_intervals(&differences, resamples, seed)
}

fn column_means(units: &[[f64; COLUMNS]]) -> [f64; COLUMNS] {
    std::array::from_fn(|i| mean(&units.iter().map(|u| u[i]).collect::<Vec<_>>()))
}

fn to_array(intervals: Vec<Interval>) -> Result<[Interval; COLUMNS], StatsError> {
    intervals.try_into().map_err(|_| StatsError::Empty)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn unit(x: f64) -> [f64; COLUMNS] {
        [x, x + 1.0, x + 2.0, x + 3.0, x + 1.5]
    }

    #[test]
    fn deterministic_for_a_seed() {
        let units: Vec<_> = [40.0, 55.0, 70.0, 90.0, 62.0].map(unit).to_vec();
        let a = mean_intervals(&units, 1000, 7).unwrap();
        let b = mean_intervals(&units, 1000, 7).unwrap();
        assert_eq!(a, b);
        let c = mean_intervals(&units, 1000, 8).unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn interval_contains_the_mean() {
        let units: Vec<_> = [40.0, 55.0, 70.0, 90.0, 62.0, 12.5, 100.0]
            .map(unit)
            .to_vec();
        for seed in 0..20 {
            for iv in mean_intervals(&units, 1000, seed).unwrap() {
                assert!(iv.contains(iv.point), "{iv:?}");
                assert!(iv.low < iv.high);
            }
        }
        let means = mean_intervals(&units, 10, 0).unwrap();
        let want = units.iter().map(|u| u[0]).sum::<f64>() / units.len() as f64;
        assert!((means[0].point - want).abs() < 1e-9);
    }

    /// Two units, 0 and 10: a resample's mean is 0, 5 or 10 (chances ¼, ½, ¼),
    /// so with enough resamples the 2.5% and 97.5% quantiles are 0 and 10.
    #[test]
    fn hand_checked_two_units() {
        let units = [unit(0.0), unit(10.0)];
        let iv = mean_intervals(&units, 2000, 3).unwrap();
        assert_eq!((iv[0].low, iv[0].point, iv[0].high), (0.0, 5.0, 10.0));
        // One unit, or identical units: no spread at all.
        let iv = mean_intervals(&[unit(42.0); 3], 100, 3).unwrap();
        assert_eq!((iv[0].low, iv[0].point, iv[0].high), (42.0, 42.0, 42.0));
    }

    #[test]
    fn paired_differences_cancel_the_scene_spread() {
        // Scenes differ a lot, the candidate is always exactly 5 better.
        let base: Vec<_> = [10.0, 50.0, 90.0].map(unit).to_vec();
        let cand: Vec<_> = [15.0, 55.0, 95.0].map(unit).to_vec();
        let d = paired_difference_intervals(&base, &cand, 500, 1).unwrap();
        for iv in d {
            assert!((iv.low - 5.0).abs() < 1e-9 && (iv.high - 5.0).abs() < 1e-9);
        }
    }

    #[test]
    fn empty_input_is_an_error() {
        assert!(mean_intervals(&[], 10, 0).is_err());
        assert!(mean_intervals(&[unit(1.0)], 0, 0).is_err());
    }
}
