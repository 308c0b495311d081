//! The SFT loop: LoRA on the final assistant turn of HER samples (or on
//! every assistant turn), several samples packed into each row, with
//! accumulation, clipping, a warm-up + cosine schedule, held-out loss, the
//! best checkpoint kept and early stopping, checkpoints that resume
//! exactly, ctrl+c that saves, and the adapter exported for llama.cpp and
//! PEFT at the end.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{Device, Tensor};
use serde::Serialize;

use super::best::BestTracker;
use super::data::{Batch, Batching, LossOn, Sample, Tokenized, split_held_out, tokenize_turns};
use super::error::JobError;
use super::model::{Segments, TrainModel};
use super::optim::Accumulator;
use super::run::{RunDir, memory_mib};
use super::train_loop::trainer::{Trainer, device, lora_spec, settings_sha256, total_steps};
use crate::config::TrainConfig;

/// Where the data came from, for the run's record.
#[derive(Debug, Clone, Serialize)]
pub struct DataSource {
    pub name: String,
    pub sha256: String,
}

pub struct SftJob {
    pub model: PathBuf,
    pub model_fingerprint: String,
    pub settings: TrainConfig,
    pub run: PathBuf,
    /// Continue from the newest checkpoint in the run folder.
    pub resume: bool,
    pub sources: Vec<DataSource>,
}

/// One optimizer step as the progress display sees it.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub kind: &'static str,
    pub step: u64,
    pub total_steps: u64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens: usize,
    pub tokens_per_s: f64,
    pub elapsed_s: f64,
    pub eta_s: f64,
    pub rss_mib: f64,
    pub peak_mib: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub kind: &'static str,
    pub step: u64,
    pub eval_loss: f64,
    pub tokens: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct SftReport {
    pub interrupted: bool,
    pub steps: u64,
    pub losses: Vec<f64>,
    /// (step, held-out loss) of every evaluation, earlier ones of a
    /// resumed run included.
    pub evals: Vec<(u64, f64)>,
    /// The lowest held-out loss after the first step, and its step.
    pub best: Option<(u64, f64)>,
    /// The step whose weights the exported adapter holds: the best one
    /// with `train.load_best_model_at_end`, else the last.
    pub adapter_step: Option<u64>,
    /// The step early stopping ended the run at.
    pub early_stopped: Option<u64>,
    pub train_samples: usize,
    pub eval_samples: usize,
    /// Samples longer than max_seq_len, left out.
    pub too_long: usize,
    pub adapter_gguf: Option<PathBuf>,
    pub peft_dir: Option<PathBuf>,
    pub tokens_per_s: f64,
    pub peak_mib: f64,
}

/// What `run` reports as it goes.
pub enum Progress<'a> {
    Step(&'a StepReport),
    Eval(&'a EvalReport),
}

/// The run's manifest (`run.json`).
#[derive(Serialize)]
struct Manifest<'a> {
    kind: &'static str,
    model: &'a std::path::Path,
    model_fingerprint: &'a str,
    settings: &'a TrainConfig,
    data: &'a [DataSource],
    train_sample_sha256: Vec<String>,
    eval_sample_sha256: Vec<String>,
    too_long: usize,
    total_steps: u64,
}

struct Prepared {
    train: Vec<Tokenized>,
    eval: Vec<Tokenized>,
    train_hashes: Vec<String>,
    eval_hashes: Vec<String>,
    too_long: usize,
}

