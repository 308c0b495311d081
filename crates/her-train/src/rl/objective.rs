//! RL as an objective of the one training loop: each step's micro-batches
//! are the replies the engine just sampled with the adapter being trained,
//! scored and given group advantages; the loss is the clipped
//! policy-gradient objective with its KL penalty; there is no held-out set.

use her_core::fsutil::IoError;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use candle_core::Tensor;
use tokenizers::Tokenizer;

use super::layout::LayoutMonitor;
use super::prompts::{self, RlPrompt};
use super::rewards::RewardWeights;
use super::rollout::{self, RolloutEngine};
use super::step::{self, Collected, RlMetrics, StepContext, Timings};
use super::update::{RlRows, RlUpdate};
use super::{
    Baseline, RlError, RlJob, RolloutRecord, baselines_path, read_baselines, read_rollouts,
};
use super::{rollout_sampling, rollouts_path};
use crate::run::{RunError, append_jsonl, truncate_jsonl};
use crate::settings::TrainConfig;
use crate::train_loop::trainer::{Trainer, settings_sha256};
use crate::train_loop::{DataSummary, Micro, MicroLoss, Objective, RunSpec, StepData, StepOutcome};
use her_core::generation::SamplingConfig;
use her_engine::Backend;

/// Seconds spent per phase and rollout tokens, over the steps this process ran.
#[derive(Debug, Clone, Copy, Default)]
pub struct PhaseTotals {
    pub swap_s: f64,
    pub rollout_s: f64,
    pub scoring_s: f64,
    pub update_s: f64,
    pub rollout_tokens: usize,
    pub engine_reloads: u32,
}

/// The step between its batches and its record.
struct Pending {
    /// 0-based.
    step: u64,
    collected: Collected,
    kept: HashSet<usize>,
    swap_s: f64,
    update: RlUpdate,
}

pub struct RlObjective<'j> {
    job: &'j RlJob,
    weights: RewardWeights,
    runtime: tokio::runtime::Runtime,
    sampling: SamplingConfig,
    prompts: Vec<RlPrompt>,
    prompt_ids: Vec<Vec<u32>>,
    /// The end-of-turn token the engine leaves out of a reply's ids.
    eos: Option<u32>,
    /// The LoRA tensors of the reference policy, in `trainer.params` order.
    reference: Vec<Tensor>,
    engine: Option<RolloutEngine>,
    baselines: HashMap<String, String>,
    monitor: LayoutMonitor,
    rollout_dir: PathBuf,
    pending: Option<Pending>,
    records: Vec<RolloutRecord>,
    totals: PhaseTotals,
}

impl<'j> RlObjective<'j> {
    pub fn new(job: &'j RlJob) -> Result<Self, RlError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RlError::Setup(format!("cannot start the async runtime: {e}")))?;
        Ok(Self {
            job,
            weights: RewardWeights::from_config(&job.rl),
            runtime,
            sampling: rollout_sampling(&job.sampling, &job.rl),
            prompts: Vec::new(),
            prompt_ids: Vec::new(),
            eos: None,
            reference: Vec::new(),
            engine: None,
            baselines: HashMap::new(),
            monitor: LayoutMonitor::new(job.rl.layout_window as usize),
            rollout_dir: job.spec.run.join("rollout"),
            pending: None,
            records: Vec::new(),
            totals: PhaseTotals::default(),
        })
    }

    /// The phase timings and engine reloads of the steps run so far.
    pub fn totals(&self) -> PhaseTotals {
        self.totals
    }

    fn judge(&self) -> Option<&dyn Backend> {
        self.job
            .judge
            .as_deref()
            .filter(|_| self.weights.judge > 0.0)
    }

    fn engine(&self) -> Result<&RolloutEngine, RlError> {
        self.engine
            .as_ref()
            .ok_or_else(|| RlError::Setup("the rollout engine is not running".into()))
    }

