//! What an evaluation keeps: `evals/NAME/results.json` (settings, the hashes
//! of every model file involved, the judge's calibration, per-unit scores of
//! the judge and of the rules, and the summaries with their intervals) and
//! one JSONL file per scene with the judge's and the rules' flaws.

use her_core::fsutil::IoError;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::EvalError;
use super::bootstrap::{COLUMNS, Interval, mean_intervals, paired_difference_intervals};
use super::calibrate::CalibrationStatus;
use super::judge::JudgeAnswer;
use super::rules::{RuleFlaw, RuleScores};
use super::score::{Dimension, SceneScores, column_titles};

/// Version of `results.json` (2: rule scores and the judge's calibration).
pub const RESULTS_FORMAT: u32 = 2;
pub const RESULTS_FILE: &str = "results.json";
pub const SCENES_DIR: &str = "scenes";

/// A model or adapter file, by path and content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    pub path: PathBuf,
    /// sha256 of the whole file.
    pub sha256: String,
}

/// How the scenes were played and judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSettings {
    /// Actor turns per scene at most.
    pub rounds: usize,
    pub seeds: Vec<u32>,
    /// "model" or "random".
    pub next_speaker: String,
    /// Whether scenes that have an Environment narrator kept it.
    pub environment: bool,
    pub max_new_tokens: u32,
    pub temperature: f32,
    pub resamples: usize,
    pub bootstrap_seed: u64,
}

/// One scene played with one seed by one system, and the judge's scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitResult {
    /// The scene's id in this evaluation (file stem, or `file#index` for CoSER).
    pub scene: String,
    pub seed: u32,
    /// Turns by characters (the Environment's are not counted).
    pub actor_turns: usize,
    /// Σ severity per dimension, in [`Dimension::ALL`] order.
    pub severity: [u32; 4],
    pub scores: SceneScores,
    /// The rule-based flaws' severities and scores (same formula); absent
    /// in results written before the rules existed.
    #[serde(default)]
    pub rules: Option<RuleScores>,
    /// The transcript as a session file.
    #[serde(default)]
    pub session: Option<PathBuf>,
}

impl UnitResult {
    pub fn new(
        scene: String,
        seed: u32,
        actor_turns: usize,
        answer: &JudgeAnswer,
        session: Option<PathBuf>,
    ) -> Self {
        let severity = answer.severity_sums();
        Self {
            scene,
            seed,
            actor_turns,
            severity,
            scores: SceneScores::from_severities(severity, actor_turns),
            rules: None,
            session,
        }
    }

    /// With the rules' flaws scored by the same formula.
    pub fn with_rules(mut self, flaws: &[RuleFlaw]) -> Self {
        self.rules = Some(RuleScores::new(flaws, self.actor_turns));
        self
    }

    /// The four rule scores and their mean, if the rules ran.
    pub fn rule_columns(&self) -> Option<[f64; COLUMNS]> {
        self.rules.map(|r| r.scores.columns())
    }

    pub fn key(&self) -> (&str, u32) {
        (&self.scene, self.seed)
    }
}

/// Mean and 95% interval of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnSummary {
    /// "storyline_consistency", … or "overall".
    pub key: String,
    pub title: String,
    pub mean: f64,
    pub low: f64,
    pub high: f64,
}

impl ColumnSummary {
    fn new(index: usize, interval: Interval) -> Self {
        let key = Dimension::ALL
            .get(index)
            .map_or("overall", |d| d.key())
            .to_string();
        Self {
            key,
            title: column_titles()
                .get(index)
                .copied()
                .unwrap_or("Overall")
                .to_string(),
            mean: interval.point,
            low: interval.low,
            high: interval.high,
        }
    }
}

/// Base or one adapter: every unit it played and the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemResult {
    /// "base", or the adapter's name.
    pub label: String,
    pub adapter: Option<FileId>,
    pub units: Vec<UnitResult>,
    /// The judge's scores: the four dimensions, then overall.
    pub summary: Vec<ColumnSummary>,
    /// The rules' scores, as `summary` (empty when the units have none).
    #[serde(default)]
    pub rule_summary: Vec<ColumnSummary>,
}

impl SystemResult {
    /// Builds the summary from `units` with a seeded bootstrap.
    pub fn new(
        label: String,
        adapter: Option<FileId>,
        units: Vec<UnitResult>,
        resamples: usize,
        seed: u64,
    ) -> Result<Self, EvalError> {
        let summarise = |columns: &[[f64; COLUMNS]]| -> Result<Vec<ColumnSummary>, EvalError> {
            Ok(mean_intervals(columns, resamples, seed)?
                .into_iter()
                .enumerate()
                .map(|(i, iv)| ColumnSummary::new(i, iv))
                .collect())
        };
        let columns: Vec<[f64; COLUMNS]> = units.iter().map(|u| u.scores.columns()).collect();
        let summary = summarise(&columns)?;
        let rule_columns: Option<Vec<[f64; COLUMNS]>> =
            units.iter().map(UnitResult::rule_columns).collect();
        let rule_summary = match rule_columns {
            Some(columns) if !columns.is_empty() => summarise(&columns)?,
            _ => Vec::new(),
        };
        Ok(Self {
            label,
            adapter,
            units,
            summary,
            rule_summary,
        })
    }

