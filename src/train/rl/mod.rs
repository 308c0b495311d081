//! `her train rl`: online reward-weighted RL in the GRPO family.
//!
//! Each step: the llama.cpp engine samples a group of replies per prompt
//! with the adapter being trained; the replies are scored (judge against
//! the reference's reply, format linter, layout diversity, a text rule, the
//! user's own stars); advantages are normalised within each group; the
//! LoRA takes a clipped policy-gradient step with a KL penalty to the
//! reference; the new adapter is swapped into the engine. Every rollout and
//! its reward parts go to `rollouts.jsonl`, so a run can be audited.

pub mod human;
pub mod layout;
pub mod objective;
pub mod prompts;
pub mod rewards;
pub mod rollout;
mod step;
mod update;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use super::error::JobError;
use super::error::TrainError;
use super::run::{RunDir, RunError, append_jsonl, truncate_jsonl};
use super::sft::DataSource;
use super::train_loop::trainer::Trainer;
use crate::config::{RlConfig, SamplingConfig, TrainConfig};
use crate::engine::{Backend, EngineError, LocalEngineOptions};
use crate::fsutil::read::{self, Kind};
use crate::judge::JudgeError;
use layout::LayoutMonitor;
use prompts::RlPrompt;
use rewards::{RewardParts, RewardWeights};
use rollout::RolloutEngine;
pub use step::{StepMetrics, rollout_sampling};

