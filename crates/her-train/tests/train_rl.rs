//! Online RL on the tiny model with verifiable rewards: the reward rises
//! while the KL to the reference stays bounded, a stopped run resumes to the
//! same rollouts and curve, the human reward goes through the run folder's
//! question/answer files, and the judge reward scores every rollout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use her_core::prefs::{ContextMessage, Role};
use her_train::rl::prompts::RlPrompt;
use her_train::rl::{RlJob, RlReport, StepMetrics, human, read_rollouts};
use her_train::settings::{RlConfig, TrainConfig};
use her_train::train_loop::{Progress, run};

fn prompts() -> Vec<RlPrompt> {
    [
        "Darcy: Do you dance?",
        "Jane: Are you well?",
        "Lydia: Look at my bonnet!",
        "Mr. Collins: Cousin!",
    ]
    .iter()
    .map(|line| {
        RlPrompt::new(
            "Elizabeth Bennet".into(),
            vec![
                ContextMessage::new(Role::System, "You are Elizabeth Bennet."),
                ContextMessage::new(Role::User, *line),
            ],
        )
    })
    .collect()
}

/// Only a verifiable reward: +1 when a reply uses a role tag
/// (`<role_thinking>`, `<role_action>` or their closing tags). The random
/// model writes one in about one reply in eight: dense enough for a short
/// run (one specific tag alone is too rare for the signal to show in 16 steps).
fn contains_only(steps: u32, kl_beta: f64) -> RlConfig {
    RlConfig {
        steps,
        prompts_per_step: 2,
        group_size: 8,
        max_new_tokens: 24,
        kl_beta,
        reward_judge: 0.0,
        reward_format: 0.0,
        reward_layout: 0.0,
        reward_contains: 1.0,
        contains_text: "role_".into(),
        ..RlConfig::default()
    }
}

fn job(run_dir: &Path, rl: RlConfig, resume: bool) -> RlJob {
    let model = common::tiny().model.clone();
    let judge = (rl.reward_judge > 0.0)
        .then(|| Box::new(common::start(&model)) as Box<dyn her_engine::Backend>);
    let settings = TrainConfig {
        rank: 8,
        alpha: 16.0,
        dropout: 0.0,
        base: "dequantized".into(),
        learning_rate: 4e-2,
        warmup_steps: 0,
        batch_size: 8,
        checkpoint_every: 0,
        ..TrainConfig::default()
    };
    RlJob {
        spec: common::spec(&model, settings, run_dir.to_path_buf(), resume),
        engine: common::options(&model),
        judge,
        rl,
        sampling: common::sampling(0, 24),
        sources: Vec::new(),
    }
}

fn train(job: &RlJob, stop_after: Option<u64>) -> (RlReport, Vec<StepMetrics>) {
    let stop = AtomicBool::new(false);
    let mut steps = Vec::new();
    let report = run(job, prompts(), &stop, &mut |p| {
        let Progress::Step(m) = p else {
            return;
        };
        steps.push(m.clone());
        if stop_after == Some(m.step) {
            stop.store(true, Ordering::SeqCst);
        }
    })
    .unwrap();
    (report, steps)
}

