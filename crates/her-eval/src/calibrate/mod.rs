//! Judge calibration: before its scores may decide anything, a judge must
//! show it can tell a clean scene from the same scene with a planted flaw.
//! Each (clean, flawed) pair of the [`set`] is judged; the judge gets a pair
//! right when the flawed transcript scores lower than the clean one on the
//! planted flaw's dimension (a tie is not right: a judge that finds no flaws
//! anywhere gets every pair wrong). The share of pairs right per dimension,
//! with a Wilson 95% interval, is stored under the judge's fingerprint (its
//! model file, its prompt and its settings) in `evals/calibration/`.
//!
//! A judge *passes* on a dimension when it was calibrated on at least
//! [`MIN_PAIRS`] pairs there and got at least the configured share right;
//! the gate promotes nothing on the word of a judge that has not passed on
//! every dimension.

pub mod set;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use set::{CalibrationScene, CalibrationSet, FlawKind, FlawedVariant};

use super::EvalError;
use super::judge::{JudgeAnswer, JudgeCase, answer_grammar, judge_prompt};
use super::results::FileId;
use super::run::judge_case;
use super::score::{Dimension, unclamped_score};
use her_core::generation::SamplingConfig;
use her_engine::Backend;

/// `evals/calibration/`.
pub const CALIBRATION_DIR: &str = "calibration";
/// Version of a calibration file.
pub const CALIBRATION_FORMAT: u32 = 1;
/// Pairs a dimension needs before its accuracy counts.
pub const MIN_PAIRS: usize = 6;
/// What to do about a judge that is not trusted.
pub const ADVICE: &str = "use a bigger judge — a quantized HER-RM or Qwen3 GGUF with \
--judge-model (eval.judge_model), or a server in [judge] — then run `her eval calibrate` with it";

/// What makes a judge's verdicts what they are: the model, the prompt (and
/// its grammar) and the sampler. The fingerprint hashes these; the model's
/// path is kept for people but not hashed (a moved file is the same judge).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeIdentity {
    /// The judge's file (path and sha256), or `remote:NAME` and the
    /// server's fingerprint.
    pub model: FileId,
    /// sha256 of the judge's prompt template and answer grammar.
    pub prompt_sha256: String,
    pub temperature: f32,
    pub max_new_tokens: u32,
    pub repeat_penalty: f32,
    pub grammar: bool,
}

impl JudgeIdentity {
    pub fn new(model: FileId, sampling: &SamplingConfig, grammar: bool) -> Self {
        Self {
            model,
            prompt_sha256: judge_prompt_sha256(),
            temperature: sampling.temperature,
            max_new_tokens: sampling.max_new_tokens,
            repeat_penalty: sampling.repeat_penalty,
            grammar,
        }
    }

    pub fn fingerprint(&self) -> String {
        her_core::hashing::sha256_hex(
            format!(
                "her-studio scene judge\n{}\n{}\n{}\n{}\n{}\n{}",
                self.model.sha256,
                self.prompt_sha256,
                self.temperature,
                self.max_new_tokens,
                self.repeat_penalty,
                self.grammar
            )
            .as_bytes(),
        )
    }
}

/// sha256 of the judge prompt (rendered around placeholders) and grammar:
/// any change to either is a different judge.
pub fn judge_prompt_sha256() -> String {
    let characters = vec![("{NAME}".to_string(), "{PROFILE}".to_string())];
    let transcript = vec![("{NAME}".to_string(), "{TEXT}".to_string())];
    let probe = JudgeCase {
        book: "{BOOK}",
        scenario: "{SCENARIO}",
        characters: &characters,
        transcript: &transcript,
    };
    her_core::hashing::sha256_hex(
        format!("{}\n{}", judge_prompt(&probe), answer_grammar()).as_bytes(),
    )
}

/// One (clean, flawed) pair as the judge scored it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairResult {
    /// The calibration scene's id.
    pub scene: String,
    pub kind: FlawKind,
    pub dimension: Dimension,
    /// What was planted.
    pub flaw: String,
    /// Σ severity on `dimension`, clean and flawed.
    pub clean_severity: u32,
    pub flawed_severity: u32,
    /// The dimension's score before clamping, clean and flawed.
    pub clean_score: f64,
    pub flawed_score: f64,
    pub flawed_lower: bool,
}

