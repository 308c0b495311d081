//! The SFT loop: LoRA on the final assistant turn of HER samples, with
//! accumulation, clipping, a warm-up + cosine schedule, held-out loss,
//! checkpoints that resume exactly, ctrl+c that saves, and the adapter
//! exported for llama.cpp and PEFT at the end.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use serde::Serialize;

use super::data::{Batch, Sample, Tokenized, epoch_batches, split_held_out, tokenize};
use super::error::TrainError;
use super::lora::{LoraParam, LoraSpec, Target};
use super::model::TrainModel;
use super::optim::Accumulator;
use super::run::{RunDir, memory_mib};
use super::trainer::{Trainer, settings_sha256, total_steps};
use crate::config::TrainConfig;

#[derive(Debug, thiserror::Error)]
pub enum SftError {
    #[error(transparent)]
    Model(#[from] TrainError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Data(#[from] super::data::DataError),
    #[error(transparent)]
    Tokenizer(#[from] super::tokenizer::TokenizerError),
    #[error(transparent)]
    Checkpoint(#[from] super::checkpoint::CheckpointError),
    #[error(transparent)]
    Run(#[from] super::run::RunError),
    #[error(transparent)]
    Peft(#[from] super::peft::PeftError),
    #[error(transparent)]
    Diverged(#[from] super::guard::Diverged),
    #[error(transparent)]
    NonFiniteWrite(#[from] super::guard::NonFiniteWrite),
    #[error("{0}")]
    Setup(String),
}

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
    pub evals: Vec<(u64, f64)>,
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

pub fn lora_spec(settings: &TrainConfig) -> Result<LoraSpec, SftError> {
    let targets = settings
        .targets
        .iter()
        .map(|t| t.parse::<Target>())
        .collect::<Result<Vec<_>, _>>()?;
    let spec = LoraSpec {
        rank: settings.rank as usize,
        alpha: settings.alpha,
        dropout: settings.dropout,
        targets,
    };
    spec.validate()?;
    Ok(spec)
}

pub fn device(settings: &TrainConfig) -> Result<Device, SftError> {
    match settings.device.as_str() {
        "cpu" => Ok(Device::Cpu),
        #[cfg(feature = "cuda")]
        "cuda" => Ok(Device::new_cuda(0)?),
        other => Err(SftError::Setup(format!(
            "train.device '{other}' is not available in this build (cpu{})",
            if cfg!(feature = "cuda") {
                ", cuda"
            } else {
                "; build with --features cuda for cuda"
            }
        ))),
    }
}

/// Names of the trainable tensors, as in the adapter GGUF.
pub fn named_params(params: &[LoraParam]) -> Vec<(String, Var)> {
    let mut out = Vec::with_capacity(params.len() * 2);
    for p in params {
        let base = format!("blk.{}.{}.weight", p.layer, p.target.gguf_name());
        out.push((format!("{base}.lora_a"), p.a.clone()));
        out.push((format!("{base}.lora_b"), p.b.clone()));
    }
    out
}

struct Prepared {
    train: Vec<Tokenized>,
    eval: Vec<Tokenized>,
    train_hashes: Vec<String>,
    eval_hashes: Vec<String>,
    too_long: usize,
}

fn prepare(job: &SftJob, samples: Vec<Sample>) -> Result<Prepared, SftError> {
    let tokenizer = super::tokenizer::from_gguf(&job.model)?;
    let (train, eval) = split_held_out(samples, job.settings.eval_fraction);
    let max = job.settings.max_seq_len as usize;
    let mut too_long = 0;
    let mut encode = |samples: Vec<Sample>| -> Result<(Vec<Tokenized>, Vec<String>), SftError> {
        let mut kept = Vec::new();
        let mut hashes = Vec::new();
        for s in samples {
            let t = tokenize(&tokenizer, &s)?;
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
        return Err(SftError::Setup(format!(
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

fn tensors(batch: &Batch, device: &Device) -> Result<(Tensor, Tensor), SftError> {
    let ids = Tensor::from_slice(&batch.ids, (batch.rows, batch.cols), device)?;
    let labels = Tensor::from_slice(&batch.labels, (batch.rows, batch.cols), device)?;
    Ok((ids, labels))
}

/// Mean loss over every labelled token of `samples` (no dropout).
pub fn evaluate(
    model: &TrainModel,
    samples: &[Tokenized],
    batch_size: usize,
    device: &Device,
) -> Result<(f64, usize), SftError> {
    let mut sum = 0.0;
    let mut count = 0;
    for chunk in samples.chunks(batch_size.max(1)) {
        let batch = super::data::batch(&chunk.iter().collect::<Vec<_>>(), 0);
        let (ids, labels) = tensors(&batch, device)?;
        let (loss, n) = model.loss(&ids, &labels, false, 0)?;
        sum += loss.to_scalar::<f32>()? as f64 * n as f64;
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

/// The held-out samples and where their losses go.
struct HeldOut<'a> {
    samples: &'a [Tokenized],
    batch_size: usize,
}

impl HeldOut<'_> {
    fn evaluate(
        &self,
        step: u64,
        trainer: &Trainer,
        evals: &mut Vec<(u64, f64)>,
        on_progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<(), SftError> {
        if self.samples.is_empty() {
            return Ok(());
        }
        let (loss, tokens) = evaluate(
            &trainer.model,
            self.samples,
            self.batch_size,
            &trainer.device,
        )?;
        let report = EvalReport {
            kind: "eval",
            step,
            eval_loss: loss,
            tokens,
        };
        trainer.run.log(&report)?;
        on_progress(Progress::Eval(&report));
        evals.push((step, loss));
        Ok(())
    }
}

pub fn run(
    job: &SftJob,
    samples: Vec<Sample>,
    stop: &AtomicBool,
    on_progress: &mut dyn FnMut(Progress<'_>),
) -> Result<SftReport, SftError> {
    let s = &job.settings;
    // Bad LoRA settings or an unavailable device fail before any work.
    lora_spec(s)?;
    device(s)?;
    let data = prepare(job, samples)?;
    let run = RunDir::create(&job.run)?;

    // 1. Steps: micro-batches per epoch, optimizer steps in all.
    let batch_size = s.batch_size as usize;
    let accum = s.grad_accum.max(1) as u64;
    let n_batches = data.train.len().div_ceil(batch_size) as u64;
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

    let mut evals = Vec::new();
    let held_out = HeldOut {
        samples: &data.eval,
        batch_size,
    };
    if start == 0 {
        held_out.evaluate(0, &trainer, &mut evals, on_progress)?;
    }

    // 4. The loop.
    let began = Instant::now();
    let mut tokens_seen = 0usize;
    let mut cached_epoch: Option<(u64, Vec<Batch>)> = None;
    let mut interrupted = false;
    let mut step = start;
    while step < total {
        let mut micro = Vec::with_capacity(accum as usize);
        for k in 0..accum {
            let g = step * accum + k;
            let (epoch, index) = (g / n_batches, (g % n_batches) as usize);
            if cached_epoch.as_ref().is_none_or(|(e, _)| *e != epoch) {
                let batches = epoch_batches(&data.train, batch_size, 0, u64::from(s.seed), epoch);
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
            let (loss, n) = trainer
                .model
                .loss(&ids, &labels, true, step * accum + k as u64)?;
            // Token-weighted: the step's loss is the mean over all its tokens.
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

        if s.eval_every > 0 && step % u64::from(s.eval_every) == 0 && step < total {
            held_out.evaluate(step, &trainer, &mut evals, on_progress)?;
        }
        if stop.load(Ordering::SeqCst) {
            trainer.save_checkpoint(step, &losses)?;
            interrupted = true;
            break;
        }
        if s.checkpoint_every > 0 && step % u64::from(s.checkpoint_every) == 0 && step < total {
            trainer.save_checkpoint(step, &losses)?;
        }
    }

    // 5. The end: a last checkpoint, the held-out loss, both adapter formats.
    let mut report = SftReport {
        interrupted,
        steps: step,
        losses: losses.clone(),
        evals: Vec::new(),
        train_samples: data.train.len(),
        eval_samples: data.eval.len(),
        too_long: data.too_long,
        adapter_gguf: None,
        peft_dir: None,
        tokens_per_s: tokens_seen as f64 / began.elapsed().as_secs_f64().max(1e-9),
        peak_mib: memory_mib().1,
    };
    if interrupted {
        report.evals = evals;
        return Ok(report);
    }
    trainer.save_checkpoint(step, &losses)?;
    held_out.evaluate(step, &trainer, &mut evals, on_progress)?;
    report.evals = evals;
    let (gguf, peft) = trainer.export(&job.model)?;
    report.adapter_gguf = Some(gguf);
    report.peft_dir = Some(peft);
    Ok(report)
}
