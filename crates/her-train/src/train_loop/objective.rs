//! What one training method brings to the loop: its data, its loss, its
//! metrics. Everything else (the split, the run folder, checkpoints, the
//! non-finite guard, accumulation, held-out evaluations, export) is the
//! loop's.

use std::sync::atomic::AtomicBool;

use candle_core::Tensor;
use serde::Serialize;
use tokenizers::Tokenizer;

use super::RunSpec;
use super::trainer::Trainer;
use crate::error::JobError;
use crate::settings::TrainConfig;

/// One training method (SFT, DPO, KTO, RL's update).
///
/// The loop calls, in this order: [`check`](Objective::check),
/// [`prepare`](Objective::prepare), [`total_steps`](Objective::total_steps),
/// [`settings_sha256`](Objective::settings_sha256) and
/// [`manifest`](Objective::manifest), [`start`](Objective::start) with the
/// starting weights, [`resume`](Objective::resume) after the restore; then per
/// step [`step_batches`](Objective::step_batches), per pass
/// [`begin_pass`](Objective::begin_pass), [`loss`](Objective::loss) per
/// micro-batch and [`pass_loss`](Objective::pass_loss), then
/// [`summarize`](Objective::summarize) and [`after_step`](Objective::after_step);
/// [`finish`](Objective::finish) when the steps end.
pub trait Objective {
    /// One sample as read: `Sample` (SFT), `PairSample` (DPO), `KtoSample`
    /// (KTO), `RlPrompt` (RL).
    type Item;
    /// One micro-batch as the method's `loss` takes it.
    type Batch;
    /// The method's own fields of a `step` line of metrics.jsonl (flattened
    /// after the common ones, so it must not repeat them).
    type Metrics: Serialize + Clone;
    /// The method's own fields of an `eval` line.
    type EvalMetrics: Serialize + Clone;
    /// The method's error; the loop's own errors convert into it.
    type Error: From<JobError>;

    /// "sft" | "dpo" | "kto" | "rl": the run's kind in run.json.
    fn kind(&self) -> &'static str;

    /// Settings or items the method cannot work with, found before any work.
    fn check(&self, _settings: &TrainConfig, _items: &[Self::Item]) -> Result<(), Self::Error> {
        Ok(())
    }

    /// The content hash the held-out split sorts by.
    fn item_sha256(item: &Self::Item) -> String;

    /// Share of the items held out (RL: 0, it has no held-out set).
    fn held_out_fraction(&self, settings: &TrainConfig) -> f64 {
        settings.eval_fraction
    }

    /// Tokenizes both splits and leaves out what is longer than
    /// `train.max_seq_len`; an error when nothing is left to train on.
    fn prepare(
        &mut self,
        tokenizer: &Tokenizer,
        train: Vec<Self::Item>,
        held_out: Vec<Self::Item>,
        settings: &TrainConfig,
    ) -> Result<DataSummary, Self::Error>;

    /// Optimizer steps of the run.
    fn total_steps(&self, settings: &TrainConfig) -> u64;

    /// Optimizer updates per step (RL: `rl.updates_per_batch`; 1 otherwise).
    fn passes(&self) -> u32 {
        1
    }

    /// The hash a checkpoint is tied to: everything that shaped the run, so
    /// `--resume` refuses a checkpoint made from something else.
    fn settings_sha256(&self, spec: &RunSpec) -> String;

    /// The method's fields of run.json, besides the loop's (kind, model,
    /// model_fingerprint, init_adapter, settings, total_steps).
    fn manifest(&self, spec: &RunSpec) -> serde_json::Map<String, serde_json::Value>;

    /// Whether the held-out metrics "before" are measured on the starting
    /// weights when resuming (DPO and KTO report them; SFT does not).
    fn eval_before_on_resume(&self) -> bool {
        false
    }

    /// Whether the held-out set is evaluated every `train.eval_every` steps,
    /// with the best checkpoint kept and early stopping (SFT); otherwise
    /// only before the first step and at the end.
    fn evaluates_during_run(&self) -> bool {
        false
    }

    /// With the starting weights, before any restore: the reference
    /// log-probs (DPO, KTO), the reference LoRA copy (RL).
    fn start(&mut self, _trainer: &mut Trainer) -> Result<(), Self::Error> {
        Ok(())
    }

    /// After the restore, at the step the run continues from (RL: its
    /// rollout log, engines and baselines).
    fn resume(&mut self, _trainer: &Trainer, _step: u64) -> Result<(), Self::Error> {
        Ok(())
    }

    /// The micro-batches of optimizer step `step` (0-based), or
    /// [`StepData::Stopped`] when `stop` was raised while waiting (RL's
    /// human ratings).
    fn step_batches(
        &mut self,
        trainer: &Trainer,
        step: u64,
        stop: &AtomicBool,
    ) -> Result<StepData<Self::Batch>, Self::Error>;

    /// A pass over the step's micro-batches begins.
    fn begin_pass(&mut self, _pass: u32) {}

    /// The loss of one micro-batch, weighted so the step's micro-batches add
    /// up to the step's loss, with its graph kept for the backward pass. The
    /// method keeps its own sums for the pass.
    fn loss(
        &mut self,
        trainer: &Trainer,
        batch: &Self::Batch,
        at: Micro,
    ) -> Result<MicroLoss, Self::Error>;

    /// The pass's loss for the non-finite guard; `complete` is false when a
    /// micro-batch's loss was NaN or infinite and the rest were not run.
    fn pass_loss(&mut self, complete: bool) -> f64;

    /// The step's loss, curve point and metrics, from the passes just run.
    fn summarize(&mut self) -> StepOutcome<Self::Metrics>;

    /// After the step: RL appends its rollouts (before the step's line, as
    /// rollouts.jsonl always ran ahead of metrics.jsonl).
    fn after_step(&mut self, _trainer: &Trainer, _step: u64) -> Result<(), Self::Error> {
        Ok(())
    }

    /// The held-out loss and metrics with the current weights, without a
    /// graph; `None` without held-out data.
    fn evaluate(
        &mut self,
        trainer: &Trainer,
    ) -> Result<Option<(f64, Self::EvalMetrics)>, Self::Error>;

    /// The steps are over (done, stopped or early-stopped): RL stops its
    /// engines and removes its scratch adapters.
    fn finish(&mut self, _trainer: &Trainer) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Where a micro-batch sits in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Micro {
    /// The optimizer step, 0-based.
    pub step: u64,
    pub pass: u32,
    /// Its place among the step's micro-batches.
    pub index: usize,
}

/// A step's micro-batches, or the news that the run was stopped while
/// gathering them.
pub enum StepData<B> {
    Ready {
        batches: Vec<B>,
        /// Tokens the step's loss is over (for the step line).
        tokens: usize,
    },
    Stopped,
}

/// One micro-batch's weighted loss and the positions it ran.
pub struct MicroLoss {
    pub loss: Tensor,
    pub positions: usize,
}

/// What a step comes to.
#[derive(Debug, Clone)]
pub struct StepOutcome<M> {
    pub loss: f64,
    /// The point the checkpoints save as the run's curve (the loss; RL: the
    /// mean reward).
    pub curve: f64,
    pub metrics: M,
}

/// What the data came to after the split and tokenization.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataSummary {
    pub train: usize,
    pub held_out: usize,
    /// Longer than `train.max_seq_len`, left out.
    pub too_long: usize,
}
