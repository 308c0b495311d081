//! KTO's objective: the reference log-probs taken once from the starting
//! weights, each step's z₀ (mismatched pairs or the batch mean), and the
//! loss and metrics of each micro-batch.

use super::*;

/// KTO against the starting point: its log-probs once, and its LoRA
/// values kept for each step's mismatched pairs.
#[derive(Default)]
pub struct KtoObjective {
    pub(super) loss: KtoLoss,
    /// `[kto]` as given (hashed and recorded with the run).
    pub(super) kto: KtoConfig,
    pub(super) batch_size: usize,
    pub(super) accum: u64,
    pub(super) seed: u64,
    pub(super) max_len: usize,
    pub(super) rows: Vec<Tokenized>,
    pub(super) labels: Vec<bool>,
    /// log π_ref of each training row.
    pub(super) refs: Vec<f32>,
    /// The starting LoRA values (π_ref) for the mismatched pairs' pass.
    pub(super) reference: Vec<Tensor>,
    pub(super) held_out: EvalSet,
    pub(super) sample_sha256: Vec<String>,
    /// Rows of the current step, its z₀ when taken over the whole step,
    /// and the rows scored so far.
    pub(super) step_rows: usize,
    pub(super) step_z0: Option<f64>,
    pub(super) scored: Vec<Scored>,
}

impl KtoObjective {
    pub fn new(beta: f64, kto: &KtoConfig) -> Self {
        Self {
            loss: KtoLoss::new(beta, kto),
            kto: kto.clone(),
            ..Self::default()
        }
    }

    /// The step of these micro-batches (row indices): z₀ from the whole
    /// step's mismatched pairs, each micro-batch's loss divided by the
    /// step's rows, as one batch of all of them would be.
    pub(super) fn plan_step(
        &mut self,
        trainer: &Trainer,
        micro: Vec<Vec<usize>>,
    ) -> Result<StepData<Vec<usize>>, JobError> {
        let all: Vec<usize> = micro.concat();
        let chunk = micro.iter().map(Vec::len).max().unwrap_or(1);
        self.step_z0 = if self.loss.mismatched {
            let rows: Vec<&Tokenized> = all.iter().map(|&i| &self.rows[i]).collect();
            let kl_rows = mismatched(&rows, self.max_len);
            Some(mismatched_z0(
                trainer,
                &self.reference,
                &kl_rows,
                None,
                chunk,
            )?)
        } else {
            None
        };
        self.step_rows = all.len();
        let tokens = all.iter().map(|&i| self.rows[i].completion_len()).sum();
        let batches = micro.into_iter().filter(|ids| !ids.is_empty()).collect();
        Ok(StepData::Ready { batches, tokens })
    }

    /// The step's metrics; the loss is NaN when a micro-batch's was not
    /// finite and the rest were not run.
    pub(super) fn step_metrics(&self) -> KtoMetrics {
        let mut metrics = KtoMetrics::of(&self.scored);
        if self.scored.len() < self.step_rows {
            metrics.loss = f64::NAN;
        }
        metrics
    }
}

impl Objective for KtoObjective {
    type Item = KtoSample;
    type Batch = Vec<usize>;
    type Metrics = KtoScores;
    type EvalMetrics = KtoScores;
    type Error = JobError;