    pub fn column(&self, key: &str) -> Option<&ColumnSummary> {
        self.summary.iter().find(|c| c.key == key)
    }

    pub fn overall(&self) -> f64 {
        self.column("overall").map_or(0.0, |c| c.mean)
    }
}

/// A scene taking part, as listed in the results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SceneRef {
    pub id: String,
    pub title: String,
    pub source: PathBuf,
}

/// Everything `results.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalResults {
    pub format: u32,
    pub name: String,
    pub created_at: String,
    /// The model the characters were played by (the base of every adapter).
    pub model: FileId,
    /// The judge model (scores from different judges are not comparable).
    pub judge: FileId,
    /// The judge's calibration when the evaluation ran (absent in results
    /// written before calibration existed).
    #[serde(default)]
    pub judge_calibration: Option<CalibrationStatus>,
    pub settings: EvalSettings,
    pub scenes: Vec<SceneRef>,
    pub systems: Vec<SystemResult>,
}

impl EvalResults {
    pub fn system(&self, label: &str) -> Option<&SystemResult> {
        self.systems.iter().find(|s| s.label == label)
    }
}

/// One line of `scenes/<scene>.jsonl`: a unit with the judge's flaws, the
/// rules' flaws and how each turn ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SceneRecord {
    pub system: String,
    pub unit: UnitResult,
    pub answer: JudgeAnswer,
    #[serde(default)]
    pub rule_flaws: Vec<RuleFlaw>,
    #[serde(default)]
    pub turns: Vec<TurnRecord>,
}

/// Who spoke a turn and how its generation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnRecord {
    pub speaker: String,
    /// "end of generation", "max tokens", ….
    pub finish_reason: String,
}

/// The paired difference `candidate − baseline` of the judge's scores per
/// column over the units both played, with 95% intervals. Errors when they
/// share no unit.
pub fn paired_differences(
    baseline: &SystemResult,
    candidate: &SystemResult,
    resamples: usize,
    seed: u64,
) -> Result<(usize, [Interval; COLUMNS]), EvalError> {
    paired_differences_of(baseline, candidate, resamples, seed, |u| {
        Some(u.scores.columns())
    })
}

/// As [`paired_differences`], of the columns `columns` picks; a shared unit
/// without them is an error.
pub fn paired_differences_of(
    baseline: &SystemResult,
    candidate: &SystemResult,
    resamples: usize,
    seed: u64,
    columns: impl Fn(&UnitResult) -> Option<[f64; COLUMNS]>,
) -> Result<(usize, [Interval; COLUMNS]), EvalError> {
    let mut base_columns = Vec::new();
    let mut cand_columns = Vec::new();
    for unit in &baseline.units {
        if let Some(other) = candidate.units.iter().find(|c| c.key() == unit.key()) {
            match (columns(unit), columns(other)) {
                (Some(b), Some(c)) => {
                    base_columns.push(b);
                    cand_columns.push(c);
                }
                _ => {
                    return Err(EvalError::MissingScores {
                        scene: unit.scene.clone(),
                        seed: unit.seed,
                    });
                }
            }
        }
    }
    if base_columns.is_empty() {
        return Err(EvalError::NoCommonUnits {
            baseline: baseline.label.clone(),
            candidate: candidate.label.clone(),
        });
    }
    let intervals = paired_difference_intervals(&base_columns, &cand_columns, resamples, seed)?;
    Ok((base_columns.len(), intervals))
}

/// Writes `results.json` and the per-scene JSONL files into `dir` (each
/// file atomically).
pub fn write_results(
    dir: &Path,
    results: &EvalResults,
    records: &[SceneRecord],
) -> Result<PathBuf, EvalError> {
    let scenes = dir.join(SCENES_DIR);
    std::fs::create_dir_all(&scenes).map_err(IoError::at("create folder", &scenes))?;
    for scene in &results.scenes {
        let mut text = String::new();
        for record in records.iter().filter(|r| r.unit.scene == scene.id) {
            text.push_str(&serde_json::to_string(record)?);
            text.push('\n');
        }
        let path = scenes.join(format!("{}.jsonl", file_stem_of(&scene.id)));
        write(&path, text.as_bytes())?;
    }
    let path = dir.join(RESULTS_FILE);
    write(
        &path,
        format!("{:#}\n", serde_json::to_value(results)?).as_bytes(),
    )?;
    Ok(path)
}

/// A scene id as a file name: `#` and path separators become `-`.
pub fn file_stem_of(id: &str) -> String {
    id.chars()
        .map(|c| match c {
            '/' | '\\' | '#' | ':' => '-',
            c => c,
        })
        .collect()
}

