//! Percentile bootstrap confidence intervals (95%: the 2.5% and 97.5%
//! quantiles of the statistic over resamples drawn with replacement).
//!
//! Seeded with our own PRNG, so a seed always reproduces the same interval.

use serde::{Deserialize, Serialize};

use crate::prefs::stats::bt::{BtOptions, Comparison, fit_bt_with};
use crate::prefs::stats::{Result, StatsError};
use crate::rng::Rng;

/// Lower and upper quantiles of the reported interval.
pub const LOWER_QUANTILE: f64 = 0.025;
pub const UPPER_QUANTILE: f64 = 0.975;

/// A point estimate with its bootstrap interval.
///
/// A percentile interval is not forced to contain `point`; for skewed
/// statistics it can (rarely) miss it, and hiding that would mislead.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
    pub point: f64,
}

impl Interval {
    pub fn width(&self) -> f64 {
        self.high - self.low
    }

    pub fn contains(&self, x: f64) -> bool {
        self.low <= x && x <= self.high
    }

    /// Applies an increasing transform, e.g. `elo_from_score` to show a
    /// log-strength interval on the Elo-like scale.
    pub fn map(self, f: impl Fn(f64) -> f64) -> Self {
        Self {
            low: f(self.low),
            high: f(self.high),
            point: f(self.point),
        }
    }
}

/// Quantile `q` of ascending `sorted` data by linear interpolation between
/// order statistics (R's type 7, the common default). `None` if `sorted` is
/// empty or `q` is outside [0, 1].
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let frac = h - h.floor();
    let a = *sorted.get(lo)?;
    match sorted.get(lo + 1) {
        Some(&b) if frac > 0.0 => Some(a + frac * (b - a)),
        _ => Some(a),
    }
}

/// Bootstrap intervals for a vector-valued `statistic` of `data`.
///
/// `statistic` must return the same number of values on every call; it is
/// evaluated once on `data` (the points) and once per resample. Its errors
/// are passed through.
pub fn bootstrap_statistic<T, F>(
    data: &[T],
    resamples: usize,
    seed: u64,
    mut statistic: F,
) -> Result<Vec<Interval>>
where
    T: Clone,
    F: FnMut(&[T]) -> Result<Vec<f64>>,
{
    if data.is_empty() {
        return Err(StatsError::Empty);
    }
    if resamples == 0 {
        return Err(StatsError::NoResamples);
    }
    let point = statistic(data)?;
    intervals_around(data, point, resamples, seed, statistic)
}

fn intervals_around<T, F>(
    data: &[T],
    point: Vec<f64>,
    resamples: usize,
    seed: u64,
    mut statistic: F,
) -> Result<Vec<Interval>>
where
    T: Clone,
    F: FnMut(&[T]) -> Result<Vec<f64>>,
{
    if resamples == 0 {
        return Err(StatsError::NoResamples);
    }
    let mut rng = Rng::seed_from_u64(seed);
    let mut draws = vec![Vec::with_capacity(resamples); point.len()];
    let mut sample: Vec<T> = Vec::with_capacity(data.len());
    for _ in 0..resamples {
        sample.clear();
        for _ in 0..data.len() {
            if let Some(x) = data.get(rng.below(data.len())) {
                sample.push(x.clone());
            }
        }
        for (column, value) in draws.iter_mut().zip(statistic(&sample)?) {
            column.push(value);
        }
    }
    Ok(point
        .into_iter()
        .zip(draws)
        .map(|(point, mut column)| {
            column.sort_by(f64::total_cmp);
            Interval {
                low: percentile(&column, LOWER_QUANTILE).unwrap_or(point),
                high: percentile(&column, UPPER_QUANTILE).unwrap_or(point),
                point,
            }
        })
        .collect())
}

/// 95% intervals for the Bradley–Terry log-strengths (centred scores) of
/// items `0..n`, resampling whole comparisons, with default fit options.
pub fn bootstrap_bt(
    comparisons: &[Comparison],
    n: usize,
    resamples: usize,
    seed: u64,
) -> Result<Vec<Interval>> {
    bootstrap_bt_with(comparisons, n, &BtOptions::default(), resamples, seed)
}

/// Like [`bootstrap_bt`] with explicit fit options. With `prior_strength`
/// 0 a resample easily loses an item's last loss, and the resulting
/// `NotIdentifiable` error is returned: keep the prior positive here.
pub fn bootstrap_bt_with(
    comparisons: &[Comparison],
    n: usize,
    options: &BtOptions,
    resamples: usize,
    seed: u64,
) -> Result<Vec<Interval>> {
    if resamples == 0 {
        return Err(StatsError::NoResamples);
    }
    // The full-data fit validates the input and gives the points.
    let point = fit_bt_with(comparisons, n, options)?.scores;
    // Zero-weight records carry no information; dropping them means no
    // resample can consist of nothing but them.
    let informative: Vec<Comparison> = comparisons
        .iter()
        .filter(|c| c.weight > 0.0)
        .copied()
        .collect();
    intervals_around(&informative, point, resamples, seed, |sample| {
        Ok(fit_bt_with(sample, n, options)?.scores)
    })
}

