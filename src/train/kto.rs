//! KTO (Ethayarajh et al. 2024) for unpaired thumbs, as TRL's `KTOTrainer`
//! computes it: each reply is only "desirable" or "undesirable". With
//! r = log π(y|x) − log π_ref(y|x) and z₀ the reference point, the loss of
//! a desirable reply is w_D·(1 − σ(β(r − z₀))), of an undesirable one
//! w_U·(1 − σ(β(z₀ − r))), averaged over the batch's replies.
//!
//! z₀ estimates KL(π‖π_ref) and is not differentiated through. By default
//! ("mismatched", TRL's and the paper's estimate) it is the mean of
//! log π − log π_ref over the batch's prompts paired with *another*
//! sample's completion — TRL shifts a batch's completions by one — clamped
//! at 0. `kto.reference_point = "batch_mean"` keeps the cheaper estimate
//! this trainer used first: the clamped mean of the batch's own rewards.
//! With `train.grad_accum` > 1 the mismatched estimate is taken over the
//! whole optimizer step, so accumulation equals one larger batch.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::data::{Message, Sample, Tokenized, batch, split_by_hash, step_micro_batches, tokenize};
use super::error::JobError;
use super::optim::Accumulator;
use super::run::RunDir;
use super::stable::sigmoid;
use super::train_loop::trainer::{Trainer, settings_sha256, total_steps};
use crate::config::{KtoConfig, TrainConfig};
use crate::hashing::sha256_hex;

/// TRL's unpaired line, as `her export prefs --format kto` writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KtoSample {
    pub prompt: Vec<Message>,
    pub completion: Vec<Message>,
    pub label: bool,
}

impl KtoSample {
    pub fn sha256(&self) -> String {
        sha256_hex(serde_json::to_string(self).unwrap_or_default().as_bytes())
    }

    fn as_sample(&self) -> Sample {
        let mut messages = self.prompt.clone();
        messages.extend(self.completion.iter().cloned());
        Sample { messages }
    }

    /// Why this sample cannot be trained on, if it cannot.
    pub fn problem(&self) -> Option<String> {
        let Some(last) = self.completion.last() else {
            return Some("the completion is empty (no messages)".into());
        };
        if last.role != "assistant" {
            return Some(format!(
                "the completion's last message is '{}', not 'assistant'",
                last.role
            ));
        }
        if last.content.trim().is_empty() {
            return Some("the completion is empty (its assistant message has no text)".into());
        }
        self.as_sample().problem()
    }
}

/// Reads TRL KTO JSONL; a bad line (or an empty completion) is an error
/// naming the file and line.
pub fn read_kto_jsonl(path: &std::path::Path) -> Result<Vec<KtoSample>, super::data::DataError> {
    super::data::read_jsonl_lines(path, |line| {
        let sample: KtoSample = serde_json::from_str(line)
            .map_err(|e| format!("not a {{prompt, completion, label}} object: {e}"))?;
        match sample.problem() {
            Some(problem) => Err(problem),
            None => Ok(sample),
        }
    })
}

pub struct KtoJob {
    pub model: PathBuf,
    pub model_fingerprint: String,
    pub settings: TrainConfig,
    pub beta: f64,
    /// Class weights and the reference point (`[kto]`).
    pub kto: KtoConfig,
    pub run: PathBuf,
    /// Continue the run in `run` from its newest checkpoint.
    pub resume: bool,
    pub init_adapter: Option<PathBuf>,
}

/// How well the policy's implied rewards sort desirable from undesirable.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KtoMetrics {
    pub loss: f64,
    /// Mean reward of desirable minus mean reward of undesirable replies.
    pub reward_gap: f64,
    /// Share of replies whose reward is on the side of z₀ their label says.
    pub accuracy: f64,
    /// The reference point z₀ (mean over micro-batches for "batch_mean").
    pub kl: f64,
}