#[derive(Debug, thiserror::Error)]
pub enum RlError {
    #[error(transparent)]
    Train(#[from] JobError),
    #[error("the rollout engine failed: {0}")]
    Engine(EngineError),
    #[error(transparent)]
    Judge(#[from] JudgeError),
    #[error("{0}")]
    Setup(String),
}

// By hand, not `#[from]`: the message already shows the cause, so it must
// not also be the `source()` (an error chain would print it twice).
impl From<EngineError> for RlError {
    fn from(cause: EngineError) -> Self {
        Self::Engine(cause)
    }
}

impl From<candle_core::Error> for RlError {
    fn from(e: candle_core::Error) -> Self {
        Self::Train(e.into())
    }
}

impl From<TrainError> for RlError {
    fn from(e: TrainError) -> Self {
        Self::Train(e.into())
    }
}

impl From<RunError> for RlError {
    fn from(e: RunError) -> Self {
        Self::Train(e.into())
    }
}

impl From<super::tokenizer::TokenizerError> for RlError {
    fn from(e: super::tokenizer::TokenizerError) -> Self {
        Self::Train(e.into())
    }
}

pub struct RlJob {
    /// The policy's base GGUF (the chat model).
    pub model: PathBuf,
    pub model_fingerprint: String,
    /// How the rollout engine loads `model`.
    pub engine: LocalEngineOptions,
    /// The judge (`None`: the judge reward is off): its own engine, never
    /// the rollout engine, whose adapter changes every step.
    pub judge: Option<Box<dyn crate::engine::Backend>>,
    pub settings: TrainConfig,
    pub rl: RlConfig,
    /// Sampling of the chat (stop strings, penalties); temperature, length
    /// and seed come from `rl`.
    pub sampling: SamplingConfig,
    pub run: PathBuf,
    pub resume: bool,
    /// Start from (and keep as the reference) this adapter instead of the base.
    pub init_adapter: Option<PathBuf>,
    pub sources: Vec<DataSource>,
}

/// One rollout as `rollouts.jsonl` records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutRecord {
    pub step: u64,
    pub prompt_id: String,
    pub member: usize,
    pub seed: u32,
    /// Raw, prefill included.
    pub reply: String,
    pub finish: crate::engine::FinishReason,
    pub tokens: usize,
    pub layout: String,
    pub parts: RewardParts,
    /// The judge's verdicts with the rollout as candidate 1, then as
    /// candidate 2 (a position-biased judge shows here as ties).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_orders: Option<[crate::prefs::Verdict; 2]>,
    pub reward: f64,
    pub advantage: f64,
    /// Left out of the update: longer than `train.max_seq_len`.
    #[serde(default)]
    pub too_long: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RlReport {
    pub interrupted: bool,
    pub steps: u64,
    pub prompts: usize,
    /// Mean reward of every step.
    pub reward_curve: Vec<f64>,
    pub last: Option<StepMetrics>,
    /// Seconds spent per phase over the whole run.
    pub swap_s: f64,
    pub rollout_s: f64,
    pub scoring_s: f64,
    pub update_s: f64,
    pub rollout_tokens: usize,
    pub engine_reloads: u32,
    pub adapter_gguf: Option<PathBuf>,
    pub peft_dir: Option<PathBuf>,
}

impl RlReport {
    pub fn rollout_tokens_per_s(&self) -> f64 {
        self.rollout_tokens as f64 / self.rollout_s.max(1e-9)
    }
}

fn rollouts_path(run: &RunDir) -> PathBuf {
    run.root.join("rollouts.jsonl")
}

fn baselines_path(run: &RunDir) -> PathBuf {
    run.root.join("baselines.jsonl")
}

#[derive(Serialize, Deserialize)]
struct Baseline {
    prompt_id: String,
    reply: String,
}

pub fn run(
    job: &RlJob,
    prompts: Vec<RlPrompt>,
    stop: &AtomicBool,
    on_step: &mut dyn FnMut(&StepMetrics),
) -> Result<RlReport, RlError> {
    let (s, rl) = (&job.settings, &job.rl);
    let weights = RewardWeights::from_config(rl);
    if !weights.any() {
        return Err(RlError::Setup(
            "every reward weight in [rl] is 0: switch on at least one (reward_judge, reward_format, …)".into(),
        ));
    }
    if weights.judge > 0.0 && job.judge.is_none() {
        return Err(RlError::Setup(
            "rl.reward_judge is on but no judge model was given".into(),
        ));
    }
    let prompts = prompts::dedup(prompts);
    if prompts.is_empty() {
        return Err(RlError::Setup("no prompts to train on".into()));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RlError::Setup(format!("cannot start the async runtime: {e}")))?;
    let tokenizer = super::tokenizer::from_gguf(&job.model)?;
    let prompt_ids = prompts
        .iter()
        .map(|p| super::tokenizer::encode(&tokenizer, &p.render()))
        .collect::<Result<Vec<_>, _>>()?;
    // The end-of-turn token the engine leaves out of a reply's ids.
    let eos = super::tokenizer::encode(&tokenizer, "<|im_end|>")
        .ok()
        .filter(|ids| ids.len() == 1)
        .map(|ids| ids[0]);

    // 1. The run folder: settings, prompts, and what a resume must match.
    let updates_per_step = u64::from(rl.updates_per_batch.max(1));
    let total = u64::from(rl.steps);
    let prompt_hashes: Vec<&str> = prompts.iter().map(|p| p.id.as_str()).collect();
    let settings_sha256 = super::train_loop::trainer::settings_sha256(&(
        s,
        rl,
        &job.model_fingerprint,
        &prompt_hashes,
        &job.init_adapter,
    ));
    let run = RunDir::create(&job.run)?;
    run.write_manifest(&serde_json::json!({
        "kind": "rl",
        "model": job.model,
        "model_fingerprint": job.model_fingerprint,
        "init_adapter": job.init_adapter,
        "judge": job.judge.as_ref().map(|j| {
            let info = j.model_info();
            serde_json::json!({"model": info.path, "name": info.name, "fingerprint": info.fingerprint})
        }),
        "settings": s,
        "rl": rl,
        "sources": job.sources,
        "prompt_ids": prompt_hashes,
        "total_steps": total,
    }))?;
    let prompts_file: String = prompts
        .iter()
        .filter_map(|p| serde_json::to_string(p).ok())
        .map(|l| l + "\n")
        .collect();
    crate::fsutil::write_atomic(
        &run.root.join("prompts.jsonl"),
        prompts_file.as_bytes(),
        true,
    )
    .map_err(|cause| RunError::Io {
        action: "write",
        path: run.root.join("prompts.jsonl"),
        cause,
    })?;
    let mut trainer = Trainer::new(
        &job.model,
        s,
        job.init_adapter.as_deref(),
        run,
        total * updates_per_step,
        settings_sha256,
    )?;
    // Log-probs of the distribution the engine samples: softmax(logits / T).
    trainer.model.set_logit_temperature(rl.temperature)?;
    // The reference: the LoRA as it starts (zero B = the base itself).
    let reference = trainer.snapshot()?;
    let (mut step, mut curve) = (0u64, Vec::new());
    if job.resume
        && let Some((at, saved)) = trainer.restore()?
    {
        (step, curve) = (at, saved);
    }
    truncate_jsonl(&rollouts_path(&trainer.run), step)?;

    // 2. Engines, and the reference's reply to every prompt the run will use.
    let mut engine = RolloutEngine::start(
        &job.engine,
        rl.group_size,
        rl.max_new_tokens,
        rl.reload_every,
    )?;
    let judge = job.judge.as_deref().filter(|_| weights.judge > 0.0);
    let sampling = step::rollout_sampling(&job.sampling, rl);
    let mut baselines = read_baselines(&baselines_path(&trainer.run));
    if judge.is_some() {
        let used = (step..total)
            .flat_map(|t| step::step_prompts(prompts.len(), s, rl, t))
            .collect::<std::collections::BTreeSet<_>>();
        let missing: Vec<usize> = used
            .into_iter()
            .filter(|&i| !baselines.contains_key(&prompts[i].id))
            .collect();
        if !missing.is_empty() {
            runtime.block_on(async {
                if let Some(path) = &job.init_adapter {
                    engine.engine()?.load_adapter(path.clone(), 1.0).await?;
                }
                for i in missing {
                    let (mut replies, _) = rollout::sample(
                        engine.engine()?,
                        &prompts[i].render(),
                        &sampling,
                        &[s.seed],
                    )
                    .await?;
                    let reply = format!("{}{}", crate::format::PREFILL, replies.remove(0).reply);
                    let line = Baseline {
                        prompt_id: prompts[i].id.clone(),
                        reply: reply.clone(),
                    };
                    append_jsonl(&baselines_path(&trainer.run), &line)?;
                    baselines.insert(prompts[i].id.clone(), reply);
                }
                Ok::<(), RlError>(())
            })?;
        }
    }
    let mut monitor = LayoutMonitor::new(rl.layout_window as usize);
    for record in read_rollouts(&rollouts_path(&trainer.run)) {
        monitor.push(record.layout);
    }

    // 3. The steps.
    let mut report = RlReport {
        interrupted: false,
        steps: step,
        prompts: prompts.len(),
        reward_curve: curve.clone(),
        last: None,
        swap_s: 0.0,
        rollout_s: 0.0,
        scoring_s: 0.0,
        update_s: 0.0,
        rollout_tokens: 0,
        engine_reloads: 0,
        adapter_gguf: None,
        peft_dir: None,
    };
    let context = step::StepContext {
        job,
        prompts: &prompts,
        prompt_ids: &prompt_ids,
        eos,
        weights,
        sampling: &sampling,
        baselines: &baselines,
        judge,
        reference: &reference,
    };
    let rollout_dir = trainer.run.root.join("rollout");
    std::fs::create_dir_all(&rollout_dir).map_err(|cause| RunError::Io {
        action: "create",
        path: rollout_dir.clone(),
        cause,
    })?;
    while step < total {
        // The adapter as it is now, into the engine (a new file each step:
        // the engine keys loaded adapters by path).
        let swap_began = std::time::Instant::now();
        let adapter = rollout_dir.join(format!("adapter-{step:06}.gguf"));
        super::lora::write_lora_gguf(
            &adapter,
            trainer.model.shape.arch.as_str(),
            &trainer.spec,
            &trainer.lora,
        )?;
        runtime.block_on(engine.swap_to(&adapter))?;
        let swap_s = swap_began.elapsed().as_secs_f64();
        let Some(outcome) = runtime.block_on(step::run_step(
            &context,
            &mut trainer,
            &engine,
            &mut monitor,
            step,
            stop,
        ))?
        else {
            // Stopped while waiting for the user's ratings: nothing of this step is kept.
            report.interrupted = true;
            trainer.save_checkpoint(step, &curve)?;
            break;
        };
        step += 1;
        for record in &outcome.records {
            append_jsonl(&rollouts_path(&trainer.run), record)?;
        }
        let mut metrics = outcome.metrics;
        metrics.swap_s = swap_s;
        trainer.run.log(&metrics)?;
        curve.push(metrics.reward_mean);
        report.swap_s += metrics.swap_s;
        report.rollout_s += metrics.rollout_s;
        report.scoring_s += metrics.scoring_s;
        report.update_s += metrics.update_s;
        report.rollout_tokens += metrics.rollout_tokens;
        on_step(&metrics);
        report.last = Some(metrics);
        if stop.load(Ordering::SeqCst) {
            trainer.save_checkpoint(step, &curve)?;
            report.interrupted = true;
            break;
        }
        if s.checkpoint_every > 0 && step % u64::from(s.checkpoint_every) == 0 && step < total {
            trainer.save_checkpoint(step, &curve)?;
        }
    }
    report.steps = step;
    report.reward_curve = curve.clone();
    report.engine_reloads = engine.reloads;
    drop(engine);
    let _ = std::fs::remove_dir_all(&rollout_dir);
    if report.interrupted {
        return Ok(report);
    }
    trainer.save_checkpoint(step, &curve)?;
    let (gguf, peft) = trainer.export(&job.model)?;
    report.adapter_gguf = Some(gguf);
    report.peft_dir = Some(peft);
    Ok(report)
}

fn read_baselines(path: &Path) -> HashMap<String, String> {
    read::jsonl_records::<Baseline>(path, Kind::RunRecord)
        .into_iter()
        .map(|b| (b.prompt_id, b.reply))
        .collect()
}

/// The rollouts of a run folder (a cut last line is skipped).
pub fn read_rollouts(path: &Path) -> Vec<RolloutRecord> {
    read::jsonl_records(path, Kind::RunRecord)
}