/// `train.dtype = "bf16"` computes what f32 computes, within bf16's
/// rounding, step by step (the rollouts come from llama.cpp, the same for
/// both at the first step; later ones sample from the updated adapters,
/// which differ).
#[test]
fn bf16_steps_track_f32() {
    common::assert_bf16_tracks_f32(1, |run_dir, dtype| {
        let mut job = job(run_dir, contains_only(1, 0.04), false);
        job.spec.settings.dtype = dtype.into();
        train(&job, None);
    });
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// How much a run's mean reward rose: its last four steps against its first four.
fn rise(curve: &[f64]) -> f64 {
    mean(&curve[curve.len() - 4..]) - mean(&curve[..4])
}

#[test]
fn a_verifiable_reward_rises_while_the_kl_stays_bounded() {
    // One RL run on a random model is a biased coin: most runs learn to
    // write the tag, some never find it in 16 steps, and any change to the
    // trainer's arithmetic reshuffles which seeds do. So the claim is about
    // six seeds: their mean rise (measured: 0.60; the reward stays near its
    // base rate of ~0.1 if learning breaks, a rise of ~0).
    let dir = tempfile::tempdir().unwrap();
    let runs: Vec<(RlReport, Vec<StepMetrics>)> = (0..6)
        .map(|seed| {
            let mut job = job(
                &dir.path().join(format!("run-{seed}")),
                contains_only(16, 0.1),
                false,
            );
            job.spec.settings.seed = seed;
            train(&job, None)
        })
        .collect();
    let rises: Vec<f64> = runs.iter().map(|(r, _)| rise(&r.reward_curve)).collect();
    assert!(mean(&rises) > 0.3, "mean reward rise per seed: {rises:?}");
    let (report, steps) = &runs[0];
    assert!(!report.interrupted);
    assert_eq!(report.reward_curve.len(), 16);
    let kls: Vec<f64> = steps.iter().map(|m| m.metrics.kl).collect();
    // The policy starts as the reference (B = 0): the first KL is 0.
    assert_eq!(kls[0], 0.0);
    assert!(kls.iter().all(|k| k.is_finite() && *k >= 0.0), "{kls:?}");
    assert!(
        steps
            .iter()
            .all(|m| m.metrics.parts.contains.is_some() && m.metrics.parts.judge.is_none())
    );

    // Without the penalty the same run drifts further from the reference.
    let free = job_without_penalty(dir.path());
    let (_, free_steps) = train(&free, None);
    let free_kls: Vec<f64> = free_steps.iter().map(|m| m.metrics.kl).collect();
    assert!(
        mean(&free_kls[12..]) > mean(&kls[12..]),
        "kl with the penalty {kls:?}\nwithout {free_kls:?}"
    );

    // Every rollout is on record: its reward parts, its reward, and group
    // advantages that sum to zero.
    let rollouts = read_rollouts(&dir.path().join("run-0/rollouts.jsonl"));
    assert_eq!(rollouts.len(), 16 * 2 * 8);
    for group in rollouts.chunks(8) {
        assert!(
            group
                .iter()
                .all(|r| r.step == group[0].step && r.prompt_id == group[0].prompt_id)
        );
        let sum: f64 = group.iter().map(|r| r.advantage).sum();
        assert!(sum.abs() < 1e-6, "{sum}");
        for r in group {
            let expected = if r.reply.contains("role_") { 1.0 } else { 0.0 };
            assert_eq!((r.parts.contains, r.reward), (Some(expected), expected));
            assert!(r.reply.starts_with("<system_thinking>"));
        }
    }
    // The adapter loads in llama.cpp.
    let engine = common::start(&common::tiny().model);
    use her_engine::Backend;
    engine
        .load_adapter(report.adapter_gguf.clone().unwrap(), 1.0)
        .wait()
        .unwrap();
}

/// Seed 0's run of the test above without the KL penalty.
fn job_without_penalty(dir: &Path) -> RlJob {
    let mut job = job(&dir.join("free"), contains_only(16, 0.0), false);
    job.spec.settings.seed = 0;
    job
}

#[test]
fn a_stopped_run_resumes_to_the_same_rollouts_and_curve() {
    let dir = tempfile::tempdir().unwrap();
    let whole = job(&dir.path().join("whole"), contains_only(6, 0.1), false);
    let (full, _) = train(&whole, None);
    let part = job(&dir.path().join("part"), contains_only(6, 0.1), false);
    let (stopped, _) = train(&part, Some(3));
    assert!(stopped.interrupted);
    assert_eq!(stopped.steps, 3);
    let resumed = job(&dir.path().join("part"), contains_only(6, 0.1), true);
    let (rest, steps) = train(&resumed, None);
    assert_eq!(steps.first().map(|m| m.step), Some(4));
    assert_eq!(rest.reward_curve, full.reward_curve);
    let replies = |name: &str| -> Vec<(u64, String, f64)> {
        read_rollouts(&dir.path().join(name).join("rollouts.jsonl"))
            .into_iter()
            .map(|r| (r.step, r.reply, r.advantage))
            .collect()
    };
    assert_eq!(replies("part"), replies("whole"));
}

#[test]
fn the_human_reward_waits_for_the_answer_file_and_uses_its_stars() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let rl = RlConfig {
        reward_contains: 0.0,
        reward_human: 1.0,
        group_size: 4,
        ..contains_only(2, 0.1)
    };
    let job = job(&run_dir, rl, false);
    // A rater in another thread, as the TUI would be: 5 stars for the
    // first reply of each group, 1 for the rest.
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let rater = {
        let (run_dir, done) = (run_dir.clone(), done.clone());
        std::thread::spawn(move || {
            let mut answered = 0;
            while !done.load(Ordering::SeqCst) {
                if let Some(ask) = human::pending(&run_dir) {
                    let stars = ask
                        .groups
                        .iter()
                        .map(|g| {
                            (0..g.candidates.len())
                                .map(|i| if i == 0 { 5 } else { 1 })
                                .collect()
                        })
                        .collect();
                    human::respond(
                        &run_dir,
                        &human::Answer {
                            step: ask.step,
                            stars,
                            annotator: "tester".into(),
                        },
                    )
                    .unwrap();
                    answered += 1;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            answered
        })
    };
    let (report, _) = train(&job, None);
    done.store(true, Ordering::SeqCst);
    assert_eq!(rater.join().unwrap(), 2);
    assert_eq!(report.steps, 2);
    for r in read_rollouts(&run_dir.join("rollouts.jsonl")) {
        let want = if r.member == 0 { 1.0 } else { -1.0 };
        assert_eq!(r.parts.human, Some(want));
    }
}

#[test]
fn the_judge_reward_compares_every_rollout_with_the_reference_reply() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let rl = RlConfig {
        reward_judge: 1.0,
        reward_format: 0.5,
        reward_layout: 0.1,
        reward_contains: 0.0,
        group_size: 2,
        prompts_per_step: 2,
        ..contains_only(2, 0.1)
    };
    let job = job(&run_dir, rl, false);
    let (report, steps) = train(&job, None);
    assert_eq!(report.steps, 2);
    let baselines = std::fs::read_to_string(run_dir.join("baselines.jsonl")).unwrap();
    let rollouts = read_rollouts(&run_dir.join("rollouts.jsonl"));
    assert_eq!(rollouts.len(), 2 * 2 * 2);
    for r in &rollouts {
        assert!(
            baselines.contains(&r.prompt_id),
            "no baseline for {}",
            r.prompt_id
        );
        let judge = r.parts.judge.unwrap();
        assert!([-1.0, 0.0, 1.0].contains(&judge), "{judge}");
        // The reward follows from the two orders: agreeing on the rollout wins.
        use her_core::prefs::Verdict::{Cand1, Cand2};
        let expected = match r.judge_orders.unwrap() {
            [Cand1, Cand2] => 1.0,
            [Cand2, Cand1] => -1.0,
            _ => 0.0,
        };
        assert_eq!(judge, expected, "{:?}", r.judge_orders);
        let (format, layout) = (r.parts.format.unwrap(), r.parts.layout.unwrap());
        assert!((-1.0..=1.0).contains(&format) && (0.0..1.0).contains(&layout));
        assert!((r.reward - (judge + 0.5 * format + 0.1 * layout)).abs() < 1e-9);
    }
    assert!(
        steps
            .iter()
            .all(|m| m.metrics.scoring_s > 0.0 && m.metrics.parts.judge.is_some())
    );
}

/// The prompts with the last one holding the poisoned marker; the trainer
/// reads the poisoned model (NaN for that prompt's rows) while the engine
/// samples with the clean one.
fn nan_job(run_dir: &Path, max_nonfinite_steps: u32) -> (RlJob, Vec<RlPrompt>) {
    let mut prompts = prompts();
    prompts[3] = RlPrompt::new(
        "Elizabeth Bennet".into(),
        vec![
            ContextMessage::new(Role::System, "You are Elizabeth Bennet."),
            ContextMessage::new(Role::User, format!("Mr. Collins: {}", common::POISON)),
        ],
    );
    let clean: Vec<String> = prompts[..3].iter().map(RlPrompt::render).collect();
    let model = common::poisoned_tiny(&clean.iter().map(String::as_str).collect::<Vec<_>>());
    let mut job = job(run_dir, contains_only(4, 0.1), false);
    job.spec.model_fingerprint = her_engine::local::fingerprint(&model).unwrap();
    job.spec.model = model;
    job.spec.settings.checkpoint_every = 1;
    job.spec.settings.max_nonfinite_steps = max_nonfinite_steps;
    (job, prompts)
}

/// A step whose rollouts include the poisoned prompt has a NaN loss: its
/// update is skipped (logged, weights and moments unchanged) and the run
/// goes on; the others train.
#[test]
fn a_nan_update_is_skipped_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (job, prompts) = nan_job(&dir.path().join("run"), 3);
    let poisoned = prompts[3].id.clone();
    let never = AtomicBool::new(false);
    let report = run(&job, prompts, &never, &mut |_| {}).unwrap();
    assert_eq!(report.steps, 4);
    let mut with_poison: Vec<u64> = read_rollouts(&job.spec.run.join("rollouts.jsonl"))
        .iter()
        .filter(|r| r.prompt_id == poisoned)
        .map(|r| r.step)
        .collect();
    with_poison.dedup();
    // Two prompts per step out of four: one step per epoch has it.
    assert_eq!(with_poison.len(), 2);
    assert_eq!(common::skipped_steps(&job.spec.run), with_poison);
    assert!(common::assert_skipped_steps_changed_nothing(&job.spec.run) >= 1);
    let engine = common::start(&common::tiny().model);
    use her_engine::Backend;
    engine
        .load_adapter(report.adapter_gguf.unwrap(), 1.0)
        .wait()
        .unwrap();
}

