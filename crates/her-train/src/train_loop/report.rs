//! What a run writes to metrics.jsonl and reports as it goes and at the end.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::objective::{DataSummary, StepOutcome};

/// One `step` line of metrics.jsonl: the fields every method shares, then
/// the method's own.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepLine<M> {
    /// "step".
    pub kind: String,
    /// 1-based: the steps done.
    pub step: u64,
    pub total_steps: u64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    /// Tokens the step's loss is over.
    #[serde(default)]
    pub tokens: usize,
    /// Positions run per second since this process started the run.
    #[serde(default)]
    pub tokens_per_s: f64,
    #[serde(default)]
    pub elapsed_s: f64,
    #[serde(default)]
    pub eta_s: f64,
    pub rss_mib: f64,
    pub peak_mib: f64,
    #[serde(flatten)]
    pub metrics: M,
}

/// One `eval` line: the held-out loss, then the method's own metrics.
#[derive(Debug, Clone, Serialize)]
pub struct EvalLine<M> {
    /// "eval".
    pub kind: &'static str,
    pub step: u64,
    pub eval_loss: f64,
    #[serde(flatten)]
    pub metrics: M,
}

/// What the loop reports as it goes.
pub enum Progress<'a, M, E> {
    Step(&'a StepLine<M>),
    Eval(&'a EvalLine<E>),
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunReport<M, E> {
    /// Stopped by the user (a checkpoint was saved; nothing exported).
    pub interrupted: bool,
    /// Steps done.
    pub steps: u64,
    /// The curve points of every step, earlier ones of a resumed run included.
    pub curve: Vec<f64>,
    /// (step, held-out loss) of every evaluation, earlier ones of a resumed
    /// run included.
    pub evals: Vec<(u64, f64)>,
    /// Held-out loss and metrics with the starting weights (measured when
    /// the run starts at step 0, or on a resume when the method asks).
    pub before: Option<(f64, E)>,
    /// The held-out evaluation at the end (`None` when interrupted, without
    /// held-out data, or when this step's was already logged).
    pub after: Option<(f64, E)>,
    /// The last step this process ran.
    pub last: Option<StepOutcome<M>>,
    /// The lowest held-out loss after the first step, and its step.
    pub best: Option<(u64, f64)>,
    /// The step whose weights the exported adapter holds.
    pub adapter_step: Option<u64>,
    /// The step early stopping ended the run at.
    pub early_stopped: Option<u64>,
    pub data: DataSummary,
    pub adapter_gguf: Option<PathBuf>,
    pub peft_dir: Option<PathBuf>,
    pub tokens_per_s: f64,
    pub peak_mib: f64,
}