/// A dimension's accuracy over its pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DimensionAccuracy {
    /// "storyline_consistency", ….
    pub key: String,
    pub pairs: usize,
    pub flawed_lower: usize,
    pub accuracy: f64,
    /// Wilson 95% interval of the accuracy.
    pub low: f64,
    pub high: f64,
}

/// `evals/calibration/FINGERPRINT.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub format: u32,
    pub fingerprint: String,
    pub judge: JudgeIdentity,
    pub created_at: String,
    /// The set's folder or "built-in", and its hash.
    pub set_source: String,
    pub set_sha256: String,
    /// In [`Dimension::ALL`] order.
    pub dimensions: Vec<DimensionAccuracy>,
    pub pairs: Vec<PairResult>,
    /// Mean Σ severity per dimension the judge gave the clean transcripts:
    /// its false alarms.
    pub clean_severity_mean: [f64; 4],
}

impl Calibration {
    /// This calibration against per-dimension `thresholds`, kept in `file`.
    pub fn status(&self, thresholds: [f64; 4], file: Option<PathBuf>) -> CalibrationStatus {
        CalibrationStatus::of(&self.fingerprint, Some(self), thresholds, file)
    }
}

/// Wilson score 95% interval of `successes` out of `trials` ((0, 1) when
/// there were none): unlike a bootstrap it does not collapse to a point at
/// 0% or 100%.
pub fn wilson_interval(successes: usize, trials: usize) -> (f64, f64) {
    const Z: f64 = 1.959_963_984_540_054;
    if trials == 0 {
        return (0.0, 1.0);
    }
    let n = trials as f64;
    let p = successes as f64 / n;
    let z2 = Z * Z;
    let denominator = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denominator;
    let half = Z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Accuracy per dimension, in [`Dimension::ALL`] order.
pub fn accuracies(pairs: &[PairResult]) -> Vec<DimensionAccuracy> {
    Dimension::ALL
        .iter()
        .map(|d| {
            let mine: Vec<&PairResult> = pairs.iter().filter(|p| p.dimension == *d).collect();
            let right = mine.iter().filter(|p| p.flawed_lower).count();
            let (low, high) = wilson_interval(right, mine.len());
            DimensionAccuracy {
                key: d.key().to_string(),
                pairs: mine.len(),
                flawed_lower: right,
                accuracy: if mine.is_empty() {
                    0.0
                } else {
                    right as f64 / mine.len() as f64
                },
                low,
                high,
            }
        })
        .collect()
}

/// One pair from the judge's answers on its two transcripts.
pub fn score_pair(
    scene: &CalibrationScene,
    variant: &FlawedVariant,
    clean: &JudgeAnswer,
    flawed: &JudgeAnswer,
) -> PairResult {
    let dimension = variant.kind.dimension();
    let i = dimension.index();
    let clean_severity = clean.severity_sums()[i];
    let flawed_severity = flawed.severity_sums()[i];
    let clean_score = unclamped_score(clean_severity, CalibrationScene::actor_turns(&scene.clean));
    let flawed_score = unclamped_score(
        flawed_severity,
        CalibrationScene::actor_turns(&variant.lines),
    );
    PairResult {
        scene: scene.id.clone(),
        kind: variant.kind,
        dimension,
        flaw: variant.flaw.clone(),
        clean_severity,
        flawed_severity,
        clean_score,
        flawed_score,
        flawed_lower: flawed_score < clean_score,
    }
}

/// Judges every pair of `set` with `judge` (each clean transcript once).
pub async fn calibrate(
    judge: &dyn Backend,
    set: &CalibrationSet,
    identity: JudgeIdentity,
    sampling: &SamplingConfig,
    on_pair: &mut dyn FnMut(&PairResult),
) -> Result<Calibration, EvalError> {
    let mut pairs = Vec::new();
    let mut clean_sums = [0.0f64; 4];
    for scene in &set.scenes {
        let clean = judge_lines(judge, scene, &scene.clean, sampling, identity.grammar).await?;
        for (total, sum) in clean_sums.iter_mut().zip(clean.severity_sums()) {
            *total += f64::from(sum);
        }
        for variant in &scene.variants {
            let flawed =
                judge_lines(judge, scene, &variant.lines, sampling, identity.grammar).await?;
            let pair = score_pair(scene, variant, &clean, &flawed);
            on_pair(&pair);
            pairs.push(pair);
        }
    }
    let scenes = set.scenes.len().max(1) as f64;
    Ok(Calibration {
        format: CALIBRATION_FORMAT,
        fingerprint: identity.fingerprint(),
        judge: identity,
        created_at: her_core::session::now_rfc3339(),
        set_source: set.source.clone(),
        set_sha256: set.sha256.clone(),
        dimensions: accuracies(&pairs),
        pairs,
        clean_severity_mean: clean_sums.map(|s| s / scenes),
    })
}

async fn judge_lines(
    judge: &dyn Backend,
    scene: &CalibrationScene,
    lines: &set::Lines,
    sampling: &SamplingConfig,
    grammar: bool,
) -> Result<JudgeAnswer, EvalError> {
    let case = JudgeCase {
        book: &scene.book,
        scenario: &scene.scenario,
        characters: &scene.characters,
        transcript: lines,
    };
    judge_case(judge, &case, &scene.id, sampling, grammar).await
}

/// Where the calibration of the judge with `fingerprint` is kept.
pub fn calibration_file(evals_dir: &Path, fingerprint: &str) -> PathBuf {
    let short = fingerprint.get(..16).unwrap_or(fingerprint);
    evals_dir
        .join(CALIBRATION_DIR)
        .join(format!("{short}.json"))
}

/// Writes `calibration` (atomically) and returns its path.
pub fn write_calibration(
    evals_dir: &Path,
    calibration: &Calibration,
) -> Result<PathBuf, EvalError> {
    let path = calibration_file(evals_dir, &calibration.fingerprint);
    let text = format!("{:#}\n", serde_json::to_value(calibration)?);
    super::results::write_in_new_folder(&path, text.as_bytes())?;
    Ok(path)
}

/// The stored calibration of the judge with `fingerprint`, if any.
pub fn read_calibration(
    evals_dir: &Path,
    fingerprint: &str,
) -> Result<Option<Calibration>, EvalError> {
    let path = calibration_file(evals_dir, fingerprint);
    let Some(text) =
        her_core::fsutil::read::optional_text(&path, her_core::fsutil::read::Kind::RunRecord)?
    else {
        return Ok(None);
    };
    let calibration: Calibration = serde_json::from_str(&text).map_err(|e| EvalError::BadFile {
        path: path.clone(),
        message: format!("{e}; delete it and run `her eval calibrate` again"),
    })?;
    // A shortened name could in principle be shared: only an exact match counts.
    Ok((calibration.fingerprint == fingerprint).then_some(calibration))
}

/// Calibrated, and passed or not; or never calibrated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalibrationState {
    Uncalibrated,
    Passed,
    Failed,
}

