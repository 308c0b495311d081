//! DPO on the tiny model: on a synthetic preference set (every chosen reply
//! acts, every rejected one only talks), training raises the held-out
//! reward margin and pair accuracy from their reference values.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::AtomicBool;

use her_train::data::Message;
use her_train::dpo::{DpoJob, PairSample};
use her_train::settings::TrainConfig;
use her_train::train_loop::{Progress, run};

fn pairs() -> Vec<PairSample> {
    let lines = [
        "Darcy: Do you dance?",
        "Jane: Are you well?",
        "Charlotte: Any news?",
        "Mr. Bennet: Lizzy?",
        "Lydia: Look at my bonnet!",
        "Mary: Shall I play?",
        "Kitty: Where is Lydia?",
        "Mr. Collins: Cousin!",
        "Wickham: Good morning.",
        "Bingley: What a ball!",
        "Mrs. Bennet: Lizzy!",
        "Georgiana: Hello.",
    ];
    lines
        .iter()
        .map(|l| PairSample {
            prompt: vec![
                Message { role: "system".into(), content: "You are Elizabeth Bennet.".into() },
                Message { role: "user".into(), content: (*l).into() },
            ],
            chosen: "<system_thinking>Act.</system_thinking>Elizabeth: <role_action>smiles</role_action>Indeed.".into(),
            rejected: "<system_thinking>Talk.</system_thinking>Elizabeth: Indeed, indeed, indeed.".into(),
        })
        .collect()
}

#[test]
fn dpo_raises_the_held_out_margin_and_accuracy() {
    check(false);
}

/// Recomputed activations must give the LoRA the same gradients.
#[test]
fn dpo_learns_the_same_with_activation_checkpointing() {
    check(true);
}

fn check(activation_checkpointing: bool) {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny().model.clone();
    let s = TrainConfig {
        rank: 8,
        alpha: 16.0,
        warmup_steps: 0,
        batch_size: 4,
        grad_accum: 1,
        activation_checkpointing,
        ..settings(30)
    };
    let job = job(&model, dir.path().join("run"), s, false);
    let never = AtomicBool::new(false);
    let report = run(&job, pairs(), &never, &mut |_| {}).unwrap();
    let before = report.eval_before.unwrap();
    let after = report.eval_after.unwrap();
    assert_eq!(report.eval_pairs, 3);
    // At the start the policy is the reference: no margin, no accuracy.
    assert!(
        before.margin.abs() < 1e-4 && before.accuracy == 0.0,
        "{before:?}"
    );
    assert!(
        after.margin > before.margin + 0.1,
        "{before:?} -> {after:?}"
    );
    assert_eq!(after.accuracy, 1.0, "{after:?}");
    assert!(after.loss < before.loss);
    assert!(report.adapter_gguf.unwrap().is_file());
}

fn settings(max_steps: u32) -> TrainConfig {
    TrainConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        base: "dequantized".into(),
        learning_rate: 5e-3,
        warmup_steps: 2,
        max_steps,
        batch_size: 2,
        grad_accum: 2,
        eval_fraction: 0.25,
        checkpoint_every: 0,
        ..TrainConfig::default()
    }
}

fn job(
    model: &std::path::Path,
    run: std::path::PathBuf,
    settings: TrainConfig,
    resume: bool,
) -> DpoJob {
    DpoJob {
        spec: common::spec(model, settings, run, resume),
        beta: 0.1,
    }
}

fn step_losses(run: &std::path::Path) -> Vec<f64> {
    common::step_curve(run)
        .iter()
        .map(|(loss, _)| *loss)
        .collect()
}

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
        run(&job, pairs(), &AtomicBool::new(false), &mut |_| {}).unwrap();
    });
}

