//! KTO (Ethayarajh et al. 2024) for unpaired thumbs: each reply is only
//! "desirable" or "undesirable". With r = log π(y|x) − log π_ref(y|x) and
//! z₀ a detached, non-negative estimate of the policy's drift (here the
//! batch mean of r), the loss is 1 − σ(β(r − z₀)) for desirable replies and
//! 1 − σ(β(z₀ − r)) for undesirable ones.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::data::{Message, Sample, Tokenized, batch, split_by_hash, step_indices, tokenize};
use super::optim::Accumulator;
use super::run::RunDir;
use super::sft::SftError;
use super::trainer::{Trainer, settings_sha256, total_steps};
use crate::config::TrainConfig;
use crate::fsutil::read::{self, Kind};
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
}

/// Reads TRL KTO JSONL; a bad line is an error naming the file and line.
pub fn read_kto_jsonl(path: &std::path::Path) -> Result<Vec<KtoSample>, super::data::DataError> {
    let mut out = Vec::new();
    for line in read::lines(path, Kind::Dataset)? {
        let line = line?;
        if line.is_blank() {
            continue;
        }
        let bad = |reason: String| super::data::DataError::Line {
            path: path.to_path_buf(),
            line: line.number,
            reason,
        };
        let sample: KtoSample = serde_json::from_str(line.text().map_err(bad)?)
            .map_err(|e| bad(format!("not a {{prompt, completion, label}} object: {e}")))?;
        out.push(sample);
    }
    Ok(out)
}

pub struct KtoJob {
    pub model: PathBuf,
    pub model_fingerprint: String,
    pub settings: TrainConfig,
    pub beta: f64,
    pub run: PathBuf,
    /// Continue the run in `run` from its newest checkpoint.
    pub resume: bool,
    pub init_adapter: Option<PathBuf>,
}

/// How well the policy's implied rewards sort desirable from undesirable.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct KtoMetrics {
    pub loss: f64,
    /// Mean reward of desirable minus mean reward of undesirable replies.
    pub reward_gap: f64,
    /// Share of replies whose reward is on the side of z₀ their label says.
    pub accuracy: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct KtoReport {
    pub interrupted: bool,
    pub steps: u64,
    pub eval_before: Option<KtoMetrics>,
    pub eval_after: Option<KtoMetrics>,
    pub adapter_gguf: Option<PathBuf>,
}

/// The KTO loss for rewards `r` (policy minus reference) and labels.
fn kto_loss(beta: f64, r: &Tensor, labels: &[bool]) -> Result<(Tensor, KtoMetrics), SftError> {
    let values = r.to_vec1::<f32>()?;
    let z0 =
        (values.iter().map(|v| f64::from(*v)).sum::<f64>() / values.len().max(1) as f64).max(0.0);
    let signs: Vec<f32> = labels.iter().map(|l| if *l { 1.0 } else { -1.0 }).collect();
    let signs = Tensor::from_slice(&signs, signs.len(), r.device())?;
    // 1 − σ(s·β(r − z₀)) = σ(−s·β(r − z₀)) = 1 / (1 + e^(s·β(r − z₀))).
    let x = ((r - z0)? * beta)?.mul(&signs)?;
    let loss = (x.exp()? + 1.0)?.recip()?.mean_all()?;
    let mean_of = |want: bool| {
        let picked: Vec<f64> = values
            .iter()
            .zip(labels)
            .filter(|(_, l)| **l == want)
            .map(|(v, _)| f64::from(*v))
            .collect();
        picked.iter().sum::<f64>() / picked.len().max(1) as f64
    };
    let right = values
        .iter()
        .zip(labels)
        .filter(|(v, l)| (f64::from(**v) > z0) == **l)
        .count();
    let metrics = KtoMetrics {
        loss: f64::from(loss.to_scalar::<f32>()?),
        reward_gap: mean_of(true) - mean_of(false),
        accuracy: right as f64 / labels.len().max(1) as f64,
    };
    Ok((loss, metrics))
}

fn logps(trainer: &Trainer, rows: &[&Tokenized]) -> Result<Tensor, SftError> {
    let b = batch(rows, 0);
    let (ids, labels) = trainer.tensors(&b)?;
    Ok(trainer.model.sequence_logprobs(&ids, &labels)?)
}

/// Metrics over all of `rows` at once (no gradient kept).
fn evaluate(
    trainer: &Trainer,
    beta: f64,
    rows: &[Tokenized],
    labels: &[bool],
    refs: &[f32],
) -> Result<Option<KtoMetrics>, SftError> {
    if rows.is_empty() {
        return Ok(None);
    }
    let all: Vec<&Tokenized> = rows.iter().collect();
    let policy = logps(trainer, &all)?.detach();
    let refs = Tensor::from_slice(refs, refs.len(), &trainer.device)?;
    Ok(Some(kto_loss(beta, &(policy - refs)?, labels)?.1))
}

