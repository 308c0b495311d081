//! `her bench …`: performance figures as ratios against a baseline measured
//! in the same run, so a busy or slow machine does not distort them.

pub mod attention;
pub mod engine;
pub mod gpu_parity;
pub mod logits;
pub mod rl;
pub mod samplers;
pub mod train;
mod train_packing;
mod train_report;

/// Median of a non-empty list (0.0 for an empty one).
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 0 {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}
