//! Direct preference optimisation (Rafailov et al. 2023) on collected pairs:
//! loss = −log σ(β · [(log π(chosen) − log π_ref(chosen)) − (log π(rejected)
//! − log π_ref(rejected))]), written stably for any margin. The reference is
//! the starting point — the base model, or the SFT adapter the run starts
//! from — and its log-probs are computed once, before the first step, and
//! cached. `train.grad_accum` micro-batches of `train.batch_size` pairs make
//! one optimizer step, weighted so it equals one batch of all of them.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::data::{Message, Sample, Tokenized, batch, step_micro_batches, tokenize};
use super::error::JobError;
use super::stable::log_sigmoid;
use super::train_loop::trainer::{Trainer, settings_sha256, total_steps};
use super::train_loop::{
    DataSummary, Job, Micro, MicroLoss, Objective, ReportOf, RunSpec, StepData, StepOutcome,
};
use crate::settings::TrainConfig;
use her_core::hashing::sha256_hex;

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

/// DPO's own fields of a step or eval line (the loss is the line's).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PairScores {
    pub reward_chosen: f64,
    pub reward_rejected: f64,
    pub margin: f64,
    pub accuracy: f64,
}

impl PairMetrics {
    fn scores(&self) -> PairScores {
        PairScores {
            reward_chosen: self.reward_chosen,
            reward_rejected: self.reward_rejected,
            margin: self.margin,
            accuracy: self.accuracy,
        }
    }
}