/// What KTO's loss needs besides the log-probs.
#[derive(Debug, Clone, Copy)]
struct Objective {
    beta: f64,
    desirable_weight: f64,
    undesirable_weight: f64,
    mismatched: bool,
}

impl Objective {
    fn new(beta: f64, kto: &KtoConfig) -> Self {
        Self {
            beta,
            desirable_weight: kto.desirable_weight,
            undesirable_weight: kto.undesirable_weight,
            mismatched: kto.reference_point != "batch_mean",
        }
    }
}

/// One reply's part of the metrics.
#[derive(Debug, Clone, Copy)]
struct Scored {
    reward: f64,
    /// Its weighted loss.
    loss: f64,
    label: bool,
    z0: f64,
}

/// max(0, x), keeping NaN visible (`f64::max` would turn it into 0).
fn clamp_at_zero(x: f64) -> f64 {
    if x.is_nan() { x } else { x.max(0.0) }
}

/// Σ over the rows of w·(1 − σ(s·β(r − z₀))) / `denominator` (s = +1 for
/// desirable, −1 for undesirable; z₀ a constant), and each row's scores.
fn kto_loss(
    o: &Objective,
    r: &Tensor,
    labels: &[bool],
    z0: f64,
    denominator: usize,
) -> Result<(Tensor, Vec<Scored>), JobError> {
    let values = r.to_vec1::<f32>()?;
    let signs: Vec<f32> = labels.iter().map(|l| if *l { 1.0 } else { -1.0 }).collect();
    let weights: Vec<f32> = labels
        .iter()
        .map(|l| {
            (if *l {
                o.desirable_weight
            } else {
                o.undesirable_weight
            }) as f32
        })
        .collect();
    let signs = Tensor::from_slice(&signs, signs.len(), r.device())?;
    let weights = Tensor::from_slice(&weights, weights.len(), r.device())?;
    // 1 − σ(x) = σ(−x), written so no β·margin overflows, in value or gradient.
    let x = ((r - z0)? * o.beta)?.mul(&signs)?;
    let per_row = sigmoid(&x.neg()?)?.mul(&weights)?;
    let loss = (per_row.sum_all()? / denominator.max(1) as f64)?;
    let losses = per_row.to_vec1::<f32>()?;
    let scored = values
        .iter()
        .zip(labels)
        .zip(losses)
        .map(|((v, label), loss)| Scored {
            reward: f64::from(*v),
            loss: f64::from(loss),
            label: *label,
            z0,
        })
        .collect();
    Ok((loss, scored))
}

impl KtoMetrics {
    fn of(rows: &[Scored]) -> KtoMetrics {
        let n = rows.len().max(1) as f64;
        let mean_of = |want: bool| {
            let picked: Vec<f64> = rows
                .iter()
                .filter(|s| s.label == want)
                .map(|s| s.reward)
                .collect();
            picked.iter().sum::<f64>() / picked.len().max(1) as f64
        };
        let right = rows.iter().filter(|s| (s.reward > s.z0) == s.label).count();
        KtoMetrics {
            loss: rows.iter().map(|s| s.loss).sum::<f64>() / n,
            reward_gap: mean_of(true) - mean_of(false),
            accuracy: right as f64 / n,
            kl: rows.iter().map(|s| s.z0).sum::<f64>() / n,
        }
    }
}

/// TRL's KL pairs (`_get_kl_dataset`): row i's prompt with row i − 1's
/// completion (row 0 with the last row's), the completion cut to fit
/// `max_len` tokens.
fn mismatched(rows: &[&Tokenized], max_len: usize) -> Vec<Tokenized> {
    let n = rows.len();
    (0..n)
        .map(|i| {
            let (prompt, other) = (rows[i], rows[(i + n - 1) % n]);
            let mut ids = prompt.ids[..prompt.completion_start].to_vec();
            let room = max_len.saturating_sub(ids.len()).max(1);
            ids.extend(other.ids[other.completion_start..].iter().take(room));
            Tokenized {
                ids,
                completion_start: prompt.completion_start,
                earlier_turns: Vec::new(),
            }
        })
        .collect()
}

