//! Tests for `bt.rs`, kept apart so that file stays short.

use super::*;
use proptest::prelude::*;

fn exact() -> BtOptions {
    BtOptions {
        prior_strength: 0.0,
        max_iterations: 200,
        tolerance: 1e-12,
    }
}

/// Expected (fractional) win counts of every listed pair under strengths `p`.
fn expected_counts(p: &[f64], games: &[(usize, usize, f64)]) -> Vec<Comparison> {
    let mut out = Vec::new();
    for &(i, j, n_ij) in games {
        let share = p[i] / (p[i] + p[j]);
        out.push(Comparison::weighted(i, j, Outcome::AWins, n_ij * share));
        out.push(Comparison::weighted(
            i,
            j,
            Outcome::BWins,
            n_ij * (1.0 - share),
        ));
    }
    out
}

/// Independent solver for the test: Newton–Raphson on the log-likelihood
/// with `wins[i][j]` = wins of i over j, item `pin` held at 0, plain
/// Gaussian elimination, then centred over the first `keep` items.
fn newton_reference(wins: &[Vec<f64>], pin: usize, keep: usize) -> Vec<f64> {
    let m = wins.len();
    let free: Vec<usize> = (0..m).filter(|&i| i != pin).collect();
    let mut theta = vec![0.0_f64; m];
    for _ in 0..100 {
        let k = free.len();
        let mut h = vec![vec![0.0; k + 1]; k]; // augmented [ -H | g ]
        for (r, &i) in free.iter().enumerate() {
            for j in 0..m {
                if i == j {
                    continue;
                }
                let n_ij = wins[i][j] + wins[j][i];
                let pr = 1.0 / (1.0 + (theta[j] - theta[i]).exp());
                h[r][k] += wins[i][j] - n_ij * pr;
                let curv = n_ij * pr * (1.0 - pr);
                h[r][r] += curv;
                if let Some(c) = free.iter().position(|&f| f == j) {
                    h[r][c] -= curv;
                }
            }
        }
        for col in 0..k {
            let piv = (col..k)
                .max_by(|&a, &b| h[a][col].abs().total_cmp(&h[b][col].abs()))
                .unwrap();
            h.swap(col, piv);
            for row in 0..k {
                if row != col {
                    let f = h[row][col] / h[col][col];
                    for c in col..=k {
                        h[row][c] -= f * h[col][c];
                    }
                }
            }
        }
        for (r, &i) in free.iter().enumerate() {
            theta[i] += h[r][k] / h[r][r];
        }
    }
    let mean = theta[..keep].iter().sum::<f64>() / keep as f64;
    theta[..keep].iter().map(|t| t - mean).collect()
}

fn win_matrix(comparisons: &[Comparison], n: usize) -> Vec<Vec<f64>> {
    let mut w = vec![vec![0.0; n]; n];
    for c in comparisons {
        let (x, y) = match c.outcome {
            Outcome::AWins => (c.weight, 0.0),
            Outcome::BWins => (0.0, c.weight),
            Outcome::Tie => (0.5 * c.weight, 0.5 * c.weight),
        };
        w[c.a][c.b] += x;
        w[c.b][c.a] += y;
    }
    w
}

fn assert_close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol, "{a:?} vs {b:?}");
    }
}

fn sample() -> Vec<Comparison> {
    use Outcome::*;
    let raw = [
        (0, 1, AWins, 3),
        (0, 1, BWins, 1),
        (0, 1, Tie, 1),
        (1, 2, AWins, 2),
        (1, 2, BWins, 2),
        (2, 3, AWins, 4),
        (2, 3, BWins, 1),
        (2, 3, Tie, 2),
        (0, 3, AWins, 1),
        (0, 3, BWins, 1),
        (3, 1, AWins, 1),
    ];
    raw.iter()
        .flat_map(|&(a, b, o, k)| std::iter::repeat_n(Comparison::new(a, b, o), k))
        .collect()
}

#[test]
fn recovers_known_strengths_from_expected_counts() {
    let p = [1.0, 2.0, 4.0];
    let data = expected_counts(&p, &[(0, 1, 10.0), (0, 2, 6.0), (1, 2, 14.0)]);
    let fit = fit_bt_with(&data, 3, &exact()).unwrap();
    assert!(fit.converged);
    let ln2 = 2f64.ln();
    assert!((fit.scores[1] - fit.scores[0] - ln2).abs() < 1e-9);
    assert!((fit.scores[2] - fit.scores[0] - 2.0 * ln2).abs() < 1e-9);
    assert!(fit.scores.iter().sum::<f64>().abs() < 1e-12);
    assert_close(&fit.scores, &[-ln2, 0.0, ln2], 1e-9);
}