impl PairScores {
    fn with_loss(self, loss: f64) -> PairMetrics {
        PairMetrics {
            loss,
            reward_chosen: self.reward_chosen,
            reward_rejected: self.reward_rejected,
            margin: self.margin,
            accuracy: self.accuracy,
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

/// A DPO run (its `init_adapter` is also the reference) and its β.
pub struct DpoJob {
    pub spec: RunSpec,
    pub beta: f64,
}

/// DPO against the starting point's log-probs, computed once before the
/// first step (and before a resume's restore).
#[derive(Default)]
pub struct DpoObjective {
    beta: f64,
    batch_size: usize,
    accum: u64,
    seed: u64,
    train: Vec<TokenizedPair>,
    held_out: Vec<TokenizedPair>,
    /// Every pair's hash, held-out ones and long ones included.
    pair_sha256: Vec<String>,
    train_refs: Vec<(f32, f32)>,
    held_out_refs: Vec<(f32, f32)>,
    /// Pairs in the current step, and each micro-batch's (pairs, metrics).
    step_pairs: usize,
    parts: Vec<(usize, PairMetrics)>,
}

impl DpoObjective {
    pub fn new(beta: f64) -> Self {
        Self {
            beta,
            ..Self::default()
        }
    }

    /// The step of these micro-batches (pair indices), each weighted by its
    /// share of the step's pairs, as one batch of all of them would be.
    fn plan_step(&mut self, micro: Vec<Vec<usize>>) -> StepData<Vec<usize>> {
        self.step_pairs = micro.iter().map(Vec::len).sum::<usize>().max(1);
        let batches: Vec<Vec<usize>> = micro.into_iter().filter(|ids| !ids.is_empty()).collect();
        let tokens = batches
            .iter()
            .flatten()
            .map(|&i| {
                self.train[i].chosen.completion_len() + self.train[i].rejected.completion_len()
            })
            .sum();
        StepData::Ready { batches, tokens }
    }
}

impl Objective for DpoObjective {
    type Item = PairSample;
    type Batch = Vec<usize>;
    type Metrics = PairScores;
    type EvalMetrics = PairScores;
    type Error = JobError;

    fn kind(&self) -> &'static str {
        "dpo"
    }

    fn item_sha256(item: &PairSample) -> String {
        item.sha256()
    }

    fn prepare(
        &mut self,
        tokenizer: &Tokenizer,
        train: Vec<PairSample>,
        held_out: Vec<PairSample>,
        s: &TrainConfig,
    ) -> Result<DataSummary, JobError> {
        let max = s.max_seq_len as usize;
        let mut too_long = 0;
        let mut encode = |pairs: &[PairSample]| -> Result<Vec<TokenizedPair>, JobError> {
            let mut out = Vec::new();
            for p in pairs {
                let t = tokenize_pair(tokenizer, p)?;
                if t.chosen.ids.len() > max || t.rejected.ids.len() > max {
                    too_long += 1;
                } else {
                    out.push(t);
                }
            }
            Ok(out)
        };
        self.train = encode(&train)?;
        self.held_out = encode(&held_out)?;
        if self.train.is_empty() {
            return Err(JobError::Setup("no preference pairs to train on".into()));
        }
        self.pair_sha256 = train
            .iter()
            .chain(&held_out)
            .map(PairSample::sha256)
            .collect();
        self.batch_size = s.batch_size.max(1) as usize;
        self.accum = u64::from(s.grad_accum.max(1));
        self.seed = u64::from(s.seed);
        Ok(DataSummary {
            train: self.train.len(),
            held_out: self.held_out.len(),
            too_long,
        })
    }

    fn total_steps(&self, s: &TrainConfig) -> u64 {
        let n_batches = self.train.len().div_ceil(self.batch_size) as u64;
        total_steps(s, n_batches.div_ceil(self.accum))
    }

    fn settings_sha256(&self, spec: &RunSpec) -> String {
        settings_sha256(&(
            &spec.settings,
            self.beta,
            &spec.model_fingerprint,
            &self.pair_sha256,
            &spec.init_adapter,
        ))
    }

    fn manifest(&self, _: &RunSpec) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("beta".into(), self.beta.into());
        m.insert("pair_sha256".into(), self.pair_sha256.clone().into());
        m.insert("train_pairs".into(), self.train.len().into());
        m.insert("eval_pairs".into(), self.held_out.len().into());
        m
    }

    fn eval_before_on_resume(&self) -> bool {
        true
    }

    /// The reference: the starting point's log-probs, once.
    fn start(&mut self, trainer: &mut Trainer) -> Result<(), JobError> {
        self.train_refs = reference(trainer, &self.train, self.batch_size)?;
        self.held_out_refs = reference(trainer, &self.held_out, self.batch_size)?;
        Ok(())
    }

    fn step_batches(
        &mut self,
        _: &Trainer,
        step: u64,
        _: &AtomicBool,
    ) -> Result<StepData<Vec<usize>>, JobError> {
        let micro = step_micro_batches(
            self.train.len(),
            self.batch_size,
            self.seed,
            step,
            self.accum,
        );
        Ok(self.plan_step(micro))
    }

    fn begin_pass(&mut self, _: u32) {
        self.parts.clear();
    }

    fn loss(
        &mut self,
        trainer: &Trainer,
        ids: &Vec<usize>,
        _: Micro,
    ) -> Result<MicroLoss, JobError> {
        let group: Vec<&TokenizedPair> = ids.iter().map(|&i| &self.train[i]).collect();
        let own: Vec<(f32, f32)> = ids.iter().map(|&i| self.train_refs[i]).collect();
        let (pc, pr) = logps(trainer, &group, true)?;
        let (rc, rr) = ref_tensors(&own, &trainer.device)?;
        let (loss, metrics) = dpo_loss(self.beta, (&pc, &pr), (&rc, &rr))?;
        self.parts.push((ids.len(), metrics));
        let positions = group
            .iter()
            .map(|p| p.chosen.ids.len() + p.rejected.ids.len())
            .sum();
        Ok(MicroLoss {
            loss: (loss * (ids.len() as f64 / self.step_pairs as f64))?,
            positions,
        })
    }

    fn pass_loss(&mut self, _complete: bool) -> f64 {
        PairMetrics::merge(&self.parts).loss
    }

    fn summarize(&mut self) -> StepOutcome<PairScores> {
        let m = PairMetrics::merge(&self.parts);
        StepOutcome {
            loss: m.loss,
            curve: m.loss,
            metrics: m.scores(),
        }
    }

    fn evaluate(&mut self, trainer: &Trainer) -> Result<Option<(f64, PairScores)>, JobError> {
        let m = evaluate(
            trainer,
            self.beta,
            &self.held_out,
            &self.held_out_refs,
            self.batch_size,
        )?;
        Ok(m.map(|m| (m.loss, m.scores())))
    }
}

impl Job for DpoJob {
    type Objective<'j> = DpoObjective;
    type Report = DpoReport;

    fn spec(&self) -> &RunSpec {
        &self.spec
    }

    fn objective(&self) -> Result<DpoObjective, JobError> {
        Ok(DpoObjective::new(self.beta))
    }

    fn report(_: DpoObjective, r: ReportOf<DpoObjective>) -> DpoReport {
        let with_loss = |e: Option<(f64, PairScores)>| e.map(|(loss, m)| m.with_loss(loss));
        DpoReport {
            interrupted: r.interrupted,
            steps: r.steps,
            train_pairs: r.data.train,
            eval_pairs: r.data.held_out,
            too_long: r.data.too_long,
            eval_before: with_loss(r.before),
            eval_after: with_loss(r.after),
            last_train: r.last.map(|o| o.metrics.with_loss(o.loss)),
            adapter_gguf: r.adapter_gguf,
            peft_dir: r.peft_dir,
        }
    }
}

#[cfg(test)]
#[path = "dpo_tests.rs"]
mod tests;