fn logps(trainer: &Trainer, rows: &[&Tokenized]) -> Result<Tensor, JobError> {
    let b = batch(rows, 0);
    let (ids, labels) = trainer.tensors(&b)?;
    Ok(trainer.model.sequence_logprobs(&ids, &labels)?)
}

/// Summed log-probs of `rows` in chunks, kept as values (no graph).
fn logp_values(trainer: &Trainer, rows: &[Tokenized], chunk: usize) -> Result<Vec<f32>, JobError> {
    let mut out = Vec::with_capacity(rows.len());
    for group in rows.chunks(chunk.max(1)) {
        let refs: Vec<&Tokenized> = group.iter().collect();
        out.extend(logps(trainer, &refs)?.detach().to_vec1::<f32>()?);
    }
    Ok(out)
}

/// The mismatched estimate of z₀: mean of log π − log π_ref over the KL
/// rows (π_ref's values given when known), clamped at 0.
fn mismatched_z0(
    trainer: &Trainer,
    reference: &[Tensor],
    kl_rows: &[Tokenized],
    kl_refs: Option<&[f32]>,
    chunk: usize,
) -> Result<f64, JobError> {
    let policy = logp_values(trainer, kl_rows, chunk)?;
    let refs = match kl_refs {
        Some(r) => r.to_vec(),
        None => trainer.with_lora(reference, |t| logp_values(t, kl_rows, chunk))?,
    };
    let n = policy.len().max(1) as f64;
    let mean = policy
        .iter()
        .zip(&refs)
        .map(|(p, r)| f64::from(*p) - f64::from(*r))
        .sum::<f64>()
        / n;
    Ok(clamp_at_zero(mean))
}

/// The training rows and what the steps need of them.
struct TrainSet<'a> {
    rows: &'a [Tokenized],
    labels: &'a [bool],
    /// log π_ref of each row.
    refs: &'a [f32],
    /// The starting LoRA values (π_ref) for the mismatched pairs' pass.
    reference: &'a [Tensor],
    max_len: usize,
}

/// One optimizer step's gradients over its micro-batches (row indices),
/// each micro-batch's loss divided by the step's rows — the same as one
/// batch of all of them — and the step's metrics. A micro-batch whose loss
/// is not finite ends the work (the step will be skipped).
fn step_gradients(
    trainer: &Trainer,
    o: &Objective,
    set: &TrainSet<'_>,
    micro: &[Vec<usize>],
) -> Result<(Accumulator, KtoMetrics), JobError> {
    let all: Vec<usize> = micro.concat();
    let chunk = micro.iter().map(Vec::len).max().unwrap_or(1);
    let step_z0 = if o.mismatched {
        let rows: Vec<&Tokenized> = all.iter().map(|&i| &set.rows[i]).collect();
        let kl_rows = mismatched(&rows, set.max_len);
        Some(mismatched_z0(
            trainer,
            set.reference,
            &kl_rows,
            None,
            chunk,
        )?)
    } else {
        None
    };
    let mut acc = Accumulator::new(trainer.params.len());
    let mut scored = Vec::with_capacity(all.len());
    for ids in micro.iter().filter(|ids| !ids.is_empty()) {
        let rows: Vec<&Tokenized> = ids.iter().map(|&i| &set.rows[i]).collect();
        let labels: Vec<bool> = ids.iter().map(|&i| set.labels[i]).collect();
        let refs: Vec<f32> = ids.iter().map(|&i| set.refs[i]).collect();
        let refs = Tensor::from_slice(&refs, refs.len(), &trainer.device)?;
        let r = (logps(trainer, &rows)? - refs)?;
        let z0 = match step_z0 {
            Some(z0) => z0,
            None => {
                let v = r.to_vec1::<f32>()?;
                clamp_at_zero(v.iter().map(|x| f64::from(*x)).sum::<f64>() / v.len() as f64)
            }
        };
        let (loss, part) = kto_loss(o, &r, &labels, z0, all.len())?;
        scored.extend(part);
        let value = f64::from(loss.to_scalar::<f32>()?);
        if !value.is_finite() {
            break;
        }
        // Through the model: with activation checkpointing the LoRA
        // gradients come back through its side channel.
        let grads = trainer.model.backward(&loss)?;
        acc.add(&trainer.params, &grads, 1.0)?;
    }
    let mut metrics = KtoMetrics::of(&scored);
    if scored.len() < all.len() {
        metrics.loss = f64::NAN;
    }
    Ok((acc, metrics))
}

