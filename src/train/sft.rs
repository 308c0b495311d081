//! The SFT loop: LoRA on the final assistant turn of HER samples, with
//! accumulation, clipping, a warm-up + cosine schedule, held-out loss,
//! checkpoints that resume exactly, ctrl+c that saves, and the adapter
//! exported for llama.cpp and PEFT at the end.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use serde::Serialize;

use super::checkpoint::{self, LoopState};
use super::data::{Batch, Sample, Tokenized, epoch_batches, split_held_out, tokenize};
use super::error::TrainError;
use super::lora::{LoraParam, LoraSpec, Target, write_lora_gguf};
use super::model::{BaseMode, TrainModel};
use super::optim::{Accumulator, AdamW, AdamWConfig, Schedule};
use super::peft::{PeftConfig, PeftTensor};
use super::run::{RunDir, memory_mib};
use crate::config::TrainConfig;
use crate::hashing::sha256_hex;

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
    run: &'a RunDir,
    samples: &'a [Tokenized],
    batch_size: usize,
    device: &'a Device,
}

impl HeldOut<'_> {
    fn evaluate(
        &self,
        step: u64,
        model: &TrainModel,
        evals: &mut Vec<(u64, f64)>,
        on_progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<(), SftError> {
        if self.samples.is_empty() {
            return Ok(());
        }
        let (loss, tokens) = evaluate(model, self.samples, self.batch_size, self.device)?;
        let report = EvalReport {
            kind: "eval",
            step,
            eval_loss: loss,
            tokens,
        };
        self.run.log(&report)?;
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
    let spec = lora_spec(s)?;
    let device = device(s)?;
    let data = prepare(job, samples)?;
    let run = RunDir::create(&job.run)?;

    // 1. Steps: micro-batches per epoch, optimizer steps in all.
    let batch_size = s.batch_size as usize;
    let accum = s.grad_accum.max(1) as u64;
    let n_batches = data.train.len().div_ceil(batch_size) as u64;
    let total = if s.max_steps > 0 {
        u64::from(s.max_steps)
    } else {
        u64::from(s.epochs) * n_batches.div_ceil(accum)
    };
    let settings_sha256 = sha256_hex(
        serde_json::to_string(&(
            s,
            &job.model_fingerprint,
            &data.train_hashes,
            &data.eval_hashes,
        ))
        .unwrap_or_default()
        .as_bytes(),
    );
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

    // 2. The model with fresh LoRA factors (PEFT init), and the optimizer.
    let mode = if s.base == "dequantized" {
        BaseMode::Dequantized
    } else {
        BaseMode::Quantized
    };
    let mut model = TrainModel::load(&job.model, mode, &device)?;
    model.attach_lora(&spec, u64::from(s.seed))?;
    model.set_activation_checkpointing(s.activation_checkpointing);
    let lora = model.lora_params();
    let params = named_params(&lora);
    let mut optimizer = AdamW::new(
        params.clone(),
        AdamWConfig {
            lr: s.learning_rate,
            weight_decay: s.weight_decay,
            ..AdamWConfig::default()
        },
    )?;
    let schedule = Schedule {
        peak: s.learning_rate,
        warmup_steps: u64::from(s.warmup_steps),
        total_steps: total,
        floor: s.lr_floor,
    };

    // 3. Resume: weights, moments and the loss curve so far.
    let mut losses: Vec<f64> = Vec::new();
    let mut start = 0;
    if job.resume
        && let Some(dir) = checkpoint::latest(&run.checkpoints())
    {
        let loaded = checkpoint::load(&dir, &device)?;
        if loaded.state.settings_sha256 != settings_sha256 {
            return Err(SftError::Setup(format!(
                "'{}' was made with other settings, model or data; start a new run (or restore them)",
                dir.display()
            )));
        }
        for (name, var) in &params {
            let t = loaded.lora.get(name).ok_or_else(|| {
                SftError::Setup(format!("'{}' has no tensor '{name}'", dir.display()))
            })?;
            var.set(t)?;
        }
        optimizer.load_state(&loaded.optimizer, loaded.state.step)?;
        start = loaded.state.step;
        losses = loaded.state.losses;
        run.truncate_metrics(start)?;
    }
    let save_checkpoint = |step: u64, losses: &[f64], optimizer: &AdamW| {
        let weights: HashMap<String, Tensor> = params
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        let state = LoopState {
            step,
            losses: losses.to_vec(),
            settings_sha256: settings_sha256.clone(),
        };
        checkpoint::save(&run.checkpoints(), &weights, &optimizer.state(), &state)
    };

    let mut evals = Vec::new();
    let held_out = HeldOut {
        run: &run,
        samples: &data.eval,
        batch_size,
        device: &device,
    };
    if start == 0 {
        held_out.evaluate(0, &model, &mut evals, on_progress)?;
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
        let mut acc = Accumulator::new(params.len());
        let mut loss_sum = 0.0;
        for (k, batch) in micro.iter().enumerate() {
            let (ids, labels) = tensors(batch, &device)?;
            let (loss, n) = model.loss(&ids, &labels, true, step * accum + k as u64)?;
            // Token-weighted: the step's loss is the mean over all its tokens.
            let weight = n as f64 / step_tokens.max(1) as f64;
            loss_sum += loss.to_scalar::<f32>()? as f64 * weight;
            let grads = model.backward(&(loss * weight)?)?;
            acc.add(&params, &grads, 1.0)?;
            tokens_seen += batch.positions;
        }
        let grad_norm = acc.clip(s.max_grad_norm)?;
        let lr = schedule.lr(step);
        optimizer.step(&acc, lr)?;
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
        run.log(&report)?;
        on_progress(Progress::Step(&report));

        if s.eval_every > 0 && step % u64::from(s.eval_every) == 0 && step < total {
            held_out.evaluate(step, &model, &mut evals, on_progress)?;
        }
        if stop.load(Ordering::SeqCst) {
            save_checkpoint(step, &losses, &optimizer)?;
            interrupted = true;
            break;
        }
        if s.checkpoint_every > 0 && step % u64::from(s.checkpoint_every) == 0 && step < total {
            save_checkpoint(step, &losses, &optimizer)?;
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
    save_checkpoint(step, &losses, &optimizer)?;
    held_out.evaluate(step, &model, &mut evals, on_progress)?;
    report.evals = evals;
    let arch = model.shape.arch.as_str();
    write_lora_gguf(&run.adapter_gguf(), arch, &spec, &lora)?;
    let peft_tensors: Vec<PeftTensor> = lora
        .iter()
        .map(|p| PeftTensor {
            layer: p.layer,
            module: p.target.peft_name().to_string(),
            a: p.a.as_tensor().clone(),
            b: p.b.as_tensor().clone(),
        })
        .collect();
    let modules: Vec<String> = spec
        .targets
        .iter()
        .map(|t| t.peft_name().to_string())
        .collect();
    let config = PeftConfig::new(
        &job.model.display().to_string(),
        spec.rank,
        spec.alpha,
        spec.dropout,
        &modules,
    );
    super::peft::write(&run.peft_dir(), &config, &peft_tensors)?;
    report.adapter_gguf = Some(run.adapter_gguf());
    report.peft_dir = Some(run.peft_dir());
    Ok(report)
}
