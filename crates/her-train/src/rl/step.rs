//! One RL step's rollout side: sample a group of replies per prompt, score
//! them, turn the rewards into group advantages and the kept replies into
//! rows for the update; then the step's record.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::human::{self, Answer, Ask, AskGroup};
use super::layout::{LayoutMonitor, layout_of};
use super::loss::group_advantages;
use super::prompts::RlPrompt;
use super::rewards::{self, RewardParts, RewardWeights};
use super::rollout::{self, RolloutEngine, Sampled, rollout_seed};
use super::update::UpdateStats;
use super::{RlError, RlJob, RolloutRecord};
use crate::data::{Tokenized, step_indices};
use crate::settings::{RlConfig, TrainConfig};
use crate::train_loop::StepLine;
use her_core::format::{Ending, PREFILL};
use her_core::generation::SamplingConfig;
use her_core::judge::{JudgeCase, judge_sampling};
use her_core::prefs::Role;
use her_engine::dialogue::judge::judge_pair;
use her_engine::{Backend, FinishReason};

/// What every step shares.
pub(super) struct StepContext<'a> {
    pub job: &'a RlJob,
    pub prompts: &'a [RlPrompt],
    pub prompt_ids: &'a [Vec<u32>],
    pub eos: Option<u32>,
    pub weights: RewardWeights,
    pub sampling: &'a SamplingConfig,
    pub baselines: &'a std::collections::HashMap<String, String>,
    pub judge: Option<&'a dyn Backend>,
}

/// One line of `metrics.jsonl` of an RL run: the common fields (its loss
/// is the objective, −surrogate + β·KL per token, before the update), then
/// RL's own.
pub type StepMetrics = StepLine<RlMetrics>;

/// RL's own fields of a step line.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RlMetrics {
    pub reward_mean: f64,
    pub reward_std: f64,
    /// Mean of each reward part that is on.
    pub parts: RewardParts,
    /// Mean per-token KL to the reference (k3 estimate) of the sampling policy.
    pub kl: f64,
    /// Share of completion tokens whose ratio was clipped.
    pub clip_fraction: f64,
    /// Over the monitor's window, in bits.
    pub layout_entropy: f64,
    pub dominant_layout: String,
    pub dominant_share: f64,
    /// The dominant layout is above `rl.layout_warn_share`.
    pub layout_warning: bool,
    /// Share of this step's replies with at least one format error.
    pub format_error_rate: f64,
    /// Groups whose rewards were all equal (they teach nothing).
    pub flat_groups: usize,
    /// Replies left out of the update (too long for `train.max_seq_len`).
    pub too_long: usize,
    /// Writing the adapter and swapping it into the engine, before the rollouts.
    #[serde(default)]
    pub swap_s: f64,
    pub rollout_s: f64,
    pub scoring_s: f64,
    pub update_s: f64,
    pub rollout_tokens: usize,
    pub rollout_tokens_per_s: f64,
}

/// The chat's sampling with RL's temperature and length, and without
/// truncation (top-k, top-p, min-p) or penalties: the policy gradient
/// assumes the replies were drawn from the policy's own distribution.
pub fn rollout_sampling(base: &SamplingConfig, rl: &RlConfig) -> SamplingConfig {
    SamplingConfig {
        temperature: rl.temperature as f32,
        max_new_tokens: rl.max_new_tokens,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        repeat_penalty: 1.0,
        ..base.clone()
    }
}

/// A reply and what the update needs of it.
struct Scored {
    prompt: usize,
    member: usize,
    sampled: Sampled,
    raw: String,
    layout: String,
    parts: RewardParts,
    /// The judge's answer in the given order and with the candidates swapped.
    judge_orders: Option<[her_core::prefs::Verdict; 2]>,
    format_errors: usize,
    reward: f64,
    advantage: f64,
}

fn ending(reason: FinishReason) -> Ending {
    match reason {
        FinishReason::EndOfGeneration | FinishReason::StopString => Ending::Natural,
        _ => Ending::CutOff,
    }
}

/// The prompts of step `step`: `train.grad_accum` rounds of
/// `rl.prompts_per_step` prompts in the seeded epoch order, all sampled by
/// the same policy and accumulated into one update (TRL's GRPO also
/// generates for `gradient_accumulation_steps` micro-batches per update).
pub(super) fn step_prompts(
    n: usize,
    settings: &TrainConfig,
    rl: &RlConfig,
    step: u64,
) -> Vec<usize> {
    let rounds = u64::from(settings.grad_accum.max(1));
    (0..rounds)
        .flat_map(|round| {
            step_indices(
                n,
                rl.prompts_per_step as usize,
                u64::from(settings.seed),
                step * rounds + round,
            )
        })
        .collect()
}