/// A run stopped after 3 of 8 steps (each of two accumulated micro-batches)
/// and resumed gives the same loss curve, held-out result and adapter,
/// bit for bit, as one that never stopped.
#[test]
fn a_stopped_dpo_run_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny().model.clone();
    let never = AtomicBool::new(false);
    let whole = run(
        &job(&model, dir.path().join("whole"), settings(8), false),
        pairs(),
        &never,
        &mut |_| {},
    )
    .unwrap();
    let stop = AtomicBool::new(false);
    let stopped = run(
        &job(&model, dir.path().join("part"), settings(8), false),
        pairs(),
        &stop,
        &mut |p| {
            if matches!(p, Progress::Step(s) if s.step == 3) {
                stop.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        },
    )
    .unwrap();
    assert!(stopped.interrupted && stopped.steps == 3);
    let resumed = run(
        &job(&model, dir.path().join("part"), settings(8), true),
        pairs(),
        &never,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(resumed.steps, 8);
    let curve = step_losses(&dir.path().join("whole"));
    assert_eq!(curve.len(), 8);
    assert_eq!(step_losses(&dir.path().join("part")), curve);
    assert_eq!(
        resumed.eval_after.unwrap().margin,
        whole.eval_after.unwrap().margin
    );
    let bytes = |p: Option<std::path::PathBuf>| std::fs::read(p.unwrap()).unwrap();
    assert!(bytes(resumed.adapter_gguf) == bytes(whole.adapter_gguf));
}

/// Twelve pairs and one whose chosen reply holds the poisoned marker.
fn pairs_and_a_nan() -> (std::path::PathBuf, Vec<PairSample>) {
    let clean = pairs();
    let texts: Vec<String> = clean
        .iter()
        .flat_map(|p| {
            p.prompt
                .iter()
                .map(|m| m.content.clone())
                .chain([p.chosen.clone(), p.rejected.clone()])
        })
        .collect();
    let model = common::poisoned_tiny(&texts.iter().map(String::as_str).collect::<Vec<_>>());
    let mut all = clean;
    let mut odd = all[0].clone();
    odd.prompt[1].content = "Mr. Darcy: Pray, what is that?".into();
    odd.chosen = format!("Elizabeth: {}", common::POISON);
    all.push(odd);
    (model, all)
}

fn nan_settings(max_nonfinite_steps: u32) -> TrainConfig {
    TrainConfig {
        batch_size: 4,
        grad_accum: 1,
        eval_fraction: 0.0,
        checkpoint_every: 1,
        max_nonfinite_steps,
        ..settings(8)
    }
}

/// A NaN batch is skipped: logged, no update, the run goes on.
#[test]
fn a_nan_batch_is_skipped_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (model, pairs) = pairs_and_a_nan();
    let job = job(&model, dir.path().join("run"), nan_settings(3), false);
    let never = AtomicBool::new(false);
    let report = run(&job, pairs, &never, &mut |_| {}).unwrap();
    assert_eq!(report.steps, 8);
    // 13 pairs in batches of 4: four steps per epoch, one with the NaN pair.
    assert_eq!(common::skipped_steps(&job.spec.run).len(), 2);
    assert!(common::assert_skipped_steps_changed_nothing(&job.spec.run) >= 1);
    assert!(report.adapter_gguf.unwrap().is_file());
}

#[test]
fn too_many_nan_steps_in_a_row_stop_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (model, pairs) = pairs_and_a_nan();
    let job = job(&model, dir.path().join("run"), nan_settings(1), false);
    let never = AtomicBool::new(false);
    let err = run(&job, pairs, &never, &mut |_| {})
        .map(|_| ())
        .unwrap_err()
        .to_string();
    common::assert_stopped_at_first_skip(&err, &job.spec.run);
}

/// Two accumulated micro-batches of two pairs take the same steps as
/// batches of four: the loop picks the same pairs and weights them so.
#[test]
fn grad_accum_equals_a_batch_that_many_times_larger() {
    let model = common::tiny().model.clone();
    let never = AtomicBool::new(false);
    common::assert_accumulation_equals_a_larger_batch(2, |run_dir, batch_size, grad_accum| {
        let s = TrainConfig {
            batch_size,
            grad_accum,
            ..settings(2)
        };
        let job = job(&model, run_dir.to_path_buf(), s, false);
        run(&job, pairs(), &never, &mut |_| {}).unwrap();
    });
}