#[test]
fn two_items_match_closed_form() {
    // 6 wins, 2 losses, 2 ties -> 7 : 3, so θ_a - θ_b = ln(7/3).
    use Outcome::*;
    let mut data = vec![Comparison::new(0, 1, AWins); 6];
    data.extend([Comparison::new(1, 0, AWins); 2]);
    data.extend([Comparison::new(0, 1, Tie); 2]);
    let fit = fit_bt_with(&data, 2, &exact()).unwrap();
    assert!((fit.scores[0] - fit.scores[1] - (7.0f64 / 3.0).ln()).abs() < 1e-10);
    // 10:1 odds is exactly 400 Elo-like points, centred on 1000.
    let data = [
        Comparison::weighted(0, 1, AWins, 10.0),
        Comparison::weighted(0, 1, BWins, 1.0),
    ];
    let fit = fit_bt_with(&data, 2, &exact()).unwrap();
    assert!((fit.elo_like[0] - fit.elo_like[1] - 400.0).abs() < 1e-8);
    assert!((fit.elo_like[0] + fit.elo_like[1] - 2000.0).abs() < 1e-8);
}

#[test]
fn matches_independent_newton_solution_and_likelihood_equations() {
    let data = sample();
    let fit = fit_bt_with(&data, 4, &exact()).unwrap();
    let w = win_matrix(&data, 4);
    assert_close(&fit.scores, &newton_reference(&w, 0, 4), 1e-8);
    // Score equations: observed wins = expected wins for each item.
    for i in 0..4 {
        let expected: f64 = (0..4)
            .filter(|&j| j != i)
            .map(|j| {
                let pr = 1.0 / (1.0 + (fit.scores[j] - fit.scores[i]).exp());
                (w[i][j] + w[j][i]) * pr
            })
            .sum();
        assert!((expected - w[i].iter().sum::<f64>()).abs() < 1e-8);
    }
}

#[test]
fn prior_equals_virtual_ties_against_a_reference() {
    // An item with only wins: the MLE is infinite, the prior keeps it finite.
    use Outcome::*;
    let data = [
        Comparison::new(0, 1, AWins),
        Comparison::new(0, 2, AWins),
        Comparison::new(1, 2, AWins),
        Comparison::new(2, 1, AWins),
    ];
    assert_eq!(
        fit_bt_with(&data, 3, &exact()),
        Err(StatsError::NotIdentifiable)
    );
    let options = BtOptions {
        prior_strength: 0.5,
        ..exact()
    };
    let fit = fit_bt_with(&data, 3, &options).unwrap();
    assert!(fit.converged && fit.scores.iter().all(|s| s.is_finite()));
    let mut w = win_matrix(&data, 4); // item 3 is the reference
    for i in 0..3 {
        w[i][3] = 0.25;
        w[3][i] = 0.25;
    }
    assert_close(&fit.scores, &newton_reference(&w, 3, 3), 1e-8);
    let default = fit_bt(&data, 3).unwrap();
    assert!(default.converged && default.scores[0] > default.scores[1]);
}

#[test]
fn lopsided_data_stays_finite_and_converges_quickly() {
    // 1000 straight wins and an item nobody compared: finite with the
    // default prior, in a handful of Newton steps.
    let mut data = vec![Comparison::new(0, 1, Outcome::AWins); 1000];
    data.push(Comparison::new(1, 2, Outcome::Tie));
    let fit = fit_bt(&data, 4).unwrap();
    assert!(fit.converged && fit.iterations < 40, "{fit:?}");
    assert!(fit.scores.iter().all(|s| s.is_finite()));
    assert!(fit.scores[0] > fit.scores[3] && fit.scores[3] > fit.scores[1]);
    // max_iterations = 0 leaves the starting point and says so.
    let none = BtOptions {
        max_iterations: 0,
        ..BtOptions::default()
    };
    let fit = fit_bt_with(&data, 4, &none).unwrap();
    assert!(!fit.converged && fit.scores == [0.0; 4] && fit.elo_like == [1000.0; 4]);
}