fn prepare(job: &SftJob, samples: Vec<Sample>) -> Result<Prepared, JobError> {
    let tokenizer = super::tokenizer::from_gguf(&job.model)?;
    let loss_on: LossOn = job.settings.loss_on.parse().map_err(JobError::Setup)?;
    let (train, eval) = split_held_out(samples, job.settings.eval_fraction);
    let max = job.settings.max_seq_len as usize;
    let mut too_long = 0;
    let mut encode = |samples: Vec<Sample>| -> Result<(Vec<Tokenized>, Vec<String>), JobError> {
        let mut kept = Vec::new();
        let mut hashes = Vec::new();
        for s in samples {
            let t = tokenize_turns(&tokenizer, &s, loss_on)?;
            if t.ids.len() > max {
                too_long += 1;
                continue;
            }
            hashes.push(s.sha256());
            kept.push(t);
        }
        Ok((kept, hashes))
    };
    let (train, train_hashes) = encode(train)?;
    let (eval, eval_hashes) = encode(eval)?;
    if train.is_empty() {
        return Err(JobError::Setup(format!(
            "no training samples left ({too_long} longer than train.max_seq_len = {max} tokens)"
        )));
    }
    Ok(Prepared {
        train,
        eval,
        train_hashes,
        eval_hashes,
        too_long,
    })
}

fn tensors(batch: &Batch, device: &Device) -> Result<(Tensor, Tensor), JobError> {
    let ids = Tensor::from_slice(&batch.ids, (batch.rows, batch.cols), device)?;
    let labels = Tensor::from_slice(&batch.labels, (batch.rows, batch.cols), device)?;
    Ok((ids, labels))
}

/// Where the samples of a packed batch's rows start (`None` when every row
/// holds one sample).
pub fn segments(batch: &Batch) -> Result<Option<Segments>, JobError> {
    if !batch.is_packed() {
        return Ok(None);
    }
    Ok(Some(Segments::from_lengths(
        batch.cols,
        &batch.sample_lens,
    )?))
}

/// The held-out samples in micro-batches: packed like the training samples
/// when `train.packing` is on (the loss is the same, the passes fewer).
pub fn held_out_batches(
    samples: &[Tokenized],
    batch_size: usize,
    packing: bool,
    row_len: usize,
) -> Vec<Batch> {
    match Batching::new(samples, packing, row_len) {
        Batching::Padded => samples
            .chunks(batch_size.max(1))
            .map(|chunk| super::data::batch(&chunk.iter().collect::<Vec<_>>(), 0))
            .collect(),
        packed => packed.epoch(samples, batch_size, 0, 0),
    }
}

/// Mean loss over every labelled token of `batches`, without dropout or a
/// graph (nothing is kept for a backward that never comes).
pub fn evaluate(
    model: &TrainModel,
    batches: &[Batch],
    device: &Device,
) -> Result<(f64, usize), JobError> {
    let mut sum = 0.0;
    let mut count = 0;
    for batch in batches {
        let (ids, labels) = tensors(batch, device)?;
        let (s, n) = model.nll_sum_detached(&ids, &labels, segments(batch)?.as_ref())?;
        sum += s;
        count += n;
    }
    Ok((
        if count == 0 {
            f64::NAN
        } else {
            sum / count as f64
        },
        count,
    ))
}

/// The held-out batches, their losses so far and the best of them.
struct HeldOut {
    batches: Vec<Batch>,
    evals: Vec<(u64, f64)>,
    best: BestTracker,
}