/// A step's replies, scored, with their group advantages.
pub(super) struct Collected {
    scored: Vec<Scored>,
    flat_groups: usize,
    rollout_s: f64,
    rollout_tokens: usize,
    scoring_s: f64,
}

/// Samples and scores the replies of step `step` with the engine's current
/// adapter; `None` when stopped while waiting for the user's ratings.
pub(super) async fn collect(
    cx: &StepContext<'_>,
    engine: &RolloutEngine,
    monitor: &LayoutMonitor,
    step: u64,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<Option<Collected>, RlError> {
    let (s, rl) = (&cx.job.spec.settings, &cx.job.rl);
    let chosen = step_prompts(cx.prompts.len(), s, rl, step);
    // 1. Rollouts on the engine, with the current adapter.
    let began = Instant::now();
    let mut scored = Vec::new();
    let group = rl.group_size as usize;
    for (k, &p) in chosen.iter().enumerate() {
        // Seeds by round too: a prompt drawn twice in one step (rounds
        // across an epoch's end) gets other replies the second time.
        let round = k / (rl.prompts_per_step as usize).max(1);
        let seeds: Vec<u32> = (0..group)
            .map(|m| rollout_seed(s.seed, step, p, m + round * group))
            .collect();
        let (replies, _) = rollout::sample(
            engine.engine()?,
            &cx.prompts[p].render(),
            cx.sampling,
            &seeds,
        )
        .await?;
        for (member, sampled) in replies.into_iter().enumerate() {
            let raw = format!("{PREFILL}{}", sampled.reply);
            scored.push(Scored {
                prompt: p,
                member,
                layout: layout_of(&raw, ending(sampled.reason)),
                raw,
                sampled,
                parts: RewardParts::default(),
                judge_orders: None,
                format_errors: 0,
                reward: 0.0,
                advantage: 0.0,
            });
        }
    }
    let rollout_s = began.elapsed().as_secs_f64();
    let rollout_tokens: usize = scored.iter().map(|r| r.sampled.tokens.len()).sum();

    // 2. Rewards.
    let began = Instant::now();
    let mut window = monitor.clone();
    for r in &scored {
        window.push(r.layout.clone());
    }
    let w = cx.weights;
    for r in &mut scored {
        let prompt = &cx.prompts[r.prompt];
        let end = ending(r.sampled.reason);
        let (format, errors) = rewards::format_reward(&r.raw, end, &prompt.character);
        r.format_errors = errors;
        r.parts.format = (w.format > 0.0).then_some(format);
        r.parts.layout = (w.layout > 0.0).then(|| rewards::layout_reward(window.share(&r.layout)));
        r.parts.contains =
            (w.contains > 0.0).then(|| rewards::contains_reward(&r.raw, &rl.contains_text));
        if let (Some(judge), true) = (cx.judge, w.judge > 0.0) {
            let baseline = cx.baselines.get(&prompt.id).ok_or_else(|| {
                RlError::Setup(format!("no reference reply for prompt {}", prompt.id))
            })?;
            let case = JudgeCase {
                character: &prompt.character,
                context: &prompt.context,
                cand_1: &r.raw,
                cand_2: baseline,
            };
            let verdict = judge_pair(judge, &case, &judge_sampling(cx.sampling, true)).await?;
            r.parts.judge = Some(rewards::judge_reward(verdict.combined));
            r.judge_orders = Some([verdict.forward.better, verdict.reverse.better]);
        }
    }
    if w.human > 0.0 {
        let Some(answer) = ask_the_user(cx, &scored, step, stop) else {
            return Ok(None);
        };
        let mut k = 0;
        for (g, _) in chosen.iter().enumerate() {
            for m in 0..rl.group_size as usize {
                scored[k].parts.human = answer
                    .stars
                    .get(g)
                    .and_then(|stars| stars.get(m))
                    .map(|&n| rewards::human_reward(n));
                k += 1;
            }
        }
    }
    for r in &mut scored {
        r.reward = r.parts.total(&w);
    }
    let mut flat_groups = 0;
    for group in scored.chunks_mut(rl.group_size as usize) {
        let rewards: Vec<f64> = group.iter().map(|r| r.reward).collect();
        let advantages = group_advantages(&rewards, rl.scale_advantages);
        if advantages.iter().all(|a| *a == 0.0) {
            flat_groups += 1;
        }
        for (r, a) in group.iter_mut().zip(advantages) {
            r.advantage = a;
        }
    }
    let scoring_s = began.elapsed().as_secs_f64();

    Ok(Some(Collected {
        scored,
        flat_groups,
        rollout_s,
        rollout_tokens,
        scoring_s,
    }))
}

/// The kept replies as rows for the update: (tokens, advantage, index);
/// a reply longer than `train.max_seq_len` is left out.
pub(super) fn update_rows(cx: &StepContext<'_>, c: &Collected) -> Vec<(Tokenized, f64, usize)> {
    let s = &cx.job.spec.settings;
    c.scored
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let mut ids = cx.prompt_ids[r.prompt].clone();
            let completion_start = ids.len();
            ids.extend(r.sampled.tokens.iter().map(|&t| t as u32));
            if r.sampled.reason == FinishReason::EndOfGeneration
                && let Some(eos) = cx.eos
            {
                ids.push(eos);
            }
            let fits = ids.len() <= s.max_seq_len as usize && ids.len() > completion_start;
            fits.then_some((Tokenized::new(ids, completion_start), r.advantage, i))
        })
        .collect()
}