    fn kind(&self) -> &'static str {
        "kto"
    }

    fn check(&self, _: &TrainConfig, samples: &[KtoSample]) -> Result<(), JobError> {
        match samples
            .iter()
            .enumerate()
            .find_map(|(i, k)| k.problem().map(|p| (i, p)))
        {
            Some((i, problem)) => Err(JobError::Setup(format!("KTO sample {}: {problem}", i + 1))),
            None => Ok(()),
        }
    }

    fn item_sha256(item: &KtoSample) -> String {
        item.sha256()
    }

    fn prepare(
        &mut self,
        tokenizer: &Tokenizer,
        train: Vec<KtoSample>,
        held_out: Vec<KtoSample>,
        s: &TrainConfig,
    ) -> Result<DataSummary, JobError> {
        let max_len = s.max_seq_len as usize;
        let mut too_long = 0;
        let mut encode = |items: &[KtoSample]| -> Result<(Vec<Tokenized>, Vec<bool>), JobError> {
            let mut rows = Vec::new();
            let mut labels = Vec::new();
            for k in items {
                let t = tokenize(tokenizer, &k.as_sample())?;
                if t.ids.len() <= max_len {
                    rows.push(t);
                    labels.push(k.label);
                } else {
                    too_long += 1;
                }
            }
            Ok((rows, labels))
        };
        (self.rows, self.labels) = encode(&train)?;
        let (eval_rows, eval_labels) = encode(&held_out)?;
        if self.rows.is_empty() {
            return Err(JobError::Setup("no labelled replies to train on".into()));
        }
        self.sample_sha256 = train
            .iter()
            .chain(&held_out)
            .map(KtoSample::sha256)
            .collect();
        // KTO needs two replies per batch at least: with one, the mismatched
        // pair is the reply itself and z₀ its own reward.
        self.batch_size = s.batch_size.max(2) as usize;
        self.accum = u64::from(s.grad_accum.max(1));
        self.seed = u64::from(s.seed);
        self.max_len = max_len;
        self.held_out = EvalSet {
            kl_rows: mismatched(&eval_rows.iter().collect::<Vec<_>>(), max_len),
            rows: eval_rows,
            labels: eval_labels,
            ..EvalSet::default()
        };
        Ok(DataSummary {
            train: self.rows.len(),
            held_out: self.held_out.rows.len(),
            too_long,
        })
    }

    fn total_steps(&self, s: &TrainConfig) -> u64 {
        let n_batches = self.rows.len().div_ceil(self.batch_size) as u64;
        total_steps(s, n_batches.div_ceil(self.accum))
    }

    fn settings_sha256(&self, spec: &RunSpec) -> String {
        settings_sha256(&(
            &spec.settings,
            self.loss.beta,
            &self.kto,
            &spec.model_fingerprint,
            &self.sample_sha256,
            &spec.init_adapter,
        ))
    }

    fn manifest(&self, _: &RunSpec) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("beta".into(), self.loss.beta.into());
        m.insert("kto".into(), serde_json::json!(self.kto));
        m.insert("sample_sha256".into(), self.sample_sha256.clone().into());
        m
    }

    fn eval_before_on_resume(&self) -> bool {
        true
    }

    /// The reference: the starting point, its log-probs once, and its LoRA
    /// values kept for the mismatched pairs of each step.
    fn start(&mut self, trainer: &mut Trainer) -> Result<(), JobError> {
        let chunk = self.batch_size;
        self.reference = trainer.snapshot()?;
        self.refs = logp_values(trainer, &self.rows, chunk)?;
        self.held_out.refs = logp_values(trainer, &self.held_out.rows, chunk)?;
        if self.loss.mismatched {
            self.held_out.kl_refs = logp_values(trainer, &self.held_out.kl_rows, chunk)?;
        }
        Ok(())
    }

    fn step_batches(
        &mut self,
        trainer: &Trainer,
        step: u64,
        _: &AtomicBool,
    ) -> Result<StepData<Vec<usize>>, JobError> {
        let micro = step_micro_batches(
            self.rows.len(),
            self.batch_size,
            self.seed,
            step,
            self.accum,
        );
        self.plan_step(trainer, micro)
    }

    fn begin_pass(&mut self, _: u32) {
        self.scored.clear();
    }

    fn loss(
        &mut self,
        trainer: &Trainer,
        ids: &Vec<usize>,
        _: Micro,
    ) -> Result<MicroLoss, JobError> {
        let rows: Vec<&Tokenized> = ids.iter().map(|&i| &self.rows[i]).collect();
        let labels: Vec<bool> = ids.iter().map(|&i| self.labels[i]).collect();
        let refs: Vec<f32> = ids.iter().map(|&i| self.refs[i]).collect();
        let refs = Tensor::from_slice(&refs, refs.len(), &trainer.device)?;
        let r = (logps(trainer, &rows)? - refs)?;
        let z0 = match self.step_z0 {
            Some(z0) => z0,
            None => {
                let v = r.to_vec1::<f32>()?;
                clamp_at_zero(v.iter().map(|x| f64::from(*x)).sum::<f64>() / v.len() as f64)
            }
        };
        let (loss, part) = kto_loss(&self.loss, &r, &labels, z0, self.step_rows)?;
        self.scored.extend(part);
        Ok(MicroLoss {
            loss,
            positions: rows.iter().map(|t| t.ids.len()).sum(),
        })
    }

    fn pass_loss(&mut self, _complete: bool) -> f64 {
        self.step_metrics().loss
    }

    fn summarize(&mut self) -> StepOutcome<KtoScores> {
        let m = self.step_metrics();
        StepOutcome {
            loss: m.loss,
            curve: m.loss,
            metrics: m.scores(),
        }
    }

    fn evaluate(&mut self, trainer: &Trainer) -> Result<Option<(f64, KtoScores)>, JobError> {
        let m = evaluate(trainer, &self.loss, &self.held_out, self.batch_size)?;
        Ok(m.map(|m| (m.loss, m.scores())))
    }
}
