//! KTO on the tiny model: unpaired thumbs (replies that act are good,
//! replies that only talk are bad) open a reward gap on held-out replies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use her_train::data::Message;
use her_train::kto::{KtoJob, KtoSample};
use her_train::settings::{KtoConfig, TrainConfig};
use her_train::train_loop::{Progress, run};

fn samples() -> Vec<KtoSample> {
    let lines = [
        "Darcy: Do you dance?",
        "Jane: Are you well?",
        "Charlotte: Any news?",
        "Mr. Bennet: Lizzy?",
        "Lydia: Look at my bonnet!",
        "Mary: Shall I play?",
        "Kitty: Where is Lydia?",
        "Mr. Collins: Cousin!",
    ];
    let m = |role: &str, content: &str| Message {
        role: role.into(),
        content: content.into(),
    };
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let good = i % 2 == 0;
            let reply = if good {
                "<system_thinking>Act.</system_thinking>Elizabeth: <role_action>smiles</role_action>Indeed."
            } else {
                "<system_thinking>Talk.</system_thinking>Elizabeth: Indeed, indeed, indeed."
            };
            KtoSample {
                prompt: vec![m("system", "You are Elizabeth Bennet."), m("user", l)],
                completion: vec![m("assistant", reply)],
                label: good,
            }
        })
        .collect()
}

/// Small LoRA settings on the dequantized tiny model.
fn settings(max_steps: u32) -> TrainConfig {
    TrainConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        base: "dequantized".into(),
        learning_rate: 5e-3,
        warmup_steps: 0,
        max_steps,
        batch_size: 4,
        eval_fraction: 0.25,
        checkpoint_every: 0,
        ..TrainConfig::default()
    }
}

fn job(model: &Path, run: PathBuf, settings: TrainConfig, resume: bool) -> KtoJob {
    KtoJob {
        spec: common::spec(model, settings, run, resume),
        beta: 0.1,
        kto: KtoConfig::default(),
    }
}

#[test]
fn kto_opens_a_held_out_reward_gap() {
    let dir = tempfile::tempdir().unwrap();
    let s = TrainConfig {
        rank: 8,
        alpha: 16.0,
        checkpoint_every: 50,
        ..settings(30)
    };
    let job = job(&common::tiny().model, dir.path().join("run"), s, false);
    let never = AtomicBool::new(false);
    let report = run(&job, samples(), &never, &mut |_| {}).unwrap();
    let before = report.eval_before.unwrap();
    let after = report.eval_after.unwrap();
    assert!(before.reward_gap.abs() < 1e-4, "{before:?}");
    assert!(after.reward_gap > 0.5, "{before:?} -> {after:?}");
    assert!(after.loss < before.loss, "{before:?} -> {after:?}");
    assert!(report.adapter_gguf.unwrap().is_file());
}

/// A run stopped after 3 of 8 steps and resumed gives the same loss curve,
/// held-out result and adapter, bit for bit, as one that never stopped.
/// `train.dtype = "bf16"` computes what f32 computes, within bf16's
/// rounding, step by step.
#[test]
fn bf16_steps_track_f32() {
    let model = common::tiny().model.clone();
    common::assert_bf16_tracks_f32(2, |run_dir, dtype| {
        let s = TrainConfig {
            dtype: dtype.into(),
            ..settings(2)
        };
        let job = job(&model, run_dir.to_path_buf(), s, false);
        run(&job, samples(), &AtomicBool::new(false), &mut |_| {}).unwrap();
    });
}

#[test]
fn a_stopped_kto_run_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny().model.clone();
    let s = TrainConfig {
        warmup_steps: 2,
        ..settings(8)
    };
    let job = |name: &str, resume: bool| job(&model, dir.path().join(name), s.clone(), resume);
    let losses = |name: &str| -> Vec<f64> {
        common::step_curve(&dir.path().join(name))
            .iter()
            .map(|(loss, _)| *loss)
            .collect()
    };
    let never = AtomicBool::new(false);
    let whole = run(&job("whole", false), samples(), &never, &mut |_| {}).unwrap();
    let stop = AtomicBool::new(false);
    let stopped = run(&job("part", false), samples(), &stop, &mut |p| {
        if matches!(p, Progress::Step(s) if s.step == 3) {
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    })
    .unwrap();
    assert!(stopped.interrupted && stopped.steps == 3);
    let resumed = run(&job("part", true), samples(), &never, &mut |_| {}).unwrap();
    assert_eq!(resumed.steps, 8);
    assert_eq!(losses("part"), losses("whole"));
    assert_eq!(
        resumed.eval_after.unwrap().reward_gap,
        whole.eval_after.unwrap().reward_gap
    );
    let bytes = |p: Option<PathBuf>| std::fs::read(p.unwrap()).unwrap();
    assert!(bytes(resumed.adapter_gguf) == bytes(whole.adapter_gguf));
}

/// Eight labelled replies and one whose completion holds the poisoned marker.
fn samples_and_a_nan() -> (PathBuf, Vec<KtoSample>) {
    let clean = samples();
    let texts: Vec<String> = clean
        .iter()
        .flat_map(|k| {
            k.prompt
                .iter()
                .chain(&k.completion)
                .map(|m| m.content.clone())
        })
        .collect();
    let model = common::poisoned_tiny(&texts.iter().map(String::as_str).collect::<Vec<_>>());
    let mut all = clean;
    let mut odd = all[1].clone();
    odd.completion[0].content = format!("Elizabeth: {}", common::POISON);
    all.push(odd);
    (model, all)
}

fn nan_job(dir: &Path, max_nonfinite_steps: u32) -> (KtoJob, Vec<KtoSample>) {
    let (model, samples) = samples_and_a_nan();
    let s = TrainConfig {
        max_steps: 6,
        batch_size: 3,
        eval_fraction: 0.0,
        checkpoint_every: 1,
        max_nonfinite_steps,
        ..settings(6)
    };
    (job(&model, dir.join("run"), s, false), samples)
}

/// A NaN batch is skipped: logged, no update, the run goes on.
#[test]
fn a_nan_batch_is_skipped_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (job, samples) = nan_job(dir.path(), 3);
    let never = AtomicBool::new(false);
    let report = run(&job, samples, &never, &mut |_| {}).unwrap();
    assert_eq!(report.steps, 6);
    // 9 replies in batches of 3: three steps per epoch, one with the NaN reply.
    assert_eq!(common::skipped_steps(&job.spec.run).len(), 2);
    assert!(common::assert_skipped_steps_changed_nothing(&job.spec.run) >= 1);
    assert!(report.adapter_gguf.unwrap().is_file());
}

#[test]
fn too_many_nan_steps_in_a_row_stop_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (job, samples) = nan_job(dir.path(), 1);
    let never = AtomicBool::new(false);
    let err = run(&job, samples, &never, &mut |_| {})
        .map(|_| ())
        .unwrap_err()
        .to_string();
    common::assert_stopped_at_first_skip(&err, &job.spec.run);
}

/// Two accumulated micro-batches of two replies take the same steps as
/// batches of four (z₀ from the whole step's mismatched pairs).
#[test]
fn grad_accum_equals_a_batch_that_many_times_larger() {
    let model = common::tiny().model.clone();
    let never = AtomicBool::new(false);
    common::assert_accumulation_equals_a_larger_batch(2, |run_dir, batch_size, grad_accum| {
        let s = TrainConfig {
            batch_size,
            grad_accum,
            eval_fraction: 0.0,
            ..settings(2)
        };
        let job = job(&model, run_dir.to_path_buf(), s, false);
        run(&job, samples(), &never, &mut |_| {}).unwrap();
    });
}