/// Writes `bytes` atomically, creating the parent folder first.
pub(crate) fn write_in_new_folder(path: &Path, bytes: &[u8]) -> Result<(), EvalError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(IoError::at("create folder", dir))?;
    }
    write(path, bytes)
}

pub(crate) fn write(path: &Path, bytes: &[u8]) -> Result<(), EvalError> {
    her_core::fsutil::write_atomic(path, bytes, true)
        .map_err(|cause| EvalError::Io(IoError::new("write", path.to_path_buf(), cause)))
}

/// Reads `results.json` from an evaluation folder (or the file itself).
pub fn read_results(path: &Path) -> Result<EvalResults, EvalError> {
    let file = if path.is_dir() {
        path.join(RESULTS_FILE)
    } else {
        path.to_path_buf()
    };
    let text = her_core::fsutil::read::text(&file, her_core::fsutil::read::Kind::RunRecord)?;
    serde_json::from_str(&text).map_err(|e| EvalError::BadFile {
        path: file,
        message: e.to_string(),
    })
}

/// The evaluations in `dir` (folders holding a readable `results.json`),
/// newest first.
pub fn list_results(dir: &Path) -> Vec<EvalResults> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<EvalResults> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join(RESULTS_FILE).is_file())
        .filter_map(|p| read_results(&p).ok())
        .collect();
    out.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| a.name.cmp(&b.name))
    });
    out
}

/// Result fixtures, also for the app's TUI tests (feature `test-support`).
#[cfg(any(test, feature = "test-support"))]
#[allow(clippy::unwrap_used)]
pub mod tests {
    use super::*;
    use crate::judge::Flaw;

    pub fn answer(severities: [u8; 4]) -> JudgeAnswer {
        let flaws = |s: u8| {
            if s == 0 {
                Vec::new()
            } else {
                vec![Flaw {
                    flaw: "x".into(),
                    severity: s,
                }]
            }
        };
        JudgeAnswer {
            storyline_consistency: flaws(severities[0]),
            anthropomorphism: flaws(severities[1]),
            character_fidelity: flaws(severities[2]),
            storyline_quality: flaws(severities[3]),
        }
    }

    pub fn system(label: &str, severities: &[[u8; 4]]) -> SystemResult {
        let units = severities
            .iter()
            .enumerate()
            .map(|(i, s)| {
                UnitResult::new(
                    format!("scene-{}", i / 2),
                    i as u32 % 2,
                    4,
                    &answer(*s),
                    None,
                )
                .with_rules(&[])
            })
            .collect();
        SystemResult::new(label.into(), None, units, 500, 11).unwrap()
    }

    pub fn results(systems: Vec<SystemResult>) -> EvalResults {
        let file = |p: &str| FileId {
            path: p.into(),
            sha256: "00".repeat(32),
        };
        EvalResults {
            format: RESULTS_FORMAT,
            name: "test".into(),
            created_at: "2026-01-01T00:00:00.000Z".into(),
            model: file("m.gguf"),
            judge: file("j.gguf"),
            judge_calibration: None,
            settings: EvalSettings {
                rounds: 4,
                seeds: vec![0, 1],
                next_speaker: "random".into(),
                environment: true,
                max_new_tokens: 32,
                temperature: 0.7,
                resamples: 500,
                bootstrap_seed: 11,
            },
            scenes: vec![SceneRef {
                id: "scene-0".into(),
                title: "Scene".into(),
                source: "s.toml".into(),
            }],
            systems,
        }
    }

    #[test]
    fn round_trip_through_the_folder() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("e1");
        let base = system("base", &[[1, 2, 3, 4], [0, 0, 0, 0]]);
        let r = results(vec![base.clone()]);
        let records = vec![SceneRecord {
            system: "base".into(),
            unit: base.units[0].clone(),
            answer: answer([1, 2, 3, 4]),
            rule_flaws: Vec::new(),
            turns: Vec::new(),
        }];
        write_results(&dir, &r, &records).unwrap();
        assert_eq!(read_results(&dir).unwrap(), r);
        let jsonl = std::fs::read_to_string(dir.join("scenes/scene-0.jsonl")).unwrap();
        assert_eq!(jsonl.lines().count(), 1);
        assert_eq!(list_results(root.path()), vec![r.clone()]);
        let summary = &r.systems[0].summary;
        assert_eq!(summary.len(), 5);
        assert_eq!(summary[4].key, "overall");
        // Scene 1 seed 0: 100 − 5·(1 − 1.2) = 101 → 100; …; unit 2: no flaws.
        assert!(summary[0].mean <= 100.0 && summary[0].low <= summary[0].mean);
    }

    #[test]
    fn unreadable_results_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(RESULTS_FILE), "{").unwrap();
        let err = read_results(dir.path()).unwrap_err().to_string();
        assert!(err.contains(RESULTS_FILE), "{err}");
    }
}