#[test]
fn rejects_bad_input() {
    let ok = Comparison::new(0, 1, Outcome::Tie);
    assert_eq!(fit_bt(&[ok], 0), Err(StatsError::NoItems));
    assert_eq!(fit_bt(&[], 2), Err(StatsError::NoComparisons));
    assert_eq!(
        fit_bt(&[Comparison::weighted(0, 1, Outcome::Tie, 0.0)], 2),
        Err(StatsError::NoComparisons)
    );
    assert_eq!(
        fit_bt(&[ok, Comparison::new(1, 2, Outcome::AWins)], 2),
        Err(StatsError::IndexOutOfRange {
            position: 1,
            index: 2,
            n: 2
        })
    );
    assert_eq!(
        fit_bt(&[Comparison::new(1, 1, Outcome::AWins)], 2),
        Err(StatsError::SelfComparison {
            position: 0,
            index: 1
        })
    );
    assert!(matches!(
        fit_bt(&[Comparison::weighted(0, 1, Outcome::AWins, -1.0)], 2),
        Err(StatsError::InvalidWeight { position: 0, .. })
    ));
    let bad = BtOptions {
        prior_strength: f64::NAN,
        ..BtOptions::default()
    };
    assert!(matches!(
        fit_bt_with(&[ok], 2, &bad),
        Err(StatsError::InvalidOption {
            name: "prior_strength",
            ..
        })
    ));
}

fn swap(o: Outcome) -> Outcome {
    match o {
        Outcome::AWins => Outcome::BWins,
        Outcome::BWins => Outcome::AWins,
        Outcome::Tie => Outcome::Tie,
    }
}

fn arb_comparisons() -> impl Strategy<Value = Vec<Comparison>> {
    let outcome = prop_oneof![
        Just(Outcome::AWins),
        Just(Outcome::BWins),
        Just(Outcome::Tie)
    ];
    prop::collection::vec(
        (0usize..5, 1usize..5, outcome, 0.5f64..3.0)
            .prop_map(|(a, d, o, w)| Comparison::weighted(a, (a + d) % 5, o, w)),
        1..40,
    )
}

proptest! {
    #[test]
    fn recovers_random_strengths(
        logs in prop::collection::vec(-2.0f64..2.0, 4),
        counts in prop::collection::vec(1.0f64..20.0, 6),
    ) {
        let p: Vec<f64> = logs.iter().map(|l| l.exp()).collect();
        let pairs = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)];
        let games: Vec<_> = pairs.iter().zip(&counts).map(|(&(i, j), &c)| (i, j, c)).collect();
        let fit = fit_bt_with(&expected_counts(&p, &games), 4, &exact()).unwrap();
        for i in 1..4 {
            let want = logs[i] - logs[0];
            prop_assert!((fit.scores[i] - fit.scores[0] - want).abs() < 1e-6);
        }
    }

    #[test]
    fn symmetric_and_order_invariant(data in arb_comparisons(), shift in 1usize..5) {
        let fit = fit_bt(&data, 5).unwrap();
        prop_assert!(fit.converged);
        // Deterministic.
        prop_assert_eq!(&fit, &fit_bt(&data, 5).unwrap());
        // Input order does not matter.
        let reversed: Vec<_> = data.iter().rev().copied().collect();
        assert_close(&fit.scores, &fit_bt(&reversed, 5).unwrap().scores, 1e-9);
        // Writing (a, b, AWins) as (b, a, BWins) does not matter.
        let flipped: Vec<_> = data.iter()
            .map(|c| Comparison::weighted(c.b, c.a, swap(c.outcome), c.weight))
            .collect();
        assert_close(&fit.scores, &fit_bt(&flipped, 5).unwrap().scores, 1e-9);
        // Relabelling items permutes the scores.
        let relabel = |i: usize| (i + shift) % 5;
        let moved: Vec<_> = data.iter()
            .map(|c| Comparison::weighted(relabel(c.a), relabel(c.b), c.outcome, c.weight))
            .collect();
        let moved_fit = fit_bt(&moved, 5).unwrap();
        for i in 0..5 {
            prop_assert!((fit.scores[i] - moved_fit.scores[relabel(i)]).abs() < 1e-9);
        }
        // Swapping every winner and loser negates the scores.
        let negated: Vec<_> = data.iter()
            .map(|c| Comparison::weighted(c.a, c.b, swap(c.outcome), c.weight))
            .collect();
        let neg_fit = fit_bt(&negated, 5).unwrap();
        for i in 0..5 {
            prop_assert!((fit.scores[i] + neg_fit.scores[i]).abs() < 1e-9);
        }
    }
}
