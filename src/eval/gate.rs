//! The promotion gate: a candidate adapter replaces the baseline (the
//! currently promoted adapter, or the base model) only when no dimension got
//! worse beyond its confidence interval — the 95% interval of the paired
//! difference `candidate − baseline` lies entirely below zero.

use serde::{Deserialize, Serialize};

use super::EvalError;
use super::results::{SystemResult, paired_differences};
use super::score::Dimension;

/// One dimension's figures in a gate decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DimensionCheck {
    /// "storyline_consistency", …, or "overall" (reported, not gating).
    pub key: String,
    pub baseline: f64,
    pub candidate: f64,
    /// Mean of `candidate − baseline` over the shared units, and its 95% interval.
    pub difference: f64,
    pub low: f64,
    pub high: f64,
    /// The whole interval is below zero.
    pub regressed: bool,
}

/// What the gate decided and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateDecision {
    pub promote: bool,
    pub baseline: String,
    pub candidate: String,
    /// Units (scene × seed) both played.
    pub units: usize,
    pub resamples: usize,
    pub seed: u64,
    /// The four dimensions, then overall.
    pub checks: Vec<DimensionCheck>,
    pub reason: String,
}

/// Decides on `candidate` against `baseline` from their shared units.
pub fn decide(
    baseline: &SystemResult,
    candidate: &SystemResult,
    resamples: usize,
    seed: u64,
) -> Result<GateDecision, EvalError> {
    let (units, intervals) = paired_differences(baseline, candidate, resamples, seed)?;
    let shared = |system: &SystemResult, other: &SystemResult, column: usize| {
        let values: Vec<f64> = system
            .units
            .iter()
            .filter(|u| other.units.iter().any(|o| o.key() == u.key()))
            .map(|u| u.scores.columns()[column])
            .collect();
        super::score::mean(&values)
    };
    let checks: Vec<DimensionCheck> = intervals
        .iter()
        .enumerate()
        .map(|(i, iv)| {
            let gating = i < Dimension::ALL.len();
            DimensionCheck {
                key: Dimension::ALL
                    .get(i)
                    .map_or("overall", |d| d.key())
                    .to_string(),
                baseline: shared(baseline, candidate, i),
                candidate: shared(candidate, baseline, i),
                difference: iv.point,
                low: iv.low,
                high: iv.high,
                regressed: gating && iv.high < 0.0,
            }
        })
        .collect();
    let regressed: Vec<&str> = checks
        .iter()
        .filter(|c| c.regressed)
        .map(|c| c.key.as_str())
        .collect();
    let promote = regressed.is_empty();
    let reason = if promote {
        format!("no dimension regressed beyond its 95% interval over {units} scene×seed units")
    } else {
        format!(
            "regressed beyond the 95% interval on: {}",
            regressed.join(", ")
        )
    };
    Ok(GateDecision {
        promote,
        baseline: baseline.label.clone(),
        candidate: candidate.label.clone(),
        units,
        resamples,
        seed,
        checks,
        reason,
    })
}

/// The decision as terminal lines.
pub fn render_decision(d: &GateDecision) -> String {
    let mut out = format!(
        "gate: {} (candidate) against {} (baseline), {} units, {} resamples\n",
        d.candidate, d.baseline, d.units, d.resamples
    );
    out.push_str(&format!(
        "  {:<22} {:>8} {:>9} {:>8}  {:<18}\n",
        "dimension", "baseline", "candidate", "diff", "95% interval"
    ));
    for c in &d.checks {
        out.push_str(&format!(
            "  {:<22} {:>8.1} {:>9.1} {:>+8.1}  [{:+.1}, {:+.1}]{}\n",
            c.key,
            c.baseline,
            c.candidate,
            c.difference,
            c.low,
            c.high,
            if c.regressed { "  REGRESSED" } else { "" }
        ));
    }
    out.push_str(&format!(
        "decision: {} — {}\n",
        if d.promote { "PROMOTE" } else { "REFUSE" },
        d.reason
    ));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::eval::results::tests::system;

    // 6 units each (3 scenes × 2 seeds), 4 actor turns (allowance 1.2).
    const BASE: [[u8; 4]; 6] = [
        [3, 2, 4, 3],
        [4, 3, 3, 2],
        [2, 4, 4, 3],
        [3, 3, 2, 4],
        [4, 2, 3, 3],
        [3, 4, 3, 2],
    ];

    fn shifted(by: i8, only: Option<usize>) -> Vec<[u8; 4]> {
        BASE.iter()
            .map(|row| {
                let mut row = *row;
                for (i, s) in row.iter_mut().enumerate() {
                    if only.is_none_or(|o| o == i) {
                        *s = (*s as i8 + by).clamp(0, 5) as u8;
                    }
                }
                row
            })
            .collect()
    }

    #[test]
    fn promotes_the_better() {
        let base = system("base", &BASE);
        let better = system("better", &shifted(-1, None));
        let d = decide(&base, &better, 1000, 5).unwrap();
        assert!(d.promote, "{d:?}");
        assert_eq!(d.units, 6);
        assert_eq!(d.checks.len(), 5);
        // One severity point less everywhere: up to 5 points more per
        // dimension (less where the score was already clamped at 100).
        for c in &d.checks {
            assert!(c.low > 0.0 && c.difference <= 5.0 + 1e-9, "{c:?}");
            assert!(!c.regressed);
        }
        assert!(render_decision(&d).contains("PROMOTE"));
    }

    #[test]
    fn refuses_the_regressing() {
        let base = system("base", &BASE);
        // Better on three dimensions, clearly worse on Character Fidelity.
        let mut rows = shifted(-1, None);
        for (row, b) in rows.iter_mut().zip(BASE) {
            row[2] = (b[2] + 2).min(5);
        }
        let worse = system("worse", &rows);
        let d = decide(&base, &worse, 1000, 5).unwrap();
        assert!(!d.promote, "{d:?}");
        let fidelity = &d.checks[2];
        assert_eq!(fidelity.key, "character_fidelity");
        assert!(fidelity.regressed && fidelity.high < 0.0);
        assert!(d.checks.iter().filter(|c| c.regressed).count() == 1);
        assert!(d.reason.contains("character_fidelity"));
        assert!(render_decision(&d).contains("REFUSE"));
    }

    #[test]
    fn noise_within_the_interval_is_not_a_regression() {
        let base = system("base", &BASE);
        // Worse on one unit, better on another: the interval straddles zero.
        let mut rows = BASE.to_vec();
        rows[0][1] += 1;
        rows[1][1] -= 1;
        rows[2][1] += 1;
        let noisy = system("noisy", &rows);
        let d = decide(&base, &noisy, 1000, 5).unwrap();
        assert!(d.promote, "{d:?}");
    }

    #[test]
    fn deterministic_and_needs_shared_units() {
        let base = system("base", &BASE);
        let cand = system("cand", &shifted(1, Some(0)));
        assert_eq!(
            decide(&base, &cand, 300, 9).unwrap(),
            decide(&base, &cand, 300, 9).unwrap()
        );
        let mut other = cand.clone();
        for u in &mut other.units {
            u.scene = format!("other-{}", u.scene);
        }
        assert!(matches!(
            decide(&base, &other, 300, 9),
            Err(EvalError::NoCommonUnits { .. })
        ));
    }
}