#[test]
fn too_many_nan_updates_in_a_row_stop_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (job, prompts) = nan_job(&dir.path().join("run"), 1);
    let never = AtomicBool::new(false);
    let err = run(&job, prompts, &never, &mut |_| {})
        .map(|_| ())
        .unwrap_err()
        .to_string();
    common::assert_stopped_at_first_skip(&err, &job.spec.run);
}

/// `train.grad_accum` rounds of `rl.prompts_per_step` prompts are sampled
/// by the same policy and make one update (one step of the run).
#[test]
fn grad_accum_takes_that_many_rounds_of_prompts_per_update() {
    let dir = tempfile::tempdir().unwrap();
    let rl = RlConfig {
        group_size: 2,
        ..contains_only(1, 0.1)
    };
    let mut job = job(&dir.path().join("run"), rl, false);
    job.spec.settings.grad_accum = 2;
    let (report, steps) = train(&job, None);
    assert_eq!((report.steps, steps.len()), (1, 1));
    let rollouts = read_rollouts(&dir.path().join("run/rollouts.jsonl"));
    // Two rounds of two prompts, two replies each: all four prompts once.
    assert_eq!(rollouts.len(), 8);
    let prompts: std::collections::BTreeSet<&str> =
        rollouts.iter().map(|r| r.prompt_id.as_str()).collect();
    assert_eq!(prompts.len(), 4);
    assert!(rollouts.iter().all(|r| r.step == 1));
}