/// One dimension of a calibration against its threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibratedDimension {
    #[serde(flatten)]
    pub accuracy: DimensionAccuracy,
    pub threshold: f64,
    pub passed: bool,
}

/// What an evaluation and the gate know about their judge's calibration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationStatus {
    pub fingerprint: String,
    pub state: CalibrationState,
    #[serde(default)]
    pub dimensions: Vec<CalibratedDimension>,
    #[serde(default)]
    pub calibrated_at: Option<String>,
    #[serde(default)]
    pub file: Option<PathBuf>,
}

impl CalibrationStatus {
    /// The status of `calibration` (or none) against per-dimension
    /// `thresholds` (in [`Dimension::ALL`] order).
    pub fn of(
        fingerprint: &str,
        calibration: Option<&Calibration>,
        thresholds: [f64; 4],
        file: Option<PathBuf>,
    ) -> Self {
        let Some(calibration) = calibration else {
            return Self {
                fingerprint: fingerprint.to_string(),
                state: CalibrationState::Uncalibrated,
                dimensions: Vec::new(),
                calibrated_at: None,
                file: None,
            };
        };
        let dimensions: Vec<CalibratedDimension> = Dimension::ALL
            .iter()
            .map(|d| {
                let accuracy = calibration
                    .dimensions
                    .iter()
                    .find(|a| a.key == d.key())
                    .cloned()
                    .unwrap_or_else(|| DimensionAccuracy {
                        key: d.key().to_string(),
                        pairs: 0,
                        flawed_lower: 0,
                        accuracy: 0.0,
                        low: 0.0,
                        high: 1.0,
                    });
                let threshold = thresholds[d.index()];
                CalibratedDimension {
                    passed: accuracy.pairs >= MIN_PAIRS && accuracy.accuracy >= threshold,
                    accuracy,
                    threshold,
                }
            })
            .collect();
        let state = if dimensions.iter().all(|d| d.passed) {
            CalibrationState::Passed
        } else {
            CalibrationState::Failed
        };
        Self {
            fingerprint: fingerprint.to_string(),
            state,
            dimensions,
            calibrated_at: Some(calibration.created_at.clone()),
            file,
        }
    }

