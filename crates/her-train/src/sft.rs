//! The SFT loop: LoRA on the final assistant turn of HER samples (or on
//! every assistant turn), several samples packed into each row, with
//! accumulation, clipping, a warm-up + cosine schedule, held-out loss, the
//! best checkpoint kept and early stopping, checkpoints that resume
//! exactly, ctrl+c that saves, and the adapter exported for llama.cpp and
//! PEFT at the end.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use candle_core::{Device, Tensor};
use serde::Serialize;
use tokenizers::Tokenizer;

use super::data::{Batch, Batching, LossOn, Sample, Tokenized, tokenize_turns};
use super::dataset::DataSource;
use super::error::JobError;
use super::model::{Segments, TrainModel};
use super::train_loop::trainer::{Trainer, settings_sha256, total_steps};
use super::train_loop::{
    DataSummary, Job, Micro, MicroLoss, Objective, ReportOf, RunSpec, StepData, StepOutcome,
};
use crate::settings::TrainConfig;

/// An SFT run: where it trains, and the data files it names in its manifest.
pub struct SftJob {
    pub spec: RunSpec,
    pub sources: Vec<DataSource>,
}

/// SFT's step lines carry only the common fields.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SftMetrics {}

/// SFT's eval lines: the labelled tokens the held-out loss is over.
#[derive(Debug, Clone, Serialize)]
pub struct SftEval {
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
pub type Progress<'a> = super::train_loop::Progress<'a, SftMetrics, SftEval>;

/// Supervised fine-tuning: the token-weighted next-token loss on the
/// labelled turns, over seeded epochs of (packed) micro-batches.
#[derive(Default)]
pub struct SftObjective {
    sources: Vec<DataSource>,
    train: Vec<Tokenized>,
    held_out: Vec<Batch>,
    train_sha256: Vec<String>,
    held_out_sha256: Vec<String>,
    too_long: usize,
    batching: Option<Batching>,
    batch_size: usize,
    accum: u64,
    seed: u64,
    /// Micro-batches per epoch.
    per_epoch: u64,
    /// The epoch whose batches the steps are drawing from.
    cached_epoch: Option<(u64, Vec<Batch>)>,
    /// Labelled tokens of the current step, and its loss so far.
    step_tokens: usize,
    loss_sum: f64,
}

impl SftObjective {
    pub fn new(sources: Vec<DataSource>) -> Self {
        Self {
            sources,
            ..Self::default()
        }
    }
}

impl Objective for SftObjective {
    type Item = Sample;
    type Batch = Batch;
    type Metrics = SftMetrics;
    type EvalMetrics = SftEval;
    type Error = JobError;

    fn kind(&self) -> &'static str {
        "sft"
    }

    fn check(&self, s: &TrainConfig, _: &[Sample]) -> Result<(), JobError> {
        s.loss_on.parse::<LossOn>().map_err(JobError::Setup)?;
        Ok(())
    }

    fn item_sha256(item: &Sample) -> String {
        item.sha256()
    }

    fn prepare(
        &mut self,
        tokenizer: &Tokenizer,
        train: Vec<Sample>,
        held_out: Vec<Sample>,
        s: &TrainConfig,
    ) -> Result<DataSummary, JobError> {
        let loss_on: LossOn = s.loss_on.parse().map_err(JobError::Setup)?;
        let max = s.max_seq_len as usize;
        let mut too_long = 0;
        let mut encode = |samples: Vec<Sample>| -> Result<(Vec<Tokenized>, Vec<String>), JobError> {
            let mut kept = Vec::new();
            let mut hashes = Vec::new();
            for sample in samples {
                let t = tokenize_turns(tokenizer, &sample, loss_on)?;
                if t.ids.len() > max {
                    too_long += 1;
                    continue;
                }
                hashes.push(sample.sha256());
                kept.push(t);
            }
            Ok((kept, hashes))
        };
        let (train, train_sha256) = encode(train)?;
        let (held_out, held_out_sha256) = encode(held_out)?;
        if train.is_empty() {
            return Err(JobError::Setup(format!(
                "no training samples left ({too_long} longer than train.max_seq_len = {max} tokens)"
            )));
        }
        self.batch_size = s.batch_size as usize;
        self.accum = u64::from(s.grad_accum.max(1));
        self.seed = u64::from(s.seed);
        let batching = Batching::new(&train, s.packing, max);
        self.per_epoch = batching.batches_per_epoch(train.len(), self.batch_size) as u64;
        self.batching = Some(batching);
        self.held_out = held_out_batches(&held_out, self.batch_size, s.packing, max);
        let summary = DataSummary {
            train: train.len(),
            held_out: held_out.len(),
            too_long,
        };
        (self.train, self.train_sha256, self.held_out_sha256) =
            (train, train_sha256, held_out_sha256);
        self.too_long = too_long;
        Ok(summary)
    }