/// Timings of a step's phases, in seconds.
pub(super) struct Timings {
    pub swap_s: f64,
    pub update_s: f64,
}

/// The step's record: its rollouts for rollouts.jsonl and its metrics; the
/// layout monitor takes the step's replies.
pub(super) fn record(
    cx: &StepContext<'_>,
    monitor: &mut LayoutMonitor,
    c: Collected,
    kept: &std::collections::HashSet<usize>,
    update: UpdateStats,
    timings: Timings,
    step: u64,
) -> (Vec<RolloutRecord>, RlMetrics, f64) {
    let rl = &cx.job.rl;
    let Collected {
        scored,
        flat_groups,
        rollout_s,
        rollout_tokens,
        scoring_s,
    } = c;
    let too_long = scored.len() - kept.len();
    for r in &scored {
        monitor.push(r.layout.clone());
    }
    let (dominant_layout, dominant_share) = monitor.dominant().unwrap_or_default();
    let rewards_all: Vec<f64> = scored.iter().map(|r| r.reward).collect();
    let (mean, std) = mean_std(&rewards_all);
    let part_mean = |f: fn(&RewardParts) -> Option<f64>| -> Option<f64> {
        let v: Vec<f64> = scored.iter().filter_map(|r| f(&r.parts)).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let n = scored.len().max(1) as f64;
    let metrics = RlMetrics {
        reward_mean: mean,
        reward_std: std,
        parts: RewardParts {
            judge: part_mean(|p| p.judge),
            format: part_mean(|p| p.format),
            layout: part_mean(|p| p.layout),
            contains: part_mean(|p| p.contains),
            human: part_mean(|p| p.human),
        },
        kl: update.kl,
        clip_fraction: update.clip_fraction,
        layout_entropy: monitor.entropy_bits(),
        layout_warning: dominant_share > rl.layout_warn_share
            && monitor.len() >= rl.group_size as usize,
        dominant_layout,
        dominant_share,
        format_error_rate: scored.iter().filter(|r| r.format_errors > 0).count() as f64 / n,
        flat_groups,
        too_long,
        swap_s: timings.swap_s,
        rollout_s,
        scoring_s,
        update_s: timings.update_s,
        rollout_tokens,
        rollout_tokens_per_s: rollout_tokens as f64 / rollout_s.max(1e-9),
    };
    if metrics.layout_warning {
        tracing::warn!(
            layout = %metrics.dominant_layout,
            share = metrics.dominant_share,
            "one reply layout dominates the recent rollouts"
        );
    }
    let records = scored
        .into_iter()
        .enumerate()
        .map(|(i, r)| RolloutRecord {
            step: step + 1,
            prompt_id: cx.prompts[r.prompt].id.clone(),
            member: r.member,
            seed: r.sampled.seed,
            tokens: r.sampled.tokens.len(),
            finish: r.sampled.reason,
            reply: r.raw,
            layout: r.layout,
            parts: r.parts,
            judge_orders: r.judge_orders,
            reward: r.reward,
            advantage: r.advantage,
            too_long: !kept.contains(&i),
        })
        .collect();
    (records, metrics, update.loss)
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// Publishes the step's replies for the user and waits for their stars.
fn ask_the_user(
    cx: &StepContext<'_>,
    scored: &[Scored],
    step: u64,
    stop: &std::sync::atomic::AtomicBool,
) -> Option<Answer> {
    let group_size = cx.job.rl.group_size as usize;
    let groups = scored
        .chunks(group_size)
        .map(|g| {
            let prompt = &cx.prompts[g[0].prompt];
            AskGroup {
                prompt_id: prompt.id.clone(),
                character: prompt.character.clone(),
                last_turn: prompt
                    .context
                    .iter()
                    .rev()
                    .find(|m| m.role == Role::User)
                    .map(|m| m.content.clone())
                    .unwrap_or_default(),
                candidates: g.iter().map(|r| r.raw.clone()).collect(),
            }
        })
        .collect();
    let ask = Ask {
        step: step + 1,
        groups,
    };
    if let Err(e) = human::publish(&cx.job.spec.run, &ask) {
        tracing::error!(error = %e, "cannot publish the replies for rating");
        return None;
    }
    human::wait(&cx.job.spec.run, &ask, stop)
}
