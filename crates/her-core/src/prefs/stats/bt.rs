//! Bradley–Terry ratings from pairwise preferences.
//!
//! Model: P(i beats j) = p_i / (p_i + p_j), with log-strength θ_i = ln p_i.
//! Fitted by Newton's method with a backtracking line search on the
//! (penalised) log-likelihood, which is concave: the line search makes every
//! step an improvement, and near the optimum convergence is quadratic. (Hunter's
//! 2004 MM iteration is simpler but needed ~10⁴ steps for an item with only
//! wins, and its step-size stopping rule overstated the accuracy.)

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::prefs::stats::{Result, StatsError};

/// Points per unit of log-strength on the Elo-like scale: a 400-point gap
/// means 10:1 odds, as in chess Elo.
pub const ELO_SCALE: f64 = 400.0 / std::f64::consts::LN_10;
/// Elo-like rating of an item with average strength.
pub const ELO_BASE: f64 = 1000.0;

/// Who was preferred in one comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    AWins,
    BWins,
    /// Counts as half a win for each side.
    Tie,
}

/// One judged pair of items (indices into `0..n`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub a: usize,
    pub b: usize,
    pub outcome: Outcome,
    /// How many comparisons this record stands for; fractional values are
    /// allowed (e.g. expected counts). Defaults to 1.
    #[serde(default = "unit_weight")]
    pub weight: f64,
}

fn unit_weight() -> f64 {
    1.0
}

impl Comparison {
    pub fn new(a: usize, b: usize, outcome: Outcome) -> Self {
        Self::weighted(a, b, outcome, 1.0)
    }

    pub fn weighted(a: usize, b: usize, outcome: Outcome, weight: f64) -> Self {
        Self {
            a,
            b,
            outcome,
            weight,
        }
    }
}

/// Fitting options.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BtOptions {
    /// Pseudo-count λ: each item gets λ virtual ties against a fixed
    /// reference item of log-strength 0. Keeps items with only wins (or only
    /// losses) finite by shrinking them towards the reference; for small θ the
    /// penalty is ≈ λθ²/8, an L2 prior. The default 0.1 (a tenth of a game per
    /// item) barely moves well-measured items. 0 gives the plain
    /// maximum-likelihood fit, which exists only when the "took a win from"
    /// graph is strongly connected (Ford 1957); otherwise `NotIdentifiable`.
    pub prior_strength: f64,
    pub max_iterations: usize,
    /// Stop when the Newton step changes no log-strength by more than this;
    /// convergence is quadratic, so the error left is far smaller still.
    pub tolerance: f64,
}

impl Default for BtOptions {
    fn default() -> Self {
        Self {
            prior_strength: 0.1,
            max_iterations: 100,
            tolerance: 1e-10,
        }
    }
}

/// Result of a Bradley–Terry fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BtFit {
    /// Log-strengths, centred to mean 0 (only differences are identified).
    pub scores: Vec<f64>,
    /// `ELO_SCALE * score + ELO_BASE`.
    pub elo_like: Vec<f64>,
    /// Newton steps taken.
    pub iterations: usize,
    /// False if `max_iterations` ran out (or the line search stalled) before
    /// `tolerance` was met; `scores` are then the last, finite, iterate.
    pub converged: bool,
}

/// Converts a centred log-strength to the Elo-like scale.
pub fn elo_from_score(score: f64) -> f64 {
    ELO_SCALE * score + ELO_BASE
}

/// Fits with [`BtOptions::default`] (a small prior, so always finite).
pub fn fit_bt(comparisons: &[Comparison], n: usize) -> Result<BtFit> {
    fit_bt_with(comparisons, n, &BtOptions::default())
}

