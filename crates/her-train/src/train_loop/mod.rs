//! The one training loop every method runs: data → held-out split →
//! manifest → steps (stop, checkpoints, held-out evaluations, progress) →
//! export, driven by an [`Objective`] per method.
//!
//! What keeps a run's curve and adapter reproducible lives here once: the
//! order of the passes (the reference before the restore), the schedule
//! index `step * passes + pass`, the non-finite guard (a micro-batch whose
//! loss is not finite ends the pass and the update is skipped), the
//! checkpoints a resume continues from, the best checkpoint and early
//! stopping, and a final evaluation that is not logged twice.

mod held_out;
pub mod job;
pub mod objective;
pub mod report;
pub mod trainer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::data::split_by_hash;
use crate::error::JobError;
use crate::optim::Accumulator;
use crate::run::{RunDir, memory_mib};
use crate::settings::TrainConfig;
use held_out::HeldOut;
pub use job::{ErrorOf, ItemOf, Job, run};
pub use objective::{DataSummary, Micro, MicroLoss, Objective, StepData, StepOutcome};
pub use report::{EvalLine, Progress, RunReport, StepLine};
use trainer::{Trainer, compute, device, lora_spec};

/// What every method's run shares.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The base GGUF (the chat model).
    pub model: PathBuf,
    pub model_fingerprint: String,
    pub settings: TrainConfig,
    /// The run folder.
    pub run: PathBuf,
    /// Continue from the newest checkpoint in `run`.
    pub resume: bool,
    /// Start from (and take the reference from) this adapter instead of
    /// fresh LoRA factors.
    pub init_adapter: Option<PathBuf>,
}

/// One run of one objective.
pub struct TrainLoop<'a> {
    spec: &'a RunSpec,
    stop: &'a AtomicBool,
}

