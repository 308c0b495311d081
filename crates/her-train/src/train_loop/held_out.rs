//! The held-out evaluations of a run: logged, reported, and the best of
//! them tracked for the best checkpoint and early stopping.

use std::path::Path;

use super::objective::Objective;
use super::report::{EvalLine, Progress};
use super::trainer::Trainer;
use crate::best::BestTracker;
use crate::error::JobError;
use crate::settings::TrainConfig;

/// (step, held-out loss) of each evaluation.
type Evals = Vec<(u64, f64)>;
/// The step and loss of the best evaluation.
type Best = Option<(u64, f64)>;
/// A held-out loss and the method's metrics, when there is held-out data.
type Evaluated<E> = Option<(f64, E)>;

pub(super) struct HeldOut {
    /// Every evaluation so far.
    evals: Evals,
    best: BestTracker,
}

impl HeldOut {
    pub(super) fn new(s: &TrainConfig) -> Self {
        Self {
            evals: Vec::new(),
            best: BestTracker::new(s.early_stopping_patience, s.early_stopping_threshold),
        }
    }

    /// The evaluations a resumed run already made (its metrics.jsonl,
    /// truncated to the checkpoint).
    pub(super) fn recall(&mut self, run: &Path) {
        if let Some(past) = crate::runs::read_run(run) {
            for (step, loss) in past.evals {
                self.record(step as u64, loss);
            }
        }
    }

    /// Evaluates at `step` and logs it; returns whether the loss is the
    /// best so far, and the evaluation (`None` without held-out data).
    pub(super) fn evaluate<O: Objective>(
        &mut self,
        objective: &mut O,
        trainer: &Trainer,
        step: u64,
        on_progress: &mut super::OnProgress<'_, O>,
    ) -> Result<(bool, Evaluated<O::EvalMetrics>), O::Error> {
        let Some((loss, metrics)) = objective.evaluate(trainer)? else {
            return Ok((false, None));
        };
        let best = self.log(trainer, step, loss, metrics.clone(), on_progress)?;
        Ok((best, Some((loss, metrics))))
    }

    /// Logs an evaluation made at `step`, reports it and records it.
    pub(super) fn log<M, E: serde::Serialize>(
        &mut self,
        trainer: &Trainer,
        step: u64,
        loss: f64,
        metrics: E,
        on_progress: &mut dyn FnMut(Progress<'_, M, E>),
    ) -> Result<bool, JobError> {
        let line = EvalLine {
            kind: "eval",
            step,
            eval_loss: loss,
            metrics,
        };
        trainer.run.log(&line)?;
        on_progress(Progress::Eval(&line));
        Ok(self.record(step, loss))
    }

    fn record(&mut self, step: u64, loss: f64) -> bool {
        self.evals.push((step, loss));
        self.best.record(step, loss)
    }

    pub(super) fn last_step(&self) -> Option<u64> {
        self.evals.last().map(|(s, _)| *s)
    }

    pub(super) fn should_stop(&self) -> bool {
        self.best.should_stop()
    }

    pub(super) fn best(&self) -> Best {
        self.best.best()
    }

    /// Every evaluation, and the best.
    pub(super) fn into_parts(self) -> (Evals, Best) {
        let best = self.best.best();
        (self.evals, best)
    }
}