pub fn run(
    job: &KtoJob,
    samples: Vec<KtoSample>,
    stop: &AtomicBool,
    on_step: &mut dyn FnMut(u64, u64, &KtoMetrics),
) -> Result<KtoReport, SftError> {
    let s = &job.settings;
    let tokenizer = super::tokenizer::from_gguf(&job.model)?;
    let (train, eval) = split_by_hash(samples, s.eval_fraction, KtoSample::sha256);
    let encode = |items: &[KtoSample]| -> Result<(Vec<Tokenized>, Vec<bool>), SftError> {
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for k in items {
            let t = tokenize(&tokenizer, &k.as_sample())?;
            if t.ids.len() <= s.max_seq_len as usize {
                rows.push(t);
                labels.push(k.label);
            }
        }
        Ok((rows, labels))
    };
    let (train_rows, train_labels) = encode(&train)?;
    let (eval_rows, eval_labels) = encode(&eval)?;
    if train_rows.is_empty() {
        return Err(SftError::Setup("no labelled replies to train on".into()));
    }
    let batch_size = s.batch_size.max(2) as usize;
    let n_batches = train_rows.len().div_ceil(batch_size) as u64;
    let total = total_steps(s, n_batches);
    let hashes: Vec<String> = train.iter().chain(&eval).map(KtoSample::sha256).collect();
    let settings_sha256 = settings_sha256(&(
        s,
        job.beta,
        &job.model_fingerprint,
        &hashes,
        &job.init_adapter,
    ));
    let run = RunDir::create(&job.run)?;
    run.write_manifest(&serde_json::json!({
        "kind": "kto", "model": job.model, "model_fingerprint": job.model_fingerprint,
        "init_adapter": job.init_adapter, "beta": job.beta, "settings": s,
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
    // The reference: the starting point's log-probs, once.
    let reference = |rows: &[Tokenized]| -> Result<Vec<f32>, SftError> {
        let mut out = Vec::new();
        for chunk in rows.chunks(batch_size) {
            let refs: Vec<&Tokenized> = chunk.iter().collect();
            out.extend(logps(&trainer, &refs)?.detach().to_vec1::<f32>()?);
        }
        Ok(out)
    };
    let train_refs = reference(&train_rows)?;
    let eval_refs = reference(&eval_rows)?;
    let eval_before = evaluate(&trainer, job.beta, &eval_rows, &eval_labels, &eval_refs)?;

    let (mut step, mut losses) = (0, Vec::new());
    if job.resume
        && let Some((at, curve)) = trainer.restore()?
    {
        (step, losses) = (at, curve);
    }
    let mut interrupted = false;
    while step < total {
        let ids = step_indices(train_rows.len(), batch_size, u64::from(s.seed), step);
        let rows: Vec<&Tokenized> = ids.iter().map(|&i| &train_rows[i]).collect();
        let labels: Vec<bool> = ids.iter().map(|&i| train_labels[i]).collect();
        let refs: Vec<f32> = ids.iter().map(|&i| train_refs[i]).collect();
        let refs = Tensor::from_slice(&refs, refs.len(), &trainer.device)?;
        let r = (logps(&trainer, &rows)? - refs)?;
        let (loss, metrics) = kto_loss(job.beta, &r, &labels)?;
        // Through the model: with activation checkpointing the LoRA
        // gradients come back through its side channel.
        let grads = trainer.model.backward(&loss)?;
        let mut acc = Accumulator::new(trainer.params.len());
        acc.add(&trainer.params, &grads, 1.0)?;
        let (grad_norm, lr) = trainer.update(&mut acc, step, s.max_grad_norm)?;
        step += 1;
        losses.push(metrics.loss);
        trainer.run.log(&serde_json::json!({
            "kind": "step", "step": step, "total_steps": total, "loss": metrics.loss,
            "reward_gap": metrics.reward_gap, "accuracy": metrics.accuracy, "lr": lr,
            "grad_norm": grad_norm,
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
        report.eval_after = evaluate(&trainer, job.beta, &eval_rows, &eval_labels, &eval_refs)?;
        report.adapter_gguf = Some(trainer.export(&job.model)?.0);
    }
    Ok(report)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn the_loss_is_half_at_the_reference_and_rewards_sort_by_label() {
        let r = Tensor::from_slice(&[0.0f32, 0.0], 2, &Device::Cpu).unwrap();
        let (_, at_ref) = kto_loss(0.1, &r, &[true, false]).unwrap();
        assert!((at_ref.loss - 0.5).abs() < 1e-6);
        let r = Tensor::from_slice(&[3.0f32, -3.0], 2, &Device::Cpu).unwrap();
        let (_, sorted) = kto_loss(1.0, &r, &[true, false]).unwrap();
        assert_eq!(sorted.accuracy, 1.0);
        assert!((sorted.reward_gap - 6.0).abs() < 1e-6);
        // z₀ = max(0, mean) = 0: both terms are 1 / (1 + e³).
        let expected = 1.0 / (1.0 + 3f64.exp());
        assert!((sorted.loss - expected).abs() < 1e-6, "{}", sorted.loss);
    }
}
