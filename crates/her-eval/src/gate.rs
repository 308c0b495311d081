//! The promotion gate: a candidate adapter replaces the baseline (the
//! currently promoted adapter, or the base model) only when
//! 1. the judge passed calibration (see [`super::calibrate`]): a judge that
//!    cannot tell a planted flaw from a clean scene has no say;
//! 2. no dimension got worse by the judge beyond its confidence interval —
//!    the 95% interval of the paired difference `candidate − baseline` lies
//!    entirely below zero;
//! 3. no dimension got worse by the rule-based flaws the same way.
//!
//! Every reason to refuse is reported, not only the first.

use serde::{Deserialize, Serialize};

use super::EvalError;
use super::bootstrap::COLUMNS;
use super::calibrate::{ADVICE, CalibrationState, CalibrationStatus};
use super::results::{SystemResult, UnitResult, paired_differences_of};
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
    /// The judge's scores: the four dimensions, then overall.
    pub checks: Vec<DimensionCheck>,
    /// The rules' scores, the same way.
    #[serde(default)]
    pub rule_checks: Vec<DimensionCheck>,
    /// The judge's calibration (`None`: the evaluation recorded none).
    #[serde(default)]
    pub judge_calibration: Option<CalibrationState>,
    /// Every reason to refuse; empty when promoted.
    #[serde(default)]
    pub refusals: Vec<String>,
    pub reason: String,
}

/// The gating checks of one kind of score (judge or rules).
fn dimension_checks(
    baseline: &SystemResult,
    candidate: &SystemResult,
    resamples: usize,
    seed: u64,
    columns: impl Fn(&UnitResult) -> Option<[f64; COLUMNS]> + Copy,
) -> Result<(usize, Vec<DimensionCheck>), EvalError> {
    let (units, intervals) = paired_differences_of(baseline, candidate, resamples, seed, columns)?;
    let shared = |system: &SystemResult, other: &SystemResult, column: usize| {
        let values: Vec<f64> = system
            .units
            .iter()
            .filter(|u| other.units.iter().any(|o| o.key() == u.key()))
            .filter_map(|u| columns(u).map(|c| c[column]))
            .collect();
        super::score::mean(&values)
    };
    let checks = intervals
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
    Ok((units, checks))
}

fn regressed(checks: &[DimensionCheck]) -> Vec<&str> {
    checks
        .iter()
        .filter(|c| c.regressed)
        .map(|c| c.key.as_str())
        .collect()
}

/// Decides on `candidate` against `baseline` from their shared units, with
/// the judge's `calibration` as the evaluation recorded it.
pub fn decide(
    baseline: &SystemResult,
    candidate: &SystemResult,
    calibration: Option<&CalibrationStatus>,
    resamples: usize,
    seed: u64,
) -> Result<GateDecision, EvalError> {
    let (units, checks) = dimension_checks(baseline, candidate, resamples, seed, |u| {
        Some(u.scores.columns())
    })?;
    let (_, rule_checks) = dimension_checks(
        baseline,
        candidate,
        resamples,
        seed,
        UnitResult::rule_columns,
    )?;
    let mut refusals = Vec::new();
    match calibration {
        None => refusals.push(format!(
            "the evaluation recorded no judge calibration: evaluate again; if the judge is \
             uncalibrated, {ADVICE}"
        )),
        Some(status) if !status.passed() => {
            refusals.push(format!(
                "{}: its scores cannot decide; {ADVICE}",
                status.problem()
            ));
        }
        Some(_) => {}
    }
    let judge_regressed = regressed(&checks);
    if !judge_regressed.is_empty() {
        refusals.push(format!(
            "the judge's scores regressed beyond the 95% interval on: {}",
            judge_regressed.join(", ")
        ));
    }
    let rules_regressed = regressed(&rule_checks);
    if !rules_regressed.is_empty() {
        refusals.push(format!(
            "the rule-based flaws rose beyond the 95% interval on: {}",
            rules_regressed.join(", ")
        ));
    }
    let promote = refusals.is_empty();
    let reason = if promote {
        format!(
            "the judge passed calibration, and neither its scores nor the rules' regressed \
             beyond the 95% interval over {units} scene×seed units"
        )
    } else {
        refusals.join("; ")
    };
    Ok(GateDecision {
        promote,
        baseline: baseline.label.clone(),
        candidate: candidate.label.clone(),
        units,
        resamples,
        seed,
        checks,
        rule_checks,
        judge_calibration: calibration.map(|c| c.state),
        refusals,
        reason,
    })
}

