//! Mini-CoSER evaluation (her-format.md §6): the model under test plays
//! every character of a set of scenes, a judge and a set of rules list the
//! flaws of each transcript per dimension, scores get bootstrap intervals,
//! adapters are compared with the base model on the same scenes and seeds,
//! and a gate promotes an adapter only when its judge passed calibration and
//! no dimension got worse, by the judge or by the rules.
//!
//! - [`scenes`]: which scenes (shipped files, CoSER JSON)
//! - [`simulate`]: playing a scene through `SceneConversation`
//! - [`transcript`]: saving each played scene as a session
//! - [`judge`]: the judge's prompt, bounded answer grammar and parser
//! - [`rules`]: rule-based flaw detectors beside the judge
//! - [`calibrate`]: whether a judge can tell planted flaws from clean scenes
//! - [`score`], [`bootstrap`]: the CoSER formula and the intervals
//! - [`results`]: `evals/NAME/results.json` and per-scene JSONL
//! - [`report`], [`svg`]: the terminal table and the shareable chart
//! - [`gate`], [`promote`]: the promotion decision and `adapters/promoted.toml`
//! - [`run`]: one evaluation from start to end

pub mod bootstrap;
pub mod calibrate;
pub mod gate;
pub mod judge;
pub mod promote;
pub mod report;
pub mod results;
pub mod rules;
pub mod run;
pub mod scenes;
pub mod score;
pub mod simulate;
pub mod svg;
pub mod transcript;

#[cfg(any(test, feature = "test-support"))]
pub mod testing;

use her_core::fsutil::IoError;
use std::path::PathBuf;

pub use calibrate::{CalibrationState, CalibrationStatus};
pub use gate::{GateDecision, decide, render_decision};
pub use results::{EvalResults, FileId, SystemResult, list_results, read_results};
pub use run::{EvalPlan, Progress, SystemSpec, judge_sampling, run_eval};
pub use scenes::{EvalScene, load_scenes};
pub use score::{Dimension, SceneScores, dimension_score};
pub use simulate::{NextSpeakerMode, SimOptions};

/// The chart written next to `results.json`.
pub const CHART_FILE: &str = "chart.svg";
/// The terminal report, as text.
pub const REPORT_FILE: &str = "report.txt";
/// The gate's decision, when the evaluation was a gate.
pub const GATE_FILE: &str = "gate.json";

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("the model failed: {0}")]
    Engine(her_engine::EngineError),
    #[error(
        "adapter '{}' could not be loaded: {cause}; check the path (a run's adapter is runs/NAME/adapter.gguf)",
        path.display()
    )]
    Adapter {
        path: PathBuf,
        cause: her_engine::EngineError,
    },
    #[error(
        "the judge's answer on scene '{scene}' could not be read (it ended by {finish}): {cause}; \
         a local judge needs room for its answer: raise --judge-n-ctx or lower --rounds / --max-new-tokens"
    )]
    Unreadable {
        scene: String,
        finish: String,
        cause: judge::AnswerError,
    },
    #[error(
        "no scene '{spec}': give a scene file stem in '{}' (see `her characters`), a scene .toml file or a CoSER .json file",
        dir.display()
    )]
    SceneNotFound { spec: String, dir: PathBuf },
    #[error(
        "no scenes to evaluate: '{}' holds no .toml scene files; name scene files or CoSER .json files on the command line",
        dir.display()
    )]
    NoScenes { dir: PathBuf },
    #[error("scene '{id}' is named twice (again by '{}'); name each scene once", path.display())]
    DuplicateScene { id: String, path: PathBuf },
    #[error(transparent)]
    Character(#[from] her_core::character::CharacterError),
    #[error(transparent)]
    Coser(#[from] her_core::character::card::CardError),
    #[error(transparent)]
    Session(#[from] her_core::session::SessionError),
    #[error(transparent)]
    Read(#[from] her_core::fsutil::read::ReadError),
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("'{}' cannot be read: {message}", path.display())]
    BadFile { path: PathBuf, message: String },
    #[error("cannot encode as JSON: {0}")]
    Json(serde_json::Error),
    #[error("bootstrap: {0}")]
    Stats(her_core::prefs::stats::StatsError),
    #[error(
        "'{baseline}' and '{candidate}' share no scene and seed: compare results of the same scenes and seeds"
    )]
    NoCommonUnits { baseline: String, candidate: String },
    #[error(
        "scene '{scene}' seed {seed} has no rule-based scores (results written before the rules \
         existed): evaluate again to compare"
    )]
    MissingScores { scene: String, seed: u32 },
}

// By hand, not `#[from]`: the message already shows the cause, so it must
// not also be the `source()` (an error chain would print it twice).
impl From<her_engine::EngineError> for EvalError {
    fn from(cause: her_engine::EngineError) -> Self {
        Self::Engine(cause)
    }
}

impl From<serde_json::Error> for EvalError {
    fn from(cause: serde_json::Error) -> Self {
        Self::Json(cause)
    }
}

impl From<her_core::prefs::stats::StatsError> for EvalError {
    fn from(cause: her_core::prefs::stats::StatsError) -> Self {
        Self::Stats(cause)
    }
}