impl HeldOut {
    /// Evaluates at `step`; returns whether the loss is the best so far.
    fn evaluate(
        &mut self,
        step: u64,
        trainer: &Trainer,
        on_progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<bool, JobError> {
        if self.batches.is_empty() {
            return Ok(false);
        }
        let (loss, tokens) = evaluate(&trainer.model, &self.batches, &trainer.device)?;
        let report = EvalReport {
            kind: "eval",
            step,
            eval_loss: loss,
            tokens,
        };
        trainer.run.log(&report)?;
        on_progress(Progress::Eval(&report));
        Ok(self.record(step, loss))
    }

    fn record(&mut self, step: u64, loss: f64) -> bool {
        self.evals.push((step, loss));
        self.best.record(step, loss)
    }

    fn last_step(&self) -> Option<u64> {
        self.evals.last().map(|(s, _)| *s)
    }
}

/// Settings a run cannot work with, found before any work.
fn check_settings(s: &TrainConfig) -> Result<(), JobError> {
    s.loss_on.parse::<LossOn>().map_err(JobError::Setup)?;
    if s.early_stopping_patience > 0 && (s.eval_every == 0 || s.eval_fraction <= 0.0) {
        return Err(JobError::Setup(format!(
            "train.early_stopping_patience = {} needs held-out evaluations during the run: \
             set train.eval_every and train.eval_fraction above 0 (or the patience to 0)",
            s.early_stopping_patience
        )));
    }
    Ok(())
}

pub fn run(
    job: &SftJob,
    samples: Vec<Sample>,
    stop: &AtomicBool,
    on_progress: &mut dyn FnMut(Progress<'_>),
) -> Result<SftReport, JobError> {
    let s = &job.settings;
    // Bad settings or an unavailable device fail before any work.
    lora_spec(s)?;
    device(s)?;
    check_settings(s)?;
    let data = prepare(job, samples)?;
    let run = RunDir::create(&job.run)?;

    // 1. Steps: micro-batches per epoch (padded samples or packed rows),
    // optimizer steps in all.
    let batch_size = s.batch_size as usize;
    let accum = s.grad_accum.max(1) as u64;
    let row_len = s.max_seq_len as usize;
    let batching = Batching::new(&data.train, s.packing, row_len);
    let n_batches = batching.batches_per_epoch(data.train.len(), batch_size) as u64;
    let total = total_steps(s, n_batches.div_ceil(accum));
    let settings_sha256 = settings_sha256(&(
        s,
        &job.model_fingerprint,
        &data.train_hashes,
        &data.eval_hashes,
    ));
    run.write_manifest(&Manifest {
        kind: "sft",
        model: &job.model,
        model_fingerprint: &job.model_fingerprint,
        settings: s,
        data: &job.sources,
        train_sample_sha256: data.train_hashes.clone(),
        eval_sample_sha256: data.eval_hashes.clone(),
        too_long: data.too_long,
        total_steps: total,
    })?;

    // 2. The model with fresh LoRA factors (PEFT init), and the optimizer;
    // on --resume, the weights, moments and loss curve of the last checkpoint.
    let mut trainer = Trainer::new(&job.model, s, None, run, total, settings_sha256)?;
    let (start, mut losses) = match job.resume {
        true => trainer.restore()?.unwrap_or((0, Vec::new())),
        false => (0, Vec::new()),
    };

    // 3. Held-out batches, and the evaluations a resumed run already made
    // (its metrics, truncated to the checkpoint): the best and the
    // patience continue from them.
    let mut held_out = HeldOut {
        batches: held_out_batches(&data.eval, batch_size, s.packing, row_len),
        evals: Vec::new(),
        best: BestTracker::new(s.early_stopping_patience, s.early_stopping_threshold),
    };
    if start == 0 {
        held_out.evaluate(0, &trainer, on_progress)?;
    } else if let Some(past) = super::runs::read_run(&job.run) {
        for (step, loss) in past.evals {
            held_out.record(step as u64, loss);
        }
    }

    // 4. The loop.
    let began = Instant::now();
    let mut tokens_seen = 0usize;
    let mut cached_epoch: Option<(u64, Vec<Batch>)> = None;
    let mut interrupted = false;
    // A run stopped right where early stopping ended it does not go on.
    let mut early_stopped = held_out.best.should_stop().then_some(start);
    let mut saved_at = None;
    let mut step = start;
    while step < total && early_stopped.is_none() {
        let mut micro = Vec::with_capacity(accum as usize);
        for k in 0..accum {
            let g = step * accum + k;
            let (epoch, index) = (g / n_batches, (g % n_batches) as usize);
            if cached_epoch.as_ref().is_none_or(|(e, _)| *e != epoch) {
                let batches = batching.epoch(&data.train, batch_size, u64::from(s.seed), epoch);
                cached_epoch = Some((epoch, batches));
            }
            if let Some((_, batches)) = &cached_epoch
                && let Some(b) = batches.get(index)
            {
                micro.push(b.clone());
            }
        }
        let step_tokens: usize = micro.iter().map(|b| b.tokens).sum();
        let mut acc = Accumulator::new(trainer.params.len());
        let mut loss_sum = 0.0;
        for (k, batch) in micro.iter().enumerate() {
            let (ids, labels) = trainer.tensors(batch)?;
            let segments = segments(batch)?;
            let (loss, n) = trainer.model.packed_loss(
                &ids,
                &labels,
                segments.as_ref(),
                true,
                step * accum + k as u64,
            )?;
            // Token-weighted: the step's loss is the mean over all its
            // labelled tokens (TRL's normalisation, with or without packing).
            let weight = n as f64 / step_tokens.max(1) as f64;
            loss_sum += loss.to_scalar::<f32>()? as f64 * weight;
            let grads = trainer.model.backward(&(loss * weight)?)?;
            acc.add(&trainer.params, &grads, 1.0)?;
            tokens_seen += batch.positions;
        }
        let update = trainer.update(&mut acc, step, step + 1, loss_sum)?;
        let (grad_norm, lr) = (update.grad_norm, update.lr);
        step += 1;
        losses.push(loss_sum);

        let elapsed = began.elapsed().as_secs_f64();
        let rate = tokens_seen as f64 / elapsed.max(1e-9);
        let (rss, peak) = memory_mib();
        let report = StepReport {
            kind: "step",
            step,
            total_steps: total,
            loss: loss_sum,
            lr,
            grad_norm,
            tokens: step_tokens,
            tokens_per_s: rate,
            elapsed_s: elapsed,
            eta_s: elapsed / (step - start) as f64 * (total - step) as f64,
            rss_mib: rss,
            peak_mib: peak,
        };
        trainer.run.log(&report)?;
        on_progress(Progress::Step(&report));

        let mut new_best = false;
        if s.eval_every > 0 && step % u64::from(s.eval_every) == 0 && step < total {
            new_best = held_out.evaluate(step, &trainer, on_progress)?;
        }
        // A new best is kept as a checkpoint, which the export reloads.
        let keep_best = new_best && s.load_best_model_at_end;
        let regular = s.checkpoint_every > 0 && step % u64::from(s.checkpoint_every) == 0;
        interrupted = stop.load(Ordering::SeqCst);
        if held_out.best.should_stop() {
            early_stopped = Some(step);
        }
        if interrupted || early_stopped.is_some() || ((regular || keep_best) && step < total) {
            trainer.save_checkpoint(step, &losses)?;
            saved_at = Some(step);
        }
        if interrupted || early_stopped.is_some() {
            break;
        }
    }

    // 5. The end: a last checkpoint, the held-out loss, both adapter formats
    // (from the best checkpoint when asked).
    let mut report = SftReport {
        interrupted,
        steps: step,
        losses: losses.clone(),
        evals: Vec::new(),
        best: None,
        adapter_step: None,
        early_stopped,
        train_samples: data.train.len(),
        eval_samples: data.eval.len(),
        too_long: data.too_long,
        adapter_gguf: None,
        peft_dir: None,
        tokens_per_s: tokens_seen as f64 / began.elapsed().as_secs_f64().max(1e-9),
        peak_mib: memory_mib().1,
    };
    if interrupted {
        report.evals = held_out.evals;
        report.best = held_out.best.best();
        return Ok(report);
    }
    if saved_at != Some(step) {
        trainer.save_checkpoint(step, &losses)?;
    }
    if held_out.last_step() != Some(step) {
        held_out.evaluate(step, &trainer, on_progress)?;
    }
    let best = held_out.best.best();
    let adapter_step = match best {
        Some((at, _)) if s.load_best_model_at_end => at,
        _ => step,
    };
    if adapter_step != step {
        trainer.load_weights(adapter_step)?;
    }
    trainer.run.log(&serde_json::json!({
        "kind": "export", "step": step, "weights_step": adapter_step,
        "best_step": best.map(|b| b.0), "best_eval_loss": best.map(|b| b.1),
        "early_stopped": early_stopped.is_some(),
    }))?;
    let (gguf, peft) = trainer.export(&job.model)?;
    report.evals = held_out.evals;
    report.best = best;
    report.adapter_step = Some(adapter_step);
    report.adapter_gguf = Some(gguf);
    report.peft_dir = Some(peft);
    Ok(report)
}