/// Fits Bradley–Terry log-strengths for items `0..n`.
///
/// Errors: `NoItems` for n = 0; `IndexOutOfRange`, `SelfComparison` or
/// `InvalidWeight` for a bad record; `NoComparisons` when there is no
/// positive weight; `InvalidOption`; `NotIdentifiable` (prior 0 only).
pub fn fit_bt_with(comparisons: &[Comparison], n: usize, options: &BtOptions) -> Result<BtFit> {
    let lambda = options.prior_strength;
    if !(lambda.is_finite() && lambda >= 0.0) {
        return Err(StatsError::InvalidOption {
            name: "prior_strength",
            value: lambda,
        });
    }
    if !(options.tolerance.is_finite() && options.tolerance >= 0.0) {
        return Err(StatsError::InvalidOption {
            name: "tolerance",
            value: options.tolerance,
        });
    }
    let tally = Tally::new(comparisons, n)?;
    if lambda == 0.0 && !tally.strongly_connected() {
        return Err(StatsError::NotIdentifiable);
    }

    // With a prior every item is tied to the fixed reference, so all are free;
    // without one only differences are identified, so item 0 is pinned at 0.
    let first_free = usize::from(lambda == 0.0);
    let mut theta = vec![0.0_f64; n];
    let mut current = tally.log_posterior(&theta, lambda);
    let mut iterations = 0;
    let mut converged = false;
    while iterations < options.max_iterations {
        iterations += 1;
        let (gradient, curvature) = tally.derivatives(&theta, lambda);
        let step = newton_step(&gradient, &curvature, n, first_free);
        let size = step.iter().fold(0.0_f64, |m, s| m.max(s.abs()));
        let slope: f64 = step
            .iter()
            .zip(&gradient[first_free..])
            .map(|(s, g)| s * g)
            .sum();
        // Backtrack until the Armijo condition holds; the slack absorbs
        // rounding in the objective once the step is at noise level.
        let slack = 1e-12 * (1.0 + current.abs());
        let mut t = 1.0;
        let mut accepted = None;
        while t >= 1e-10 {
            let mut candidate = theta.clone();
            for (c, s) in candidate[first_free..].iter_mut().zip(&step) {
                *c += t * s;
            }
            let value = tally.log_posterior(&candidate, lambda);
            if value >= current + 1e-4 * t * slope - slack {
                accepted = Some((candidate, value));
                break;
            }
            t *= 0.5;
        }
        let Some((next, value)) = accepted else {
            break; // stalled: keep the last iterate, report not converged
        };
        theta = next;
        current = value;
        if size <= options.tolerance {
            converged = true;
            break;
        }
    }
    let mean = theta.iter().sum::<f64>() / n as f64;
    let scores: Vec<f64> = theta.iter().map(|t| t - mean).collect();
    let elo_like = scores.iter().map(|&s| elo_from_score(s)).collect();
    Ok(BtFit {
        scores,
        elo_like,
        iterations,
        converged,
    })
}

/// Newton direction for the free coordinates `first_free..n`: solves
/// curvature · step = gradient. `curvature` (the negative Hessian, row-major
/// n × n) is positive definite on the free block whenever the fit is
/// identified; if rounding breaks that, fall back to diagonal scaling, which is
/// still an ascent direction for the line search.
fn newton_step(gradient: &[f64], curvature: &[f64], n: usize, first_free: usize) -> Vec<f64> {
    let k = n - first_free;
    let mut a: Vec<f64> = curvature
        .chunks(n)
        .skip(first_free)
        .flat_map(|row| row.iter().skip(first_free).copied())
        .collect();
    let mut step = gradient[first_free..].to_vec();
    if cholesky_solve(&mut a, &mut step, k) {
        return step;
    }
    (first_free..n)
        .map(|i| gradient[i] / curvature[i * n + i].max(1e-12))
        .collect()
}

/// Solves A x = b in place (b becomes x) for symmetric positive definite
/// row-major k × k A, overwriting A's lower triangle with its Cholesky factor.
/// Returns false if A is not numerically positive definite.
fn cholesky_solve(a: &mut [f64], b: &mut [f64], k: usize) -> bool {
    for j in 0..k {
        let d = a[j * k + j] - (0..j).map(|p| a[j * k + p] * a[j * k + p]).sum::<f64>();
        if d.is_nan() || d <= 0.0 {
            return false;
        }
        let d = d.sqrt();
        a[j * k + j] = d;
        for i in j + 1..k {
            let dot: f64 = (0..j).map(|p| a[i * k + p] * a[j * k + p]).sum();
            a[i * k + j] = (a[i * k + j] - dot) / d;
        }
    }
    for i in 0..k {
        let dot: f64 = (0..i).map(|p| a[i * k + p] * b[p]).sum();
        b[i] = (b[i] - dot) / a[i * k + i];
    }
    for i in (0..k).rev() {
        let dot: f64 = (i + 1..k).map(|p| a[p * k + i] * b[p]).sum();
        b[i] = (b[i] - dot) / a[i * k + i];
    }
    true
}

/// σ(x) = 1 / (1 + e^−x), written to avoid overflow for large |x|.
fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// ln σ(x) without overflow or loss of precision in the tails.
fn log_sigmoid(x: f64) -> f64 {
    -((-x).max(0.0) + (-x.abs()).exp().ln_1p())
}

/// Win totals of one unordered pair `i < j`.
#[derive(Debug, Clone)]
struct Pair {
    i: usize,
    j: usize,
    w_ij: f64,
    w_ji: f64,
}

/// Comparisons aggregated into sufficient statistics.
#[derive(Debug, Clone)]
struct Tally {
    n: usize,
    /// Total (weighted) wins per item, ties counting half.
    wins: Vec<f64>,
    /// Sorted by (i, j), so iteration order does not depend on input order.
    pairs: Vec<Pair>,
}