/// The held-out rows, their reference log-probs and their KL pairs'.
struct EvalSet {
    rows: Vec<Tokenized>,
    labels: Vec<bool>,
    refs: Vec<f32>,
    kl_rows: Vec<Tokenized>,
    kl_refs: Vec<f32>,
}

/// Metrics over all held-out rows at once (z₀ from all of them).
fn evaluate(
    trainer: &Trainer,
    o: &Objective,
    set: &EvalSet,
    chunk: usize,
) -> Result<Option<KtoMetrics>, JobError> {
    if set.rows.is_empty() {
        return Ok(None);
    }
    let policy = logp_values(trainer, &set.rows, chunk)?;
    let r: Vec<f32> = policy.iter().zip(&set.refs).map(|(p, q)| p - q).collect();
    let z0 = if o.mismatched {
        mismatched_z0(trainer, &[], &set.kl_rows, Some(&set.kl_refs), chunk)?
    } else {
        clamp_at_zero(r.iter().map(|x| f64::from(*x)).sum::<f64>() / r.len() as f64)
    };
    let r = Tensor::from_slice(&r, r.len(), &trainer.device)?;
    let (_, scored) = kto_loss(o, &r, &set.labels, z0, set.rows.len())?;
    Ok(Some(KtoMetrics::of(&scored)))
}

#[derive(Debug, Clone, Serialize)]
pub struct KtoReport {
    pub interrupted: bool,
    pub steps: u64,
    pub eval_before: Option<KtoMetrics>,
    pub eval_after: Option<KtoMetrics>,
    pub adapter_gguf: Option<PathBuf>,
}

