//! `her train rl`: online reward-weighted RL in the GRPO family.
//!
//! Each step: the llama.cpp engine samples a group of replies per prompt
//! with the adapter being trained; the replies are scored (judge against
//! the reference's reply, format linter, layout diversity, a text rule, the
//! user's own stars); advantages are normalised within each group; the
//! LoRA takes a clipped policy-gradient step with a KL penalty to the
//! reference; the new adapter is swapped into the engine. Every rollout and
//! its reward parts go to `rollouts.jsonl`, so a run can be audited.

pub mod human;
pub mod layout;
pub mod loss;
pub mod objective;
pub mod prompts;
pub mod rewards;
pub mod rollout;
mod step;
mod update;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::dataset::DataSource;
use super::error::{JobError, TrainError};
use super::run::RunError;
use super::train_loop::{Job, ReportOf, RunSpec};
use crate::settings::RlConfig;
use her_core::fsutil::read::{self, Kind};
use her_core::generation::SamplingConfig;
use her_engine::dialogue::judge::JudgeError;
use her_engine::{EngineError, LocalEngineOptions};
use objective::RlObjective;
use rewards::RewardParts;
pub use step::{RlMetrics, StepMetrics, rollout_sampling};

#[derive(Debug, thiserror::Error)]
pub enum RlError {
    #[error(transparent)]
    Train(#[from] JobError),
    #[error("the rollout engine failed: {0}")]
    Engine(EngineError),
    #[error(transparent)]
    Judge(#[from] JudgeError),
    #[error("{0}")]
    Setup(String),
}

// By hand, not `#[from]`: the message already shows the cause, so it must
// not also be the `source()` (an error chain would print it twice).
impl From<EngineError> for RlError {
    fn from(cause: EngineError) -> Self {
        Self::Engine(cause)
    }
}

impl From<candle_core::Error> for RlError {
    fn from(e: candle_core::Error) -> Self {
        Self::Train(e.into())
    }
}

impl From<TrainError> for RlError {
    fn from(e: TrainError) -> Self {
        Self::Train(e.into())
    }
}

impl From<RunError> for RlError {
    fn from(e: RunError) -> Self {
        Self::Train(e.into())
    }
}

impl From<super::tokenizer::TokenizerError> for RlError {
    fn from(e: super::tokenizer::TokenizerError) -> Self {
        Self::Train(e.into())
    }
}

/// An RL run (its `model` is the policy's base; its `init_adapter` the
/// starting policy and the reference) with the engines and rewards.
pub struct RlJob {
    pub spec: RunSpec,
    /// How the rollout engine loads the model.
    pub engine: LocalEngineOptions,
    /// The judge (`None`: the judge reward is off): its own engine, never
    /// the rollout engine, whose adapter changes every step.
    pub judge: Option<Box<dyn her_engine::Backend>>,
    pub rl: RlConfig,
    /// Sampling of the chat (stop strings, penalties); temperature, length
    /// and seed come from `rl`.
    pub sampling: SamplingConfig,
    pub sources: Vec<DataSource>,
}

/// One rollout as `rollouts.jsonl` records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutRecord {
    pub step: u64,
    pub prompt_id: String,
    pub member: usize,
    pub seed: u32,
    /// Raw, prefill included.
    pub reply: String,
    pub finish: her_engine::FinishReason,
    pub tokens: usize,
    pub layout: String,
    pub parts: RewardParts,
    /// The judge's verdicts with the rollout as candidate 1, then as
    /// candidate 2 (a position-biased judge shows here as ties).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_orders: Option<[her_core::prefs::Verdict; 2]>,
    pub reward: f64,
    pub advantage: f64,
    /// Left out of the update: longer than `train.max_seq_len`.
    #[serde(default)]
    pub too_long: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RlReport {
    pub interrupted: bool,
    pub steps: u64,
    pub prompts: usize,
    /// Mean reward of every step.
    pub reward_curve: Vec<f64>,
    /// The metrics of the last step this process ran.
    pub last: Option<RlMetrics>,
    /// Seconds spent per phase over the whole run.
    pub swap_s: f64,
    pub rollout_s: f64,
    pub scoring_s: f64,
    pub update_s: f64,
    pub rollout_tokens: usize,
    pub engine_reloads: u32,
    pub adapter_gguf: Option<PathBuf>,
    pub peft_dir: Option<PathBuf>,
}

impl RlReport {
    pub fn rollout_tokens_per_s(&self) -> f64 {
        self.rollout_tokens as f64 / self.rollout_s.max(1e-9)
    }
}

fn rollouts_path(run: &Path) -> PathBuf {
    run.join("rollouts.jsonl")
}

fn baselines_path(run: &Path) -> PathBuf {
    run.join("baselines.jsonl")
}

#[derive(Serialize, Deserialize)]
struct Baseline {
    prompt_id: String,
    reply: String,
}

impl Job for RlJob {
    type Objective<'j> = RlObjective<'j>;
    type Report = RlReport;

    fn spec(&self) -> &RunSpec {
        &self.spec
    }

    fn objective(&self) -> Result<RlObjective<'_>, RlError> {
        RlObjective::new(self)
    }

    fn report(objective: RlObjective<'_>, r: ReportOf<RlObjective<'_>>) -> RlReport {
        let totals = objective.totals();
        RlReport {
            interrupted: r.interrupted,
            steps: r.steps,
            prompts: r.data.train,
            reward_curve: r.curve,
            last: r.last.map(|o| o.metrics),
            swap_s: totals.swap_s,
            rollout_s: totals.rollout_s,
            scoring_s: totals.scoring_s,
            update_s: totals.update_s,
            rollout_tokens: totals.rollout_tokens,
            engine_reloads: totals.engine_reloads,
            adapter_gguf: r.adapter_gguf,
            peft_dir: r.peft_dir,
        }
    }
}

fn read_baselines(path: &Path) -> HashMap<String, String> {
    read::jsonl_records::<Baseline>(path, Kind::RunRecord)
        .into_iter()
        .map(|b| (b.prompt_id, b.reply))
        .collect()
}

/// The rollouts of a run folder (a cut last line is skipped).
pub fn read_rollouts(path: &Path) -> Vec<RolloutRecord> {
    read::jsonl_records(path, Kind::RunRecord)
}