    /// The reference's reply to every prompt steps `from..` use that has
    /// none yet (the judge's baseline), appended to baselines.jsonl.
    fn fill_baselines(&mut self, from: u64, run_root: &std::path::Path) -> Result<(), RlError> {
        let (s, rl) = (&self.job.spec.settings, &self.job.rl);
        let used = (from..u64::from(rl.steps))
            .flat_map(|t| step::step_prompts(self.prompts.len(), s, rl, t))
            .collect::<std::collections::BTreeSet<_>>();
        let missing: Vec<usize> = used
            .into_iter()
            .filter(|&i| !self.baselines.contains_key(&self.prompts[i].id))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let engine = self.engine()?;
        let (prompts, sampling, job) = (&self.prompts, &self.sampling, self.job);
        let path = baselines_path(run_root);
        let fresh = self.runtime.block_on(async {
            if let Some(adapter) = &job.spec.init_adapter {
                engine.engine()?.load_adapter(adapter.clone(), 1.0).await?;
            }
            let mut fresh = Vec::new();
            for i in missing {
                let (mut replies, _) =
                    rollout::sample(engine.engine()?, &prompts[i].render(), sampling, &[s.seed])
                        .await?;
                let reply = format!("{}{}", her_core::format::PREFILL, replies.remove(0).reply);
                let line = Baseline {
                    prompt_id: prompts[i].id.clone(),
                    reply: reply.clone(),
                };
                append_jsonl(&path, &line)?;
                fresh.push((prompts[i].id.clone(), reply));
            }
            Ok::<_, RlError>(fresh)
        })?;
        self.baselines.extend(fresh);
        Ok(())
    }
}