pub fn run(
    job: &KtoJob,
    samples: Vec<KtoSample>,
    stop: &AtomicBool,
    on_step: &mut dyn FnMut(u64, u64, &KtoMetrics),
) -> Result<KtoReport, JobError> {
    let s = &job.settings;
    if let Some((i, problem)) = samples
        .iter()
        .enumerate()
        .find_map(|(i, k)| k.problem().map(|p| (i, p)))
    {
        return Err(JobError::Setup(format!("KTO sample {}: {problem}", i + 1)));
    }
    let objective = Objective::new(job.beta, &job.kto);
    let tokenizer = super::tokenizer::from_gguf(&job.model)?;
    let (train, eval) = split_by_hash(samples, s.eval_fraction, KtoSample::sha256);
    let max_len = s.max_seq_len as usize;
    let encode = |items: &[KtoSample]| -> Result<(Vec<Tokenized>, Vec<bool>), JobError> {
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for k in items {
            let t = tokenize(&tokenizer, &k.as_sample())?;
            if t.ids.len() <= max_len {
                rows.push(t);
                labels.push(k.label);
            }
        }
        Ok((rows, labels))
    };
    let (train_rows, train_labels) = encode(&train)?;
    let (eval_rows, eval_labels) = encode(&eval)?;
    if train_rows.is_empty() {
        return Err(JobError::Setup("no labelled replies to train on".into()));
    }
    // KTO needs two replies per batch at least: with one, the mismatched
    // pair is the reply itself and z₀ its own reward.
    let batch_size = s.batch_size.max(2) as usize;
    let accum = u64::from(s.grad_accum.max(1));
    let n_batches = train_rows.len().div_ceil(batch_size) as u64;
    let total = total_steps(s, n_batches.div_ceil(accum));
    let hashes: Vec<String> = train.iter().chain(&eval).map(KtoSample::sha256).collect();
    let settings_sha256 = settings_sha256(&(
        s,
        job.beta,
        &job.kto,
        &job.model_fingerprint,
        &hashes,
        &job.init_adapter,
    ));
    let run = RunDir::create(&job.run)?;
    run.write_manifest(&serde_json::json!({
        "kind": "kto", "model": job.model, "model_fingerprint": job.model_fingerprint,
        "init_adapter": job.init_adapter, "beta": job.beta, "kto": job.kto, "settings": s,
        "sample_sha256": hashes, "total_steps": total,
    }))?;
    let mut trainer = Trainer::new(
        &job.model,
        s,
        job.init_adapter.as_deref(),
        run,
        total,
        settings_sha256,
    )?;
    // The reference: the starting point, its log-probs once, and its LoRA
    // values kept for the mismatched pairs of each step.
    let reference = trainer.snapshot()?;
    let train_refs = logp_values(&trainer, &train_rows, batch_size)?;
    let eval_kl_rows = mismatched(&eval_rows.iter().collect::<Vec<_>>(), max_len);
    let eval = EvalSet {
        refs: logp_values(&trainer, &eval_rows, batch_size)?,
        kl_refs: match objective.mismatched {
            true => logp_values(&trainer, &eval_kl_rows, batch_size)?,
            false => Vec::new(),
        },
        kl_rows: eval_kl_rows,
        rows: eval_rows,
        labels: eval_labels,
    };
    let eval_before = evaluate(&trainer, &objective, &eval, batch_size)?;

    let (mut step, mut losses) = (0, Vec::new());
    if job.resume
        && let Some((at, curve)) = trainer.restore()?
    {
        (step, losses) = (at, curve);
    }
    let set = TrainSet {
        rows: &train_rows,
        labels: &train_labels,
        refs: &train_refs,
        reference: &reference,
        max_len,
    };
    let mut interrupted = false;
    while step < total {
        let micro =
            step_micro_batches(train_rows.len(), batch_size, u64::from(s.seed), step, accum);
        let (mut acc, metrics) = step_gradients(&trainer, &objective, &set, &micro)?;
        let update = trainer.update(&mut acc, step, step + 1, metrics.loss)?;
        step += 1;
        losses.push(metrics.loss);
        trainer.run.log(&serde_json::json!({
            "kind": "step", "step": step, "total_steps": total, "loss": metrics.loss,
            "reward_gap": metrics.reward_gap, "accuracy": metrics.accuracy, "kl": metrics.kl,
            "lr": update.lr, "grad_norm": update.grad_norm,
        }))?;
        on_step(step, total, &metrics);
        if stop.load(Ordering::SeqCst) {
            trainer.save_checkpoint(step, &losses)?;
            interrupted = true;
            break;
        }
        if s.checkpoint_every > 0 && step % u64::from(s.checkpoint_every) == 0 && step < total {
            trainer.save_checkpoint(step, &losses)?;
        }
    }
    let mut report = KtoReport {
        interrupted,
        steps: step,
        eval_before,
        eval_after: None,
        adapter_gguf: None,
    };
    if !interrupted {
        trainer.save_checkpoint(step, &losses)?;
        report.eval_after = evaluate(&trainer, &objective, &eval, batch_size)?;
        report.adapter_gguf = Some(trainer.export(&job.model)?.0);
    }
    Ok(report)
}

#[cfg(test)]
#[path = "kto_tests.rs"]
mod tests;