/// 95% interval for the mean of `values`.
pub fn bootstrap_mean(values: &[f64], resamples: usize, seed: u64) -> Result<Interval> {
    if let Some(position) = values.iter().position(|v| !v.is_finite()) {
        return Err(StatsError::NonFiniteValue { position });
    }
    let intervals = bootstrap_statistic(values, resamples, seed, |xs| {
        Ok(vec![xs.iter().sum::<f64>() / xs.len() as f64])
    })?;
    intervals.into_iter().next().ok_or(StatsError::Empty)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::prefs::stats::bt::{Outcome, elo_from_score, fit_bt};

    fn uniform(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.next_f64()).collect()
    }

    /// Items 0 < 1 < 2 in strength, with some upsets and ties.
    fn league(copies: usize) -> Vec<Comparison> {
        use Outcome::*;
        let one = [
            (1, 0, AWins),
            (1, 0, AWins),
            (0, 1, AWins),
            (1, 0, Tie),
            (2, 1, AWins),
            (2, 1, AWins),
            (1, 2, AWins),
            (2, 1, Tie),
            (2, 0, AWins),
            (2, 0, AWins),
            (2, 0, AWins),
            (0, 2, AWins),
        ];
        (0..copies)
            .flat_map(|_| one.iter().map(|&(a, b, o)| Comparison::new(a, b, o)))
            .collect()
    }

    #[test]
    fn percentile_interpolates_linearly() {
        let xs = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&xs, 0.0), Some(1.0));
        assert_eq!(percentile(&xs, 0.5), Some(2.5));
        assert_eq!(percentile(&xs, 1.0), Some(4.0));
        assert!((percentile(&xs, 0.025).unwrap() - 1.075).abs() < 1e-12);
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&xs, 1.5), None);
    }

    #[test]
    fn mean_interval_contains_point_and_is_reproducible() {
        let xs = uniform(200, 3);
        let a = bootstrap_mean(&xs, 2_000, 11).unwrap();
        assert!(a.contains(a.point) && a.low < a.high);
        assert!((a.point - xs.iter().sum::<f64>() / 200.0).abs() < 1e-15);
        assert_eq!(a, bootstrap_mean(&xs, 2_000, 11).unwrap());
        assert_ne!(a, bootstrap_mean(&xs, 2_000, 12).unwrap());
    }

    #[test]
    fn mean_interval_narrows_like_one_over_root_n() {
        let small = bootstrap_mean(&uniform(50, 1), 2_000, 5).unwrap();
        let large = bootstrap_mean(&uniform(5_000, 2), 2_000, 5).unwrap();
        assert!(large.width() < small.width() / 5.0);
        // Normal theory: 2 * 1.96 * sd / sqrt(n), with sd = 1/sqrt(12) for U(0,1).
        let theory = 2.0 * 1.96 / 12f64.sqrt() / 5_000f64.sqrt();
        assert!((large.width() / theory - 1.0).abs() < 0.15, "{large:?}");
    }

    #[test]
    fn constant_data_gives_degenerate_interval() {
        let i = bootstrap_mean(&[2.5; 10], 100, 0).unwrap();
        assert_eq!((i.low, i.high, i.point), (2.5, 2.5, 2.5));
    }

    #[test]
    fn mean_rejects_bad_input() {
        assert_eq!(bootstrap_mean(&[], 10, 0), Err(StatsError::Empty));
        assert_eq!(bootstrap_mean(&[1.0], 0, 0), Err(StatsError::NoResamples));
        assert_eq!(
            bootstrap_mean(&[1.0, f64::NAN], 10, 0),
            Err(StatsError::NonFiniteValue { position: 1 })
        );
    }

    #[test]
    fn bt_intervals_contain_points_and_are_reproducible() {
        let data = league(3);
        let intervals = bootstrap_bt(&data, 3, 500, 42).unwrap();
        let fit = fit_bt(&data, 3).unwrap();
        assert_eq!(intervals.len(), 3);
        for (interval, score) in intervals.iter().zip(&fit.scores) {
            assert_eq!(interval.point, *score);
            assert!(interval.contains(interval.point), "{interval:?}");
            assert!(interval.width() > 0.0);
        }
        assert_eq!(intervals, bootstrap_bt(&data, 3, 500, 42).unwrap());
        assert_ne!(intervals, bootstrap_bt(&data, 3, 500, 43).unwrap());
        let elo = intervals[2].map(elo_from_score);
        assert!(elo.low < elo.point && elo.point < elo.high && elo.point > 1000.0);
    }

    #[test]
    fn bt_intervals_narrow_with_more_data() {
        let small = bootstrap_bt(&league(2), 3, 400, 9).unwrap();
        let large = bootstrap_bt(&league(32), 3, 400, 9).unwrap();
        for (s, l) in small.iter().zip(&large) {
            assert!(l.width() < s.width() / 2.0, "{s:?} vs {l:?}");
        }
    }

    #[test]
    fn bt_errors_pass_through() {
        assert_eq!(bootstrap_bt(&[], 3, 10, 0), Err(StatsError::NoComparisons));
        assert_eq!(
            bootstrap_bt(&league(1), 3, 0, 0),
            Err(StatsError::NoResamples)
        );
        let mut data = league(1);
        data.push(Comparison::new(0, 7, Outcome::Tie));
        assert!(matches!(
            bootstrap_bt(&data, 3, 10, 0),
            Err(StatsError::IndexOutOfRange { index: 7, .. })
        ));
    }

    #[test]
    fn zero_weight_records_are_ignored() {
        let mut data = league(2);
        let base = bootstrap_bt(&data, 3, 200, 1).unwrap();
        data.extend([Comparison::weighted(0, 1, Outcome::AWins, 0.0); 50]);
        assert_eq!(base, bootstrap_bt(&data, 3, 200, 1).unwrap());
    }
}