impl Objective for RlObjective<'_> {
    type Item = RlPrompt;
    type Batch = RlRows;
    type Metrics = RlMetrics;
    type EvalMetrics = ();
    type Error = RlError;

    fn kind(&self) -> &'static str {
        "rl"
    }

    fn check(&self, _: &TrainConfig, _: &[RlPrompt]) -> Result<(), RlError> {
        if !self.weights.any() {
            return Err(RlError::Setup(
                "every reward weight in [rl] is 0: switch on at least one (reward_judge, reward_format, …)".into(),
            ));
        }
        if self.weights.judge > 0.0 && self.job.judge.is_none() {
            return Err(RlError::Setup(
                "rl.reward_judge is on but no judge model was given".into(),
            ));
        }
        Ok(())
    }

    fn item_sha256(item: &RlPrompt) -> String {
        item.id.clone()
    }

    /// RL learns from its own rollouts: nothing is held out.
    fn held_out_fraction(&self, _: &TrainConfig) -> f64 {
        0.0
    }

    fn prepare(
        &mut self,
        tokenizer: &Tokenizer,
        train: Vec<RlPrompt>,
        _: Vec<RlPrompt>,
        _: &TrainConfig,
    ) -> Result<DataSummary, RlError> {
        self.prompts = prompts::dedup(train);
        if self.prompts.is_empty() {
            return Err(RlError::Setup("no prompts to train on".into()));
        }
        self.prompt_ids = self
            .prompts
            .iter()
            .map(|p| crate::tokenizer::encode(tokenizer, &p.render()))
            .collect::<Result<Vec<_>, _>>()?;
        self.eos = crate::tokenizer::encode(tokenizer, "<|im_end|>")
            .ok()
            .filter(|ids| ids.len() == 1)
            .map(|ids| ids[0]);
        Ok(DataSummary {
            train: self.prompts.len(),
            ..DataSummary::default()
        })
    }

    fn total_steps(&self, _: &TrainConfig) -> u64 {
        u64::from(self.job.rl.steps)
    }

    fn passes(&self) -> u32 {
        self.job.rl.updates_per_batch.max(1)
    }

    fn settings_sha256(&self, spec: &RunSpec) -> String {
        let prompt_ids: Vec<&str> = self.prompts.iter().map(|p| p.id.as_str()).collect();
        settings_sha256(&(
            &spec.settings,
            &self.job.rl,
            &spec.model_fingerprint,
            &prompt_ids,
            &spec.init_adapter,
        ))
    }

    fn manifest(&self, _: &RunSpec) -> serde_json::Map<String, serde_json::Value> {
        let judge = self.job.judge.as_ref().map(|j| {
            let info = j.model_info();
            serde_json::json!({"model": info.path, "name": info.name, "fingerprint": info.fingerprint})
        });
        let prompt_ids: Vec<&str> = self.prompts.iter().map(|p| p.id.as_str()).collect();
        let mut m = serde_json::Map::new();
        m.insert("judge".into(), serde_json::json!(judge));
        m.insert("rl".into(), serde_json::json!(self.job.rl));
        m.insert("sources".into(), serde_json::json!(self.job.sources));
        m.insert("prompt_ids".into(), serde_json::json!(prompt_ids));
        m
    }

    /// The prompts into the run folder, log-probs at the sampling
    /// temperature, and the reference: the LoRA as it starts (zero B = the
    /// base itself).
    fn start(&mut self, trainer: &mut Trainer) -> Result<(), RlError> {
        let path = trainer.run.root.join("prompts.jsonl");
        let lines: String = self
            .prompts
            .iter()
            .filter_map(|p| serde_json::to_string(p).ok())
            .map(|l| l + "\n")
            .collect();
        her_core::fsutil::write_atomic(&path, lines.as_bytes(), true)
            .map_err(|cause| RunError::Io(IoError::new("write", path.clone(), cause)))?;
        // Log-probs of the distribution the engine samples: softmax(logits / T).
        trainer
            .model
            .set_logit_temperature(self.job.rl.temperature)?;
        self.reference = trainer.snapshot()?;
        Ok(())
    }

    /// The rollout log cut to `step`, the engines, the reference's replies
    /// the judge compares with, and the layout monitor replayed.
    fn resume(&mut self, trainer: &Trainer, step: u64) -> Result<(), RlError> {
        let root = trainer.run.root.clone();
        truncate_jsonl(&rollouts_path(&root), step)?;
        let rl = &self.job.rl;
        self.engine = Some(RolloutEngine::start(
            &self.job.engine,
            rl.group_size,
            rl.max_new_tokens,
            rl.reload_every,
        )?);
        self.baselines = read_baselines(&baselines_path(&root));
        if self.judge().is_some() {
            self.fill_baselines(step, &root)?;
        }
        for record in read_rollouts(&rollouts_path(&root)) {
            self.monitor.push(record.layout);
        }
        std::fs::create_dir_all(&self.rollout_dir)
            .map_err(|cause| RunError::Io(IoError::new("create", &self.rollout_dir, cause)))?;
        Ok(())
    }

    /// The adapter as it is now into the engine, the group's replies,
    /// their rewards and advantages, and the rows the update learns from.
    fn step_batches(
        &mut self,
        trainer: &Trainer,
        step: u64,
        stop: &AtomicBool,
    ) -> Result<StepData<RlRows>, RlError> {
        // A new file each step: the engine keys loaded adapters by path.
        let swap_began = Instant::now();
        let adapter = self.rollout_dir.join(format!("adapter-{step:06}.gguf"));
        crate::lora::write_lora_gguf(
            &adapter,
            trainer.model.shape.arch.as_str(),
            &trainer.spec,
            &trainer.lora,
        )
        .map_err(crate::error::JobError::from)?;
        let Some(engine) = self.engine.as_mut() else {
            return Err(RlError::Setup("the rollout engine is not running".into()));
        };
        self.runtime.block_on(engine.swap_to(&adapter))?;
        let swap_s = swap_began.elapsed().as_secs_f64();
        let engine = self.engine()?;
        let cx = StepContext {
            job: self.job,
            prompts: &self.prompts,
            prompt_ids: &self.prompt_ids,
            eos: self.eos,
            weights: self.weights,
            sampling: &self.sampling,
            baselines: &self.baselines,
            judge: self.judge(),
        };
        let collecting = step::collect(&cx, engine, &self.monitor, step, stop);
        let Some(collected) = self.runtime.block_on(collecting)? else {
            return Ok(StepData::Stopped);
        };
        let began = Instant::now();
        let rows = step::update_rows(&cx, &collected);
        let kept = rows.iter().map(|(_, _, i)| *i).collect();
        let batch_size = self.job.spec.settings.batch_size as usize;
        let (update, batches) = RlUpdate::new(trainer, &self.reference, &rows, batch_size, began)?;
        let tokens = rows.iter().map(|(t, _, _)| t.completion_len()).sum();
        self.pending = Some(Pending {
            step,
            collected,
            kept,
            swap_s,
            update,
        });
        Ok(StepData::Ready { batches, tokens })
    }

    fn begin_pass(&mut self, pass: u32) {
        if let Some(p) = &mut self.pending {
            p.update.begin_pass(pass);
        }
    }

    fn loss(&mut self, trainer: &Trainer, rows: &RlRows, at: Micro) -> Result<MicroLoss, RlError> {
        let rl = &self.job.rl;
        match &mut self.pending {
            Some(p) => p.update.loss(trainer, rl, rows, at.index),
            None => Err(RlError::Setup("an RL step has no rollouts".into())),
        }
    }

    fn pass_loss(&mut self, complete: bool) -> f64 {
        let rl = &self.job.rl;
        self.pending
            .as_mut()
            .map_or(f64::NAN, |p| p.update.pass_loss(rl, complete))
    }

    fn summarize(&mut self) -> StepOutcome<RlMetrics> {
        let Some(p) = self.pending.take() else {
            // Unreachable: the loop summarizes only steps it got batches for.
            return StepOutcome {
                loss: f64::NAN,
                curve: f64::NAN,
                metrics: RlMetrics::default(),
            };
        };
        let timings = Timings {
            swap_s: p.swap_s,
            update_s: p.update.began.elapsed().as_secs_f64(),
        };
        let cx = StepContext {
            job: self.job,
            prompts: &self.prompts,
            prompt_ids: &self.prompt_ids,
            eos: self.eos,
            weights: self.weights,
            sampling: &self.sampling,
            baselines: &self.baselines,
            judge: None,
        };
        let stats = p.update.stats();
        let (records, metrics, loss) = step::record(
            &cx,
            &mut self.monitor,
            p.collected,
            &p.kept,
            stats,
            timings,
            p.step,
        );
        let t = &mut self.totals;
        t.swap_s += metrics.swap_s;
        t.rollout_s += metrics.rollout_s;
        t.scoring_s += metrics.scoring_s;
        t.update_s += metrics.update_s;
        t.rollout_tokens += metrics.rollout_tokens;
        self.records = records;
        StepOutcome {
            loss,
            curve: metrics.reward_mean,
            metrics,
        }
    }

    /// The step's rollouts into rollouts.jsonl (ahead of its metrics line).
    fn after_step(&mut self, trainer: &Trainer, _: u64) -> Result<(), RlError> {
        let path = rollouts_path(&trainer.run.root);
        for record in self.records.drain(..) {
            append_jsonl(&path, &record)?;
        }
        Ok(())
    }

    fn evaluate(&mut self, _: &Trainer) -> Result<Option<(f64, ())>, RlError> {
        Ok(None)
    }

    /// The engine stopped and the scratch adapters removed.
    fn finish(&mut self, _: &Trainer) -> Result<(), RlError> {
        if let Some(engine) = self.engine.take() {
            self.totals.engine_reloads = engine.reloads;
        }
        let _ = std::fs::remove_dir_all(&self.rollout_dir);
        Ok(())
    }
}