    /// Looks the judge up in `evals_dir`.
    pub fn lookup(
        evals_dir: &Path,
        fingerprint: &str,
        thresholds: [f64; 4],
    ) -> Result<Self, EvalError> {
        let calibration = read_calibration(evals_dir, fingerprint)?;
        let file = calibration
            .as_ref()
            .map(|_| calibration_file(evals_dir, fingerprint));
        Ok(Self::of(
            fingerprint,
            calibration.as_ref(),
            thresholds,
            file,
        ))
    }

    pub fn passed(&self) -> bool {
        self.state == CalibrationState::Passed
    }

    /// Why the judge is not trusted, in one sentence (empty when it is).
    pub fn problem(&self) -> String {
        let short = self.fingerprint.get(..12).unwrap_or(&self.fingerprint);
        match self.state {
            CalibrationState::Passed => String::new(),
            CalibrationState::Uncalibrated => {
                format!("the judge ({short}…) is uncalibrated")
            }
            CalibrationState::Failed => {
                let failing: Vec<String> = self
                    .dimensions
                    .iter()
                    .filter(|d| !d.passed)
                    .map(|d| {
                        let a = &d.accuracy;
                        if a.pairs < MIN_PAIRS {
                            format!("{} ({} pairs, {MIN_PAIRS} needed)", a.key, a.pairs)
                        } else {
                            format!(
                                "{} {}/{} = {:.2} < {:.2}",
                                a.key, a.flawed_lower, a.pairs, a.accuracy, d.threshold
                            )
                        }
                    })
                    .collect();
                format!(
                    "the judge ({short}…) failed calibration on {}",
                    failing.join(", ")
                )
            }
        }
    }

    /// Lines for a report: the state, then each dimension.
    pub fn report_lines(&self) -> String {
        let short = self.fingerprint.get(..12).unwrap_or(&self.fingerprint);
        let mut out = match self.state {
            CalibrationState::Uncalibrated => format!(
                "judge calibration: uncalibrated (judge {short}…): its scores are unchecked; \
                 run `her eval calibrate` with this judge\n"
            ),
            state => format!(
                "judge calibration: {} (judge {short}…, {}): share of planted flaws scored lower\n",
                if state == CalibrationState::Passed {
                    "PASSED"
                } else {
                    "FAILED"
                },
                self.calibrated_at.as_deref().unwrap_or("?")
            ),
        };
        for d in &self.dimensions {
            let a = &d.accuracy;
            out.push_str(&format!(
                "  {:<22} {:>2}/{:<2} {:.2} [{:.2}, {:.2}]  needs ≥ {:.2} over ≥ {MIN_PAIRS} pairs{}\n",
                a.key,
                a.flawed_lower,
                a.pairs,
                a.accuracy,
                a.low,
                a.high,
                d.threshold,
                if d.passed { "" } else { "  FAILED" }
            ));
        }
        out
    }
}

/// A calibration as terminal lines (`her eval calibrate`).
pub fn render_calibration(calibration: &Calibration, status: &CalibrationStatus) -> String {
    let mut out = format!(
        "calibration of judge {} ({}…) on {} pairs from {}\n",
        calibration.judge.model.path.display(),
        calibration.judge.model.sha256.get(..12).unwrap_or(""),
        calibration.pairs.len(),
        calibration.set_source
    );
    out.push_str(&status.report_lines());
    let alarms: Vec<String> = Dimension::ALL
        .iter()
        .map(|d| {
            format!(
                "{} {:.1}",
                d.key(),
                calibration.clean_severity_mean[d.index()]
            )
        })
        .collect();
    out.push_str(&format!(
        "severity the judge gave clean transcripts (mean per scene): {}\n",
        alarms.join(", ")
    ));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
