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
use std::sync::atomic::AtomicBool;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use tokenizers::Tokenizer;

use crate::data::{Message, Sample, Tokenized, batch, step_micro_batches, tokenize};
use crate::error::JobError;
use crate::settings::{KtoConfig, TrainConfig};
use crate::stable::sigmoid;
use crate::train_loop::trainer::{Trainer, settings_sha256, total_steps};
use crate::train_loop::{
    DataSummary, Job, Micro, MicroLoss, Objective, ReportOf, RunSpec, StepData, StepOutcome,
};
use her_core::hashing::sha256_hex;

mod objective;

pub use objective::KtoObjective;

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
pub fn read_kto_jsonl(path: &std::path::Path) -> Result<Vec<KtoSample>, crate::data::DataError> {
    crate::data::read_jsonl_lines(path, |line| {
        let sample: KtoSample = serde_json::from_str(line)
            .map_err(|e| format!("not a {{prompt, completion, label}} object: {e}"))?;
        match sample.problem() {
            Some(problem) => Err(problem),
            None => Ok(sample),
        }
    })
}

/// A KTO run (its `init_adapter` is also the reference), its β and `[kto]`.
pub struct KtoJob {
    pub spec: RunSpec,
    pub beta: f64,
    /// Class weights and the reference point (`[kto]`).
    pub kto: KtoConfig,
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
#[derive(Debug, Clone, Copy, Default)]
struct KtoLoss {
    beta: f64,
    desirable_weight: f64,
    undesirable_weight: f64,
    mismatched: bool,
}

impl KtoLoss {
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
    o: &KtoLoss,
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

/// The held-out rows, their reference log-probs and their KL pairs'.
#[derive(Default)]
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
    o: &KtoLoss,
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

/// KTO's own fields of a step or eval line (the loss is the line's).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KtoScores {
    pub reward_gap: f64,
    pub accuracy: f64,
    pub kl: f64,
}

impl KtoMetrics {
    fn scores(&self) -> KtoScores {
        KtoScores {
            reward_gap: self.reward_gap,
            accuracy: self.accuracy,
            kl: self.kl,
        }
    }
}

impl KtoScores {
    fn with_loss(self, loss: f64) -> KtoMetrics {
        KtoMetrics {
            loss,
            reward_gap: self.reward_gap,
            accuracy: self.accuracy,
            kl: self.kl,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct KtoReport {
    pub interrupted: bool,
    pub steps: u64,
    pub eval_before: Option<KtoMetrics>,
    pub eval_after: Option<KtoMetrics>,
    pub adapter_gguf: Option<PathBuf>,
}

impl Job for KtoJob {
    type Objective<'j> = KtoObjective;
    type Report = KtoReport;

    fn spec(&self) -> &RunSpec {
        &self.spec
    }

    fn objective(&self) -> Result<KtoObjective, JobError> {
        Ok(KtoObjective::new(self.beta, &self.kto))
    }

    fn report(_: KtoObjective, r: ReportOf<KtoObjective>) -> KtoReport {
        let with_loss = |e: Option<(f64, KtoScores)>| e.map(|(loss, m)| m.with_loss(loss));
        KtoReport {
            interrupted: r.interrupted,
            steps: r.steps,
            eval_before: with_loss(r.before),
            eval_after: with_loss(r.after),
            adapter_gguf: r.adapter_gguf,
        }
    }
}

#[cfg(test)]
mod tests;
