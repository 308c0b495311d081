//! Direct preference optimisation (Rafailov et al. 2023) on collected pairs:
//! loss = −log σ(β · [(log π(chosen) − log π_ref(chosen)) − (log π(rejected)
//! − log π_ref(rejected))]), written stably for any margin. The reference is
//! the starting point — the base model, or the SFT adapter the run starts
//! from — and its log-probs are computed once, before the first step, and
//! cached. `train.grad_accum` micro-batches of `train.batch_size` pairs make
//! one optimizer step, weighted so it equals one batch of all of them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::data::{Message, Sample, Tokenized, batch, split_by_hash, step_micro_batches, tokenize};
use super::error::JobError;
use super::optim::Accumulator;
use super::run::{RunDir, memory_mib};
use super::stable::log_sigmoid;
use super::train_loop::trainer::{Trainer, settings_sha256, total_steps};
use crate::config::TrainConfig;
use crate::hashing::sha256_hex;

/// One preference pair: the conversation so far and two assistant replies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairSample {
    pub prompt: Vec<Message>,
    pub chosen: String,
    pub rejected: String,
}

impl PairSample {
    pub fn sha256(&self) -> String {
        sha256_hex(serde_json::to_string(self).unwrap_or_default().as_bytes())
    }

    fn with_reply(&self, reply: &str) -> Sample {
        let mut messages = self.prompt.clone();
        messages.push(Message {
            role: "assistant".into(),
            content: reply.to_string(),
        });
        Sample { messages }
    }
}

/// TRL's conversational preference line, as `her export prefs --format dpo` writes it.
#[derive(Deserialize)]
struct TrlLine {
    prompt: Vec<Message>,
    chosen: Vec<Message>,
    rejected: Vec<Message>,
}