/// The loop's report of a run of `O`.
pub type ReportOf<O> = RunReport<<O as Objective>::Metrics, <O as Objective>::EvalMetrics>;
/// The progress callback of a run of `O`.
pub type OnProgress<'p, O> =
    dyn FnMut(Progress<'_, <O as Objective>::Metrics, <O as Objective>::EvalMetrics>) + 'p;

impl<'a> TrainLoop<'a> {
    /// `stop` raised (ctrl+c) saves a checkpoint after the current step and ends the run.
    pub fn new(spec: &'a RunSpec, stop: &'a AtomicBool) -> Self {
        Self { spec, stop }
    }

    pub fn run<O: Objective>(
        &self,
        objective: &mut O,
        items: Vec<O::Item>,
        on_progress: &mut OnProgress<'_, O>,
    ) -> Result<ReportOf<O>, O::Error> {
        let (spec, s) = (self.spec, &self.spec.settings);
        // 1. Bad settings, an unavailable device or unusable items fail
        // before any work.
        lora_spec(s)?;
        compute(s, &device(s)?)?;
        if objective.evaluates_during_run() {
            check_early_stopping(s)?;
        }
        objective.check(s, &items)?;
        // A run whose memory plan does not fit is refused here, before the
        // model loads and before the run folder exists.
        crate::plan::check_run(objective.kind(), &spec.model, s).map_err(JobError::from)?;

        // 2. The held-out split by content, tokenization, the steps, and
        // the run folder with its manifest.
        let tokenizer = crate::tokenizer::from_gguf(&spec.model).map_err(JobError::from)?;
        let (train, held) = split_by_hash(items, objective.held_out_fraction(s), O::item_sha256);
        let data = objective.prepare(&tokenizer, train, held, s)?;
        let total = objective.total_steps(s);
        let passes = u64::from(objective.passes().max(1));
        let settings_sha256 = objective.settings_sha256(&RunSpec {
            settings: s.shaping(),
            ..spec.clone()
        });
        let run = RunDir::create(&spec.run).map_err(JobError::from)?;
        run.write_manifest(&manifest(objective, spec, total))
            .map_err(JobError::from)?;

        // 3. The model with its LoRA (fresh, or the starting adapter's) and
        // AdamW; the method's reference from these starting weights.
        let mut trainer = Trainer::new(
            &spec.model,
            s,
            spec.init_adapter.as_deref(),
            run,
            total * passes,
            settings_sha256,
        )?;
        objective.start(&mut trainer)?;
        let measured_before = !spec.resume || objective.eval_before_on_resume();
        let mut before = match measured_before {
            true => objective.evaluate(&trainer)?,
            false => None,
        };

        // 4. On --resume: the weights, moments and curve of the newest
        // checkpoint, and the evaluations already made (the best and the
        // patience continue from them).
        let (start, mut curve) = match spec.resume {
            true => trainer.restore()?.unwrap_or((0, Vec::new())),
            false => (0, Vec::new()),
        };
        if start == 0 && !measured_before {
            // A resume that found no checkpoint: still the starting weights.
            before = objective.evaluate(&trainer)?;
        }
        let mut held_out = HeldOut::new(s);
        if start == 0 {
            if let Some((loss, metrics)) = &before {
                held_out.log(&trainer, 0, *loss, metrics.clone(), on_progress)?;
            }
        } else {
            held_out.recall(&spec.run);
        }
        objective.resume(&trainer, start)?;

        // 5. The steps.
        let during = objective.evaluates_during_run();
        let began = Instant::now();
        let mut tokens_seen = 0usize;
        let mut interrupted = false;
        // A run stopped right where early stopping ended it does not go on.
        let mut early_stopped = (during && held_out.should_stop()).then_some(start);
        let mut saved_at = None;
        let mut last = None;
        let mut step = start;
        while step < total && early_stopped.is_none() {
            let (batches, step_tokens) = match objective.step_batches(&trainer, step, self.stop)? {
                StepData::Ready { batches, tokens } => (batches, tokens),
                StepData::Stopped => {
                    // Nothing of this step is kept.
                    interrupted = true;
                    trainer.save_checkpoint(step, &curve)?;
                    saved_at = Some(step);
                    break;
                }
            };
            let mut update = None;
            for pass in 0..passes {
                if batches.is_empty() {
                    break;
                }
                let pass = pass as u32;
                let Pass {
                    mut grads,
                    complete,
                    positions,
                } = accumulate(objective, &trainer, &batches, step, pass)?;
                tokens_seen += positions;
                let loss = objective.pass_loss(complete);
                let lr_step = step * passes + u64::from(pass);
                let applied = trainer.update(&mut grads, lr_step, step + 1, loss)?;
                let skipped = !applied.applied;
                update = Some(applied);
                if skipped {
                    // The rest of this step's passes would start from the same place.
                    break;
                }
            }
            // No rows to learn from (RL: every reply too long): no update.
            let (grad_norm, lr) = update.map_or((0.0, trainer.schedule.lr(step * passes)), |u| {
                (u.grad_norm, u.lr)
            });
            let outcome = objective.summarize();
            step += 1;
            curve.push(outcome.curve);
            objective.after_step(&trainer, step)?;
            let elapsed = began.elapsed().as_secs_f64();
            let (rss, peak) = memory_mib();
            let line = StepLine {
                kind: "step".into(),
                step,
                total_steps: total,
                loss: outcome.loss,
                lr,
                grad_norm,
                tokens: step_tokens,
                tokens_per_s: tokens_seen as f64 / elapsed.max(1e-9),
                elapsed_s: elapsed,
                eta_s: elapsed / (step - start) as f64 * (total - step) as f64,
                rss_mib: rss,
                peak_mib: peak,
                metrics: outcome.metrics.clone(),
            };
            trainer.run.log(&line).map_err(JobError::from)?;
            on_progress(Progress::Step(&line));
            last = Some(outcome);

            let every = u64::from(s.eval_every);
            let new_best = match during && every > 0 && step % every == 0 && step < total {
                true => held_out.evaluate(objective, &trainer, step, on_progress)?.0,
                false => false,
            };
            // A new best is kept as a checkpoint, which the export reloads.
            let keep_best = new_best && s.load_best_model_at_end;
            let regular = s.checkpoint_every > 0 && step % u64::from(s.checkpoint_every) == 0;
            interrupted = self.stop.load(Ordering::SeqCst);
            if during && held_out.should_stop() {
                early_stopped = Some(step);
            }
            if interrupted || early_stopped.is_some() || ((regular || keep_best) && step < total) {
                trainer.save_checkpoint(step, &curve)?;
                saved_at = Some(step);
            }
            if interrupted || early_stopped.is_some() {
                break;
            }
        }
        objective.finish(&trainer)?;

        // 6. The end: a last checkpoint, the held-out evaluation (unless
        // this step's is already logged), both adapter formats (from the
        // best checkpoint when asked).
        let mut report = RunReport {
            interrupted,
            steps: step,
            curve: curve.clone(),
            evals: Vec::new(),
            before,
            after: None,
            last,
            best: None,
            adapter_step: None,
            early_stopped,
            data,
            adapter_gguf: None,
            peft_dir: None,
            tokens_per_s: tokens_seen as f64 / began.elapsed().as_secs_f64().max(1e-9),
            peak_mib: memory_mib().1,
        };
        if interrupted {
            (report.evals, report.best) = held_out.into_parts();
            return Ok(report);
        }
        if saved_at != Some(step) {
            trainer.save_checkpoint(step, &curve)?;
        }
        if held_out.last_step() != Some(step) {
            report.after = held_out.evaluate(objective, &trainer, step, on_progress)?.1;
        }
        let best = held_out.best();
        let adapter_step = match best {
            Some((at, _)) if during && s.load_best_model_at_end => at,
            _ => step,
        };
        if adapter_step != step {
            trainer.load_weights(adapter_step)?;
        }
        trainer
            .run
            .log(&serde_json::json!({
                "kind": "export", "step": step, "weights_step": adapter_step,
                "best_step": best.map(|b| b.0), "best_eval_loss": best.map(|b| b.1),
                "early_stopped": early_stopped.is_some(),
            }))
            .map_err(JobError::from)?;
        let (gguf, peft) = trainer.export(&spec.model)?;
        (report.evals, report.best) = held_out.into_parts();
        report.adapter_step = Some(adapter_step);
        report.adapter_gguf = Some(gguf);
        report.peft_dir = Some(peft);
        Ok(report)
    }
}

/// One pass over a step's micro-batches: their gradients summed.
pub struct Pass {
    pub grads: Accumulator,
    /// False: a micro-batch's loss was NaN or infinite (the rest were not run).
    pub complete: bool,
    /// Positions run.
    pub positions: usize,
}

/// Runs pass `pass` of optimizer step `step` over `batches`: each
/// micro-batch's weighted loss through the model's backward, the gradients
/// summed. A non-finite loss ends the pass (the step will be skipped: the
/// rest would be wasted work).
pub fn accumulate<O: Objective>(
    objective: &mut O,
    trainer: &Trainer,
    batches: &[O::Batch],
    step: u64,
    pass: u32,
) -> Result<Pass, O::Error> {
    objective.begin_pass(pass);
    let mut out = Pass {
        grads: Accumulator::new(trainer.params.len()),
        complete: true,
        positions: 0,
    };
    for (index, batch) in batches.iter().enumerate() {
        let micro = objective.loss(trainer, batch, Micro { step, pass, index })?;
        out.positions += micro.positions;
        let value = micro.loss.to_scalar::<f32>().map_err(JobError::from)?;
        if !value.is_finite() {
            out.complete = false;
            break;
        }
        // Through the model: with activation checkpointing the LoRA
        // gradients come back through its side channel.
        let grads = trainer
            .model
            .backward(&micro.loss)
            .map_err(JobError::from)?;
        out.grads
            .add(&trainer.params, &grads, 1.0)
            .map_err(JobError::from)?;
    }
    Ok(out)
}

/// Early stopping counts held-out evaluations made during the run.
fn check_early_stopping(s: &TrainConfig) -> Result<(), JobError> {
    if s.early_stopping_patience > 0 && (s.eval_every == 0 || s.eval_fraction <= 0.0) {
        return Err(JobError::Setup(format!(
            "train.early_stopping_patience = {} needs held-out evaluations during the run: \
             set train.eval_every and train.eval_fraction above 0 (or the patience to 0)",
            s.early_stopping_patience
        )));
    }
    Ok(())
}

/// run.json: the loop's fields, then the method's.
fn manifest<O: Objective>(objective: &O, spec: &RunSpec, total: u64) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    let common = serde_json::json!({
        "kind": objective.kind(),
        "model": spec.model,
        "model_fingerprint": spec.model_fingerprint,
        "init_adapter": spec.init_adapter,
        "settings": spec.settings,
    });
    if let serde_json::Value::Object(common) = common {
        m.extend(common);
    }
    m.extend(objective.manifest(spec));
    m.insert("total_steps".into(), total.into());
    serde_json::Value::Object(m)
}