impl Tally {
    fn new(comparisons: &[Comparison], n: usize) -> Result<Self> {
        if n == 0 {
            return Err(StatsError::NoItems);
        }
        let mut map: BTreeMap<(usize, usize), (f64, f64)> = BTreeMap::new();
        let mut total = 0.0;
        for (position, c) in comparisons.iter().enumerate() {
            for index in [c.a, c.b] {
                if index >= n {
                    return Err(StatsError::IndexOutOfRange { position, index, n });
                }
            }
            if c.a == c.b {
                return Err(StatsError::SelfComparison {
                    position,
                    index: c.a,
                });
            }
            if !(c.weight.is_finite() && c.weight >= 0.0) {
                return Err(StatsError::InvalidWeight {
                    position,
                    weight: c.weight,
                });
            }
            let (a_share, b_share) = match c.outcome {
                Outcome::AWins => (c.weight, 0.0),
                Outcome::BWins => (0.0, c.weight),
                Outcome::Tie => (0.5 * c.weight, 0.5 * c.weight),
            };
            // Store under (low, high) so (a, b) and (b, a) share one entry.
            let (key, low_share, high_share) = if c.a < c.b {
                ((c.a, c.b), a_share, b_share)
            } else {
                ((c.b, c.a), b_share, a_share)
            };
            let entry = map.entry(key).or_insert((0.0, 0.0));
            entry.0 += low_share;
            entry.1 += high_share;
            total += c.weight;
        }
        if total <= 0.0 {
            return Err(StatsError::NoComparisons);
        }
        let mut wins = vec![0.0; n];
        let mut pairs = Vec::with_capacity(map.len());
        for ((i, j), (w_ij, w_ji)) in map {
            if w_ij + w_ji > 0.0 {
                wins[i] += w_ij;
                wins[j] += w_ji;
                pairs.push(Pair { i, j, w_ij, w_ji });
            }
        }
        Ok(Self { n, wins, pairs })
    }

    /// Log-likelihood plus the prior: each item's λ virtual ties against the
    /// reference (log-strength 0) add λ/2 · [ln σ(θ) + ln σ(−θ)].
    fn log_posterior(&self, theta: &[f64], lambda: f64) -> f64 {
        let data: f64 = self
            .pairs
            .iter()
            .map(|pair| {
                let d = theta[pair.i] - theta[pair.j];
                pair.w_ij * log_sigmoid(d) + pair.w_ji * log_sigmoid(-d)
            })
            .sum();
        let prior: f64 = theta
            .iter()
            .map(|&t| 0.5 * lambda * (log_sigmoid(t) + log_sigmoid(-t)))
            .sum();
        data + prior
    }

    /// Gradient and negative Hessian (row-major n × n) of `log_posterior`.
    fn derivatives(&self, theta: &[f64], lambda: f64) -> (Vec<f64>, Vec<f64>) {
        let n = self.n;
        let mut gradient: Vec<f64> = self.wins.iter().map(|w| w + 0.5 * lambda).collect();
        let mut curvature = vec![0.0; n * n];
        for pair in &self.pairs {
            let (i, j) = (pair.i, pair.j);
            let d = theta[i] - theta[j];
            let (s, r) = (sigmoid(d), sigmoid(-d)); // P(i beats j), P(j beats i)
            let total = pair.w_ij + pair.w_ji;
            gradient[i] -= total * s;
            gradient[j] -= total * r;
            let c = total * s * r;
            curvature[i * n + i] += c;
            curvature[j * n + j] += c;
            curvature[i * n + j] -= c;
            curvature[j * n + i] -= c;
        }
        for (i, &t) in theta.iter().enumerate() {
            gradient[i] -= lambda * sigmoid(t);
            curvature[i * n + i] += lambda * sigmoid(t) * sigmoid(-t);
        }
        (gradient, curvature)
    }

    /// Ford's (1957) condition for a finite MLE: in the digraph with an edge
    /// i -> j whenever i took some win from j, every item reaches every other.
    fn strongly_connected(&self) -> bool {
        let forward = self.reaches_all(|pair| (pair.w_ij > 0.0, pair.w_ji > 0.0));
        let backward = self.reaches_all(|pair| (pair.w_ji > 0.0, pair.w_ij > 0.0));
        forward && backward
    }

    /// Whether item 0 reaches all items; `dir` says if edges i->j and j->i exist.
    fn reaches_all(&self, dir: impl Fn(&Pair) -> (bool, bool)) -> bool {
        let mut adjacency = vec![Vec::new(); self.n];
        for pair in &self.pairs {
            let (ij, ji) = dir(pair);
            if ij {
                adjacency[pair.i].push(pair.j);
            }
            if ji {
                adjacency[pair.j].push(pair.i);
            }
        }
        let mut seen = vec![false; self.n];
        let mut stack = vec![0];
        seen[0] = true;
        while let Some(v) = stack.pop() {
            for &w in &adjacency[v] {
                if !seen[w] {
                    seen[w] = true;
                    stack.push(w);
                }
            }
        }
        seen.iter().all(|&s| s)
    }
}

// Tests live in bt/tests.rs; index loops there read like the matrix
// formulas they check.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::needless_range_loop)]
mod tests;