/// Reads TRL DPO JSONL; a bad line is an error naming the file and line.
pub fn read_dpo_jsonl(path: &Path) -> Result<Vec<PairSample>, super::data::DataError> {
    let out = super::data::read_jsonl_lines(path, |line| {
        let trl: TrlLine = serde_json::from_str(line)
            .map_err(|e| format!("not a {{prompt, chosen, rejected}} object: {e}"))?;
        let reply = |m: &[Message], which: &str| {
            m.last()
                .filter(|m| m.role == "assistant")
                .map(|m| m.content.clone())
                .ok_or_else(|| format!("'{which}' does not end with an assistant message"))
        };
        Ok(PairSample {
            chosen: reply(&trl.chosen, "chosen")?,
            rejected: reply(&trl.rejected, "rejected")?,
            prompt: trl.prompt,
        })
    })?;
    if out.is_empty() {
        return Err(super::data::DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(out)
}

struct TokenizedPair {
    chosen: Tokenized,
    rejected: Tokenized,
}

fn tokenize_pair(tokenizer: &Tokenizer, pair: &PairSample) -> Result<TokenizedPair, JobError> {
    Ok(TokenizedPair {
        chosen: tokenize(tokenizer, &pair.with_reply(&pair.chosen))?,
        rejected: tokenize(tokenizer, &pair.with_reply(&pair.rejected))?,
    })
}

/// Chosen rows first, then rejected rows, in one batch.
fn pair_batch(pairs: &[&TokenizedPair]) -> super::data::Batch {
    let rows: Vec<&Tokenized> = pairs
        .iter()
        .map(|p| &p.chosen)
        .chain(pairs.iter().map(|p| &p.rejected))
        .collect();
    batch(&rows, 0)
}

/// How the policy separates chosen from rejected on some pairs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PairMetrics {
    pub loss: f64,
    /// Mean β·(log π − log π_ref) of chosen replies.
    pub reward_chosen: f64,
    pub reward_rejected: f64,
    /// Mean reward_chosen − reward_rejected.
    pub margin: f64,
    /// Share of pairs whose margin is positive.
    pub accuracy: f64,
}

impl PairMetrics {
    /// The metrics of all pairs from those of parts with (pairs, metrics).
    fn merge(parts: &[(usize, PairMetrics)]) -> PairMetrics {
        let n = parts.iter().map(|(k, _)| *k).sum::<usize>().max(1) as f64;
        let mean = |f: fn(&PairMetrics) -> f64| {
            parts.iter().map(|(k, m)| *k as f64 * f(m)).sum::<f64>() / n
        };
        PairMetrics {
            loss: mean(|m| m.loss),
            reward_chosen: mean(|m| m.reward_chosen),
            reward_rejected: mean(|m| m.reward_rejected),
            margin: mean(|m| m.margin),
            accuracy: mean(|m| m.accuracy),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DpoReport {
    pub interrupted: bool,
    pub steps: u64,
    pub train_pairs: usize,
    pub eval_pairs: usize,
    pub too_long: usize,
    /// Held-out metrics before training and at the end.
    pub eval_before: Option<PairMetrics>,
    pub eval_after: Option<PairMetrics>,
    pub last_train: Option<PairMetrics>,
    pub adapter_gguf: Option<PathBuf>,
    pub peft_dir: Option<PathBuf>,
}

pub struct DpoJob {
    pub model: PathBuf,
    pub model_fingerprint: String,
    pub settings: TrainConfig,
    pub beta: f64,
    pub run: PathBuf,
    pub resume: bool,
    /// Start (and take the reference) from this adapter instead of the base.
    pub init_adapter: Option<PathBuf>,
}

/// Per-pair (chosen, rejected) summed log-probs, chosen rows first; with
/// `grad` false the pass keeps no graph (reference and held-out passes).
fn logps(
    trainer: &Trainer,
    pairs: &[&TokenizedPair],
    grad: bool,
) -> Result<(Tensor, Tensor), JobError> {
    let b = pair_batch(pairs);
    let (ids, labels) = trainer.tensors(&b)?;
    let all = match grad {
        true => trainer.model.sequence_logprobs(&ids, &labels)?,
        false => trainer.model.sequence_logprobs_detached(&ids, &labels)?,
    };
    let n = pairs.len();
    Ok((all.narrow(0, 0, n)?, all.narrow(0, n, n)?))
}

/// The DPO loss and its metrics for policy and reference log-probs.
fn dpo_loss(
    beta: f64,
    (pc, pr): (&Tensor, &Tensor),
    (rc, rr): (&Tensor, &Tensor),
) -> Result<(Tensor, PairMetrics), JobError> {
    let chosen = ((pc - rc)? * beta)?;
    let rejected = ((pr - rr)? * beta)?;
    let logits = (&chosen - &rejected)?;
    // −log σ(x) = softplus(−x), finite in value and gradient for any margin.
    let loss = log_sigmoid(&logits)?.neg()?.mean_all()?;
    let values = |t: &Tensor| -> Result<Vec<f32>, JobError> { Ok(t.to_vec1::<f32>()?) };
    let (c, r, l) = (values(&chosen)?, values(&rejected)?, values(&logits)?);
    let n = l.len().max(1) as f64;
    let mean = |v: &[f32]| v.iter().map(|x| f64::from(*x)).sum::<f64>() / n;
    let metrics = PairMetrics {
        loss: f64::from(loss.to_scalar::<f32>()?),
        reward_chosen: mean(&c),
        reward_rejected: mean(&r),
        margin: mean(&c) - mean(&r),
        accuracy: l.iter().filter(|x| **x > 0.0).count() as f64 / n,
    };
    Ok((loss, metrics))
}

/// Reference log-probs of every pair, in chunks, without a graph.
fn reference(
    trainer: &Trainer,
    pairs: &[TokenizedPair],
    chunk: usize,
) -> Result<Vec<(f32, f32)>, JobError> {
    let mut out = Vec::with_capacity(pairs.len());
    for group in pairs.chunks(chunk.max(1)) {
        let refs: Vec<&TokenizedPair> = group.iter().collect();
        let (c, r) = logps(trainer, &refs, false)?;
        let (c, r) = (c.to_vec1::<f32>()?, r.to_vec1::<f32>()?);
        out.extend(c.into_iter().zip(r));
    }
    Ok(out)
}

fn ref_tensors(
    refs: &[(f32, f32)],
    device: &candle_core::Device,
) -> Result<(Tensor, Tensor), JobError> {
    let c: Vec<f32> = refs.iter().map(|(c, _)| *c).collect();
    let r: Vec<f32> = refs.iter().map(|(_, r)| *r).collect();
    Ok((
        Tensor::from_slice(&c, c.len(), device)?,
        Tensor::from_slice(&r, r.len(), device)?,
    ))
}

fn evaluate(
    trainer: &Trainer,
    beta: f64,
    pairs: &[TokenizedPair],
    refs: &[(f32, f32)],
    chunk: usize,
) -> Result<Option<PairMetrics>, JobError> {
    if pairs.is_empty() {
        return Ok(None);
    }
    let mut policy = Vec::new();
    for group in pairs.chunks(chunk.max(1)) {
        let g: Vec<&TokenizedPair> = group.iter().collect();
        let (c, r) = logps(trainer, &g, false)?;
        policy.extend(c.to_vec1::<f32>()?.into_iter().zip(r.to_vec1::<f32>()?));
    }
    let (pc, pr) = ref_tensors(&policy, &trainer.device)?;
    let (rc, rr) = ref_tensors(refs, &trainer.device)?;
    Ok(Some(dpo_loss(beta, (&pc, &pr), (&rc, &rr))?.1))
}

/// One optimizer step's gradients summed over its micro-batches (indices
/// into `pairs`), each weighted by its share of the step's pairs — the same
/// as one batch of all of them — and the step's metrics. A micro-batch
/// whose loss is not finite ends the work (the step will be skipped).
fn step_gradients(
    trainer: &Trainer,
    beta: f64,
    pairs: &[TokenizedPair],
    refs: &[(f32, f32)],
    micro: &[Vec<usize>],
) -> Result<(Accumulator, PairMetrics), JobError> {
    let total = micro.iter().map(Vec::len).sum::<usize>().max(1);
    let mut acc = Accumulator::new(trainer.params.len());
    let mut parts = Vec::with_capacity(micro.len());
    for ids in micro.iter().filter(|ids| !ids.is_empty()) {
        let group: Vec<&TokenizedPair> = ids.iter().map(|&i| &pairs[i]).collect();
        let own: Vec<(f32, f32)> = ids.iter().map(|&i| refs[i]).collect();
        let (pc, pr) = logps(trainer, &group, true)?;
        let (rc, rr) = ref_tensors(&own, &trainer.device)?;
        let (loss, metrics) = dpo_loss(beta, (&pc, &pr), (&rc, &rr))?;
        parts.push((ids.len(), metrics));
        if !metrics.loss.is_finite() {
            break;
        }
        // Through the model: with activation checkpointing the LoRA
        // gradients come back through its side channel.
        let grads = trainer
            .model
            .backward(&(loss * (ids.len() as f64 / total as f64))?)?;
        acc.add(&trainer.params, &grads, 1.0)?;
    }
    Ok((acc, PairMetrics::merge(&parts)))
}

pub fn run(
    job: &DpoJob,
    pairs: Vec<PairSample>,
    stop: &AtomicBool,
    on_step: &mut dyn FnMut(u64, u64, &PairMetrics),
) -> Result<DpoReport, JobError> {
    let s = &job.settings;
    let tokenizer = super::tokenizer::from_gguf(&job.model)?;
    // 1. Held-out split by content, tokenization, long pairs left out.
    let (train, eval) = split_by_hash(pairs, s.eval_fraction, PairSample::sha256);
    let max = s.max_seq_len as usize;
    let mut too_long = 0;
    let mut encode = |pairs: &[PairSample]| -> Result<Vec<TokenizedPair>, JobError> {
        let mut out = Vec::new();
        for p in pairs {
            let t = tokenize_pair(&tokenizer, p)?;
            if t.chosen.ids.len() > max || t.rejected.ids.len() > max {
                too_long += 1;
            } else {
                out.push(t);
            }
        }
        Ok(out)
    };
    let train_t = encode(&train)?;
    let eval_t = encode(&eval)?;
    if train_t.is_empty() {
        return Err(JobError::Setup("no preference pairs to train on".into()));
    }
    let batch_size = s.batch_size.max(1) as usize;
    let accum = u64::from(s.grad_accum.max(1));
    let n_batches = train_t.len().div_ceil(batch_size) as u64;
    let total = total_steps(s, n_batches.div_ceil(accum));
    let hashes: Vec<String> = train.iter().chain(&eval).map(PairSample::sha256).collect();
    let settings_sha256 = settings_sha256(&(
        s,
        job.beta,
        &job.model_fingerprint,
        &hashes,
        &job.init_adapter,
    ));
    let run = RunDir::create(&job.run)?;
    run.write_manifest(&serde_json::json!({
        "kind": "dpo",
        "model": job.model,
        "model_fingerprint": job.model_fingerprint,
        "init_adapter": job.init_adapter,
        "beta": job.beta,
        "settings": s,
        "pair_sha256": hashes,
        "train_pairs": train_t.len(),
        "eval_pairs": eval_t.len(),
        "total_steps": total,
    }))?;
    let mut trainer = Trainer::new(
        &job.model,
        s,
        job.init_adapter.as_deref(),
        run,
        total,
        settings_sha256,
    )?;

    // 2. The reference: the starting point's log-probs, once. (A resumed
    // run recomputes them from the base or init adapter first.)
    let train_refs = reference(&trainer, &train_t, batch_size)?;
    let eval_refs = reference(&trainer, &eval_t, batch_size)?;
    let eval_before = evaluate(&trainer, job.beta, &eval_t, &eval_refs, batch_size)?;
    let (mut step, mut losses) = (0, Vec::new());
    if job.resume
        && let Some((at, curve)) = trainer.restore()?
    {
        (step, losses) = (at, curve);
    }

    // 3. Steps over seeded epoch orders.
    let began = Instant::now();
    let mut last = None;
    let mut interrupted = false;
    while step < total {
        let micro = step_micro_batches(train_t.len(), batch_size, u64::from(s.seed), step, accum);
        let (mut acc, metrics) = step_gradients(&trainer, job.beta, &train_t, &train_refs, &micro)?;
        let update = trainer.update(&mut acc, step, step + 1, metrics.loss)?;
        let (grad_norm, lr) = (update.grad_norm, update.lr);
        step += 1;
        losses.push(metrics.loss);
        let (rss, peak) = memory_mib();
        trainer.run.log(&serde_json::json!({
            "kind": "step", "step": step, "total_steps": total, "loss": metrics.loss,
            "reward_chosen": metrics.reward_chosen, "reward_rejected": metrics.reward_rejected,
            "margin": metrics.margin, "accuracy": metrics.accuracy, "lr": lr,
            "grad_norm": grad_norm, "elapsed_s": began.elapsed().as_secs_f64(),
            "rss_mib": rss, "peak_mib": peak,
        }))?;
        on_step(step, total, &metrics);
        last = Some(metrics);
        if stop.load(Ordering::SeqCst) {
            trainer.save_checkpoint(step, &losses)?;
            interrupted = true;
            break;
        }
        if s.checkpoint_every > 0 && step % u64::from(s.checkpoint_every) == 0 && step < total {
            trainer.save_checkpoint(step, &losses)?;
        }
    }

    // 4. Held-out margin and accuracy after training; the adapter.
    let mut report = DpoReport {
        interrupted,
        steps: step,
        train_pairs: train_t.len(),
        eval_pairs: eval_t.len(),
        too_long,
        eval_before,
        eval_after: None,
        last_train: last,
        adapter_gguf: None,
        peft_dir: None,
    };
    if interrupted {
        return Ok(report);
    }
    trainer.save_checkpoint(step, &losses)?;
    report.eval_after = evaluate(&trainer, job.beta, &eval_t, &eval_refs, batch_size)?;
    if let Some(m) = &report.eval_after {
        trainer.run.log(&serde_json::json!({
            "kind": "eval", "step": step, "eval_loss": m.loss, "margin": m.margin,
            "accuracy": m.accuracy,
        }))?;
    }
    let (gguf, peft) = trainer.export(&job.model)?;
    report.adapter_gguf = Some(gguf);
    report.peft_dir = Some(peft);
    Ok(report)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn the_loss_is_log_two_at_the_reference_and_falls_as_the_margin_grows() {
        let t = |v: &[f32]| Tensor::from_slice(v, v.len(), &Device::Cpu).unwrap();
        let (rc, rr) = (t(&[-10.0, -12.0]), t(&[-11.0, -9.0]));
        let (_, at_ref) = dpo_loss(0.1, (&rc, &rr), (&rc, &rr)).unwrap();
        assert!((at_ref.loss - std::f64::consts::LN_2).abs() < 1e-6);
        assert_eq!((at_ref.margin, at_ref.accuracy), (0.0, 0.0));
        // Chosen up by 2 nats, rejected down by 3: β·5 = 0.5 per pair.
        let (pc, pr) = (t(&[-8.0, -10.0]), t(&[-14.0, -12.0]));
        let (_, better) = dpo_loss(0.1, (&pc, &pr), (&rc, &rr)).unwrap();
        assert!((better.margin - 0.5).abs() < 1e-5);
        assert_eq!(better.accuracy, 1.0);
        let expected = (1.0 + (-0.5f64).exp()).ln();
        assert!((better.loss - expected).abs() < 1e-6, "{}", better.loss);
    }

    /// β·margin far past where e^x overflows f32 (~88): the loss is
    /// −log σ(x)'s limit (0, or −x) and the gradient −β·σ(−x)/n's (0, or −β/n).
    #[test]
    fn extreme_margins_give_the_analytic_limits_in_value_and_gradient() {
        let dev = Device::Cpu;
        let beta = 0.1;
        // Pair 0: β·margin = +1000; pair 1: −1000.
        let pc = candle_core::Var::from_slice(&[5000.0f32, -5000.0], 2, &dev).unwrap();
        let pr = candle_core::Var::from_slice(&[-5000.0f32, 5000.0], 2, &dev).unwrap();
        let zeros = Tensor::zeros(2, candle_core::DType::F32, &dev).unwrap();
        let (loss, m) = dpo_loss(beta, (pc.as_tensor(), pr.as_tensor()), (&zeros, &zeros)).unwrap();
        assert_eq!(m.loss, 500.0, "{m:?}");
        assert_eq!(m.accuracy, 0.5);
        let grads = loss.backward().unwrap();
        let g = |v: &candle_core::Var| grads.get(v.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        let (gc, gr) = (g(&pc), g(&pr));
        let want = (beta / 2.0) as f32;
        assert!(gc[0].abs() < 1e-12 && gr[0].abs() < 1e-12, "{gc:?} {gr:?}");
        assert!(
            (gc[1] + want).abs() < 1e-7 && (gr[1] - want).abs() < 1e-7,
            "{gc:?} {gr:?}"
        );
    }

    fn pairs() -> Vec<PairSample> {
        [
            "Darcy: Do you dance?",
            "Jane: Well?",
            "Lydia: Look!",
            "Kitty: Where?",
        ]
        .iter()
        .map(|line| {
            let prompt = crate::train::testing::chat(line, "").messages[..2].to_vec();
            PairSample {
                prompt,
                chosen: "<role_action>smiles</role_action>Indeed.".into(),
                rejected: "Indeed, indeed.".into(),
            }
        })
        .collect()
    }

    /// Two micro-batches of two pairs, weighted by their share, give the
    /// loss and gradients of one batch of four.
    #[test]
    fn accumulated_micro_batches_equal_one_batch_of_all_pairs() {
        use crate::train::testing::{assert_same_gradients, perturb, settings, tiny_trainer};
        let t = tiny_trainer(&settings());
        let tokenizer = crate::train::tokenizer::from_gguf(&t.model).unwrap();
        let pairs: Vec<TokenizedPair> = pairs()
            .iter()
            .map(|p| tokenize_pair(&tokenizer, p).unwrap())
            .collect();
        let refs = reference(&t.trainer, &pairs, 4).unwrap();
        perturb(&t.trainer, 9);
        let (one, m1) =
            step_gradients(&t.trainer, 0.5, &pairs, &refs, &[vec![0, 1, 2, 3]]).unwrap();
        let (two, m2) =
            step_gradients(&t.trainer, 0.5, &pairs, &refs, &[vec![0, 1], vec![2, 3]]).unwrap();
        assert!((m1.loss - m2.loss).abs() < 1e-5, "{m1:?} vs {m2:?}");
        assert!((m1.margin - m2.margin).abs() < 1e-5, "{m1:?} vs {m2:?}");
        assert!(
            (m1.loss - std::f64::consts::LN_2).abs() > 1e-3,
            "the policy moved: {m1:?}"
        );
        assert_same_gradients(&one, &two);
    }

    #[test]
    fn trl_lines_parse_and_bad_ones_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dpo.jsonl");
        let good = r#"{"prompt":[{"role":"user","content":"Hi"}],"chosen":[{"role":"assistant","content":"A"}],"rejected":[{"role":"assistant","content":"B"}]}"#;
        let bad = r#"{"prompt":[],"chosen":[{"role":"user","content":"A"}],"rejected":[]}"#;
        std::fs::write(&path, format!("{good}\n")).unwrap();
        let pairs = read_dpo_jsonl(&path).unwrap();
        assert_eq!(
            (pairs[0].chosen.as_str(), pairs[0].rejected.as_str()),
            ("A", "B")
        );
        std::fs::write(&path, format!("{good}\n{bad}\n")).unwrap();
        let err = read_dpo_jsonl(&path).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("'chosen'"), "{err}");
    }
}