fn render_checks(title: &str, checks: &[DimensionCheck]) -> String {
    let mut out = format!(
        "  {:<22} {:>8} {:>9} {:>8}  {:<18}\n",
        title, "baseline", "candidate", "diff", "95% interval"
    );
    for c in checks {
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
    out
}

/// The decision as terminal lines.
pub fn render_decision(d: &GateDecision) -> String {
    let mut out = format!(
        "gate: {} (candidate) against {} (baseline), {} units, {} resamples\n",
        d.candidate, d.baseline, d.units, d.resamples
    );
    out.push_str(&render_checks("judge", &d.checks));
    out.push_str(&render_checks("rules", &d.rule_checks));
    out.push_str(&format!(
        "  judge calibration: {}\n",
        match d.judge_calibration {
            Some(CalibrationState::Passed) => "passed",
            Some(CalibrationState::Failed) => "FAILED",
            Some(CalibrationState::Uncalibrated) => "UNCALIBRATED",
            None => "not recorded",
        }
    ));
    if d.promote {
        out.push_str(&format!("decision: PROMOTE — {}\n", d.reason));
    } else {
        out.push_str("decision: REFUSE\n");
        for r in &d.refusals {
            out.push_str(&format!("  - {r}\n"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::results::tests::system;

    fn decide(
        baseline: &SystemResult,
        candidate: &SystemResult,
        resamples: usize,
        seed: u64,
    ) -> Result<GateDecision, EvalError> {
        let trusted = super::trust_tests::status(CalibrationState::Passed);
        super::decide(baseline, candidate, Some(&trusted), resamples, seed)
    }

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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod trust_tests {
    use super::*;
    use crate::results::tests::system;
    use crate::rules::{Rule, RuleFlaw};

    pub(super) fn status(state: CalibrationState) -> CalibrationStatus {
        CalibrationStatus {
            fingerprint: "ab".repeat(32),
            state,
            dimensions: Vec::new(),
            calibrated_at: None,
            file: None,
        }
    }

    /// The same judge scores, but every candidate turn speaks as someone else.
    fn with_wrong_speakers(system: &SystemResult) -> SystemResult {
        let flaw = |turn| RuleFlaw {
            rule: Rule::WrongSpeaker,
            dimension: Dimension::CharacterFidelity,
            turn,
            speaker: "Ann".into(),
            flaw: "speaks as 'Ada'".into(),
            severity: 4,
        };
        let flaws: Vec<RuleFlaw> = (0..4).map(flaw).collect();
        let units = system
            .units
            .iter()
            .map(|u| u.clone().with_rules(&flaws))
            .collect();
        SystemResult::new("ada".into(), None, units, 500, 11).unwrap()
    }

    const SAME: [[u8; 4]; 4] = [[1, 1, 1, 1], [2, 1, 1, 1], [1, 2, 1, 1], [1, 1, 2, 1]];

    #[test]
    fn rules_alone_refuse() {
        let base = system("base", &SAME);
        let ada = with_wrong_speakers(&system("ada", &SAME));
        let trusted = status(CalibrationState::Passed);
        let d = decide(&base, &ada, Some(&trusted), 500, 3).unwrap();
        assert!(!d.promote);
        assert!(d.checks.iter().all(|c| !c.regressed), "{d:?}");
        let regressed: Vec<&str> = d
            .rule_checks
            .iter()
            .filter(|c| c.regressed)
            .map(|c| c.key.as_str())
            .collect();
        assert_eq!(regressed, ["character_fidelity"]);
        assert_eq!(d.refusals.len(), 1, "{:?}", d.refusals);
        assert!(d.refusals[0].contains("rule-based"));
        // The same candidate without the rule flaws passes.
        let same = system("same", &SAME);
        assert!(
            decide(&base, &same, Some(&trusted), 500, 3)
                .unwrap()
                .promote
        );
    }

    #[test]
    fn an_untrusted_judge_refuses_whatever_the_scores() {
        let base = system("base", &SAME);
        let same = system("same", &SAME);
        for state in [CalibrationState::Uncalibrated, CalibrationState::Failed] {
            let d = decide(&base, &same, Some(&status(state)), 500, 3).unwrap();
            assert!(!d.promote, "{state:?}");
            assert_eq!(d.refusals.len(), 1);
            let text = render_decision(&d);
            assert!(
                text.contains("her eval calibrate") && text.contains("[judge]"),
                "{text}"
            );
        }
        let d = decide(&base, &same, None, 500, 3).unwrap();
        assert!(!d.promote && d.reason.contains("no judge calibration"));
    }

    #[test]
    fn results_without_rule_scores_cannot_be_gated() {
        let base = system("base", &SAME);
        let mut old = system("old", &SAME);
        for u in &mut old.units {
            u.rules = None;
        }
        let trusted = status(CalibrationState::Passed);
        assert!(matches!(
            decide(&base, &old, Some(&trusted), 500, 3),
            Err(EvalError::MissingScores { .. })
        ));
    }
}