    fn total_steps(&self, s: &TrainConfig) -> u64 {
        total_steps(s, self.per_epoch.div_ceil(self.accum))
    }

    fn settings_sha256(&self, spec: &RunSpec) -> String {
        settings_sha256(&(
            &spec.settings,
            &spec.model_fingerprint,
            &self.train_sha256,
            &self.held_out_sha256,
        ))
    }

    fn manifest(&self, _: &RunSpec) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("data".into(), serde_json::json!(self.sources));
        m.insert(
            "train_sample_sha256".into(),
            self.train_sha256.clone().into(),
        );
        m.insert(
            "eval_sample_sha256".into(),
            self.held_out_sha256.clone().into(),
        );
        m.insert("too_long".into(), self.too_long.into());
        m
    }

    fn evaluates_during_run(&self) -> bool {
        true
    }

    /// `train.grad_accum` micro-batches of the epoch the step falls in
    /// (micro-batch `g = step * accum + k` of the run).
    fn step_batches(
        &mut self,
        _: &Trainer,
        step: u64,
        _: &AtomicBool,
    ) -> Result<StepData<Batch>, JobError> {
        let Some(batching) = &self.batching else {
            return Err(JobError::Setup("the SFT data was not prepared".into()));
        };
        let mut micro = Vec::with_capacity(self.accum as usize);
        for k in 0..self.accum {
            let g = step * self.accum + k;
            let (epoch, index) = (g / self.per_epoch, (g % self.per_epoch) as usize);
            if self.cached_epoch.as_ref().is_none_or(|(e, _)| *e != epoch) {
                let batches = batching.epoch(&self.train, self.batch_size, self.seed, epoch);
                self.cached_epoch = Some((epoch, batches));
            }
            if let Some((_, batches)) = &self.cached_epoch
                && let Some(b) = batches.get(index)
            {
                micro.push(b.clone());
            }
        }
        self.step_tokens = micro.iter().map(|b| b.tokens).sum();
        Ok(StepData::Ready {
            batches: micro,
            tokens: self.step_tokens,
        })
    }

    fn begin_pass(&mut self, _: u32) {
        self.loss_sum = 0.0;
    }

    fn loss(&mut self, trainer: &Trainer, batch: &Batch, at: Micro) -> Result<MicroLoss, JobError> {
        let (ids, labels) = trainer.tensors(batch)?;
        let segments = segments(batch)?;
        let dropout_stream = at.step * self.accum + at.index as u64;
        let (loss, n) =
            trainer
                .model
                .packed_loss(&ids, &labels, segments.as_ref(), true, dropout_stream)?;
        // Token-weighted: the step's loss is the mean over all its
        // labelled tokens (TRL's normalisation, with or without packing).
        let weight = n as f64 / self.step_tokens.max(1) as f64;
        self.loss_sum += loss.to_scalar::<f32>()? as f64 * weight;
        Ok(MicroLoss {
            loss: (loss * weight)?,
            positions: batch.positions,
        })
    }

    fn pass_loss(&mut self, _complete: bool) -> f64 {
        self.loss_sum
    }

    fn summarize(&mut self) -> StepOutcome<SftMetrics> {
        StepOutcome {
            loss: self.loss_sum,
            curve: self.loss_sum,
            metrics: SftMetrics {},
        }
    }

    fn evaluate(&mut self, trainer: &Trainer) -> Result<Option<(f64, SftEval)>, JobError> {
        if self.held_out.is_empty() {
            return Ok(None);
        }
        let (loss, tokens) = evaluate(&trainer.model, &self.held_out, &trainer.device)?;
        Ok(Some((loss, SftEval { tokens })))
    }
}

impl Job for SftJob {
    type Objective<'j> = SftObjective;
    type Report = SftReport;

    fn spec(&self) -> &RunSpec {
        &self.spec
    }

    fn objective(&self) -> Result<SftObjective, JobError> {
        Ok(SftObjective::new(self.sources.clone()))
    }

    fn report(_: SftObjective, r: ReportOf<SftObjective>) -> SftReport {
        SftReport {
            interrupted: r.interrupted,
            steps: r.steps,
            losses: r.curve,
            evals: r.evals,
            best: r.best,
            adapter_step: r.adapter_step,
            early_stopped: r.early_stopped,
            train_samples: r.data.train,
            eval_samples: r.data.held_out,
            too_long: r.data.too_long,
            adapter_gguf: r.adapter_gguf,
            peft_dir: r.peft_dir,
            tokens_per_s: r.tokens_per_s,
            peak_mib: r.peak_mib,
        }
    }
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
