//! SFT end to end on the tiny model: it overfits four samples, the adapter
//! it exports makes llama.cpp's greedy decoding write a trained reply
//! exactly, and a run stopped half-way resumes to the same loss curve.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use her_studio::config::TrainConfig;
use her_studio::engine::{Backend, GenerateRequest};
use her_studio::train::data::{Message, Sample, chatml_parts};
use her_studio::train::sft::{Progress, SftJob, run};

fn sample(user: &str, reply: &str) -> Sample {
    let m = |role: &str, content: &str| Message {
        role: role.into(),
        content: content.into(),
    };
    Sample {
        messages: vec![
            m("system", "You are Elizabeth Bennet."),
            m("user", user),
            m("assistant", reply),
        ],
    }
}

fn four() -> Vec<Sample> {
    vec![
        sample(
            "Darcy: Do you dance?",
            "<system_thinking>Tease.</system_thinking>Elizabeth: Not with you.",
        ),
        sample(
            "Jane: Are you well?",
            "<system_thinking>Warm.</system_thinking>Elizabeth: Quite well.",
        ),
        sample(
            "Charlotte: Any news?",
            "<system_thinking>Dry.</system_thinking>Elizabeth: None at all.",
        ),
        sample(
            "Mr. Bennet: Lizzy?",
            "<system_thinking>Fond.</system_thinking>Elizabeth: Yes, papa.",
        ),
    ]
}

fn settings(max_steps: u32) -> TrainConfig {
    TrainConfig {
        rank: 8,
        alpha: 16.0,
        dropout: 0.0,
        base: "dequantized".into(),
        learning_rate: 1e-2,
        warmup_steps: 0,
        max_steps,
        batch_size: 4,
        lr_floor: 1.0,
        eval_fraction: 0.0,
        eval_every: 0,
        checkpoint_every: 0,
        ..TrainConfig::default()
    }
}

fn job(dir: &std::path::Path, settings: TrainConfig, resume: bool) -> SftJob {
    let model = common::tiny().model.clone();
    SftJob {
        model_fingerprint: her_studio::engine::local::fingerprint(&model).unwrap(),
        model,
        settings,
        run: dir.join("run"),
        resume,
        sources: Vec::new(),
    }
}

#[test]
fn overfits_four_samples_and_llama_cpp_replays_a_trained_reply() {
    let dir = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(false);
    let report = run(
        &job(dir.path(), settings(80), false),
        four(),
        &stop,
        &mut |_| {},
    )
    .unwrap();
    let first = report.losses[0];
    let last = *report.losses.last().unwrap();
    assert!(last < 0.1 * first, "loss {first} -> {last}");

    // The exported adapter in the real consumer: greedy decoding reproduces
    // a trained reply token for token.
    let adapter = report.adapter_gguf.clone().unwrap();
    let engine = common::start(&common::tiny().model);
    engine.load_adapter(adapter, 1.0).wait().unwrap();
    let target = &four()[0];
    let (prompt, _) = chatml_parts(target);
    let mut sampling = common::sampling(1, 64);
    sampling.temperature = 0.0;
    sampling.stop = vec!["<|im_end|>".into()];
    let (reply, _) = engine
        .generate(GenerateRequest::new(prompt, sampling))
        .collect_blocking()
        .unwrap();
    assert_eq!(reply, target.messages[2].content);
    // PEFT files are there too.
    let peft = report.peft_dir.unwrap();
    assert!(peft.join("adapter_model.safetensors").is_file());
    assert!(peft.join("adapter_config.json").is_file());
}

#[test]
fn a_stopped_run_resumes_to_the_same_loss_curve() {
    let whole = tempfile::tempdir().unwrap();
    let never = AtomicBool::new(false);
    let mut s = settings(6);
    s.learning_rate = 3e-3;
    s.dropout = 0.1; // the dropout masks must line up after a resume too
    s.batch_size = 2;
    s.grad_accum = 2;
    s.warmup_steps = 2;
    s.lr_floor = 0.1;
    let straight = run(
        &job(whole.path(), s.clone(), false),
        four(),
        &never,
        &mut |_| {},
    )
    .unwrap();

    let parts = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(false);
    let halted = run(
        &job(parts.path(), s.clone(), false),
        four(),
        &stop,
        &mut |p| {
            if let Progress::Step(step) = p
                && step.step == 3
            {
                stop.store(true, Ordering::SeqCst);
            }
        },
    )
    .unwrap();
    assert!(halted.interrupted);
    assert_eq!(halted.steps, 3);
    // A stopped run can still be tried in the chat: its newest checkpoint
    // becomes a LoRA GGUF that llama.cpp loads.
    let adapter = her_studio::train::export::adapter_of_run(&parts.path().join("run")).unwrap();
    assert!(adapter.ends_with("checkpoints/step-000003/adapter.gguf"));
    let engine = common::start(&common::tiny().model);
    engine.load_adapter(adapter, 1.0).wait().unwrap();
    drop(engine);
    let resumed = run(&job(parts.path(), s, true), four(), &never, &mut |_| {}).unwrap();
    assert!(!resumed.interrupted);
    assert_eq!(resumed.losses.len(), 6);
    for (a, b) in straight.losses.iter().zip(&resumed.losses) {
        assert!(
            (a - b).abs() <= 1e-6 * a.abs().max(1.0),
            "{:?} vs {:?}",
            straight.losses,
            resumed.losses
        );
    }
}

#[test]
fn a_short_run_on_smollm2_lowers_the_held_out_loss() {
    let dir = tempfile::tempdir().unwrap();
    let data = her_studio::train::data::read_jsonl(
        &common::repo_root().join("assets/datasets/elizabeth-sft.jsonl"),
    )
    .unwrap();
    let model = common::smollm2();
    let job = SftJob {
        model_fingerprint: her_studio::engine::local::fingerprint(&model).unwrap(),
        model,
        settings: TrainConfig {
            max_steps: 6,
            batch_size: 2,
            learning_rate: 1e-3,
            warmup_steps: 1,
            eval_fraction: 0.25,
            eval_every: 0,
            checkpoint_every: 0,
            ..TrainConfig::default()
        },
        run: dir.path().join("run"),
        resume: false,
        sources: Vec::new(),
    };
    let never = AtomicBool::new(false);
    let report = run(&job, data, &never, &mut |_| {}).unwrap();
    assert_eq!(report.eval_samples, 4);
    let (before, after) = (report.evals[0].1, report.evals.last().unwrap().1);
    assert!(after < before, "held-out loss {before} -> {after}");
}

/// The four samples and a fifth whose reply holds the poisoned marker: its
/// batches' loss is NaN on the poisoned model.
fn four_and_a_nan(dir: &std::path::Path, settings: TrainConfig) -> (SftJob, Vec<Sample>) {
    let clean: Vec<String> = four()
        .iter()
        .flat_map(|s| s.messages.iter().map(|m| m.content.clone()))
        .collect();
    let model = common::poisoned_tiny(&clean.iter().map(String::as_str).collect::<Vec<_>>());
    let mut samples = four();
    samples.push(sample(
        "Kitty: Any news?",
        &format!(
            "<system_thinking>Odd.</system_thinking>Elizabeth: {}",
            common::POISON
        ),
    ));
    let job = SftJob {
        model_fingerprint: her_studio::engine::local::fingerprint(&model).unwrap(),
        model,
        settings,
        run: dir.join("run"),
        resume: false,
        sources: Vec::new(),
    };
    (job, samples)
}

fn nan_settings() -> TrainConfig {
    let mut s = settings(10);
    s.batch_size = 1;
    s.checkpoint_every = 1;
    s
}

/// A NaN batch is skipped: logged, no update (weights and moments as they
/// were), the run goes on and exports a finite adapter.
#[test]
fn a_nan_batch_is_skipped_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (job, samples) = four_and_a_nan(dir.path(), nan_settings());
    let never = AtomicBool::new(false);
    let report = run(&job, samples, &never, &mut |_| {}).unwrap();
    assert_eq!(report.steps, 10);
    // One sample in five, one per batch: two of ten steps.
    let skipped = common::skipped_steps(&job.run);
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    let nan: Vec<u64> = (1..=10u64)
        .filter(|s| report.losses[*s as usize - 1].is_nan())
        .collect();
    assert_eq!(nan, skipped);
    assert!(common::assert_skipped_steps_changed_nothing(&job.run) >= 1);
    let adapter = report.adapter_gguf.unwrap();
    let engine = common::start(&common::tiny().model);
    engine.load_adapter(adapter, 1.0).wait().unwrap();
}

/// `train.max_nonfinite_steps` of them in a row stop the run with one
/// message naming the step and the last good checkpoint.
#[test]
fn too_many_nan_steps_in_a_row_stop_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = nan_settings();
    s.max_nonfinite_steps = 1;
    let (job, samples) = four_and_a_nan(dir.path(), s);
    let never = AtomicBool::new(false);
    let err = run(&job, samples, &never, &mut |_| {})
        .map(|_| ())
        .unwrap_err()
        .to_string();
    let step = common::assert_stopped_at_first_skip(&err, &job.run);
    assert!(err.contains("train.max_nonfinite_steps = 1"), "{err}");
    if step > 1 {
        let last = job.run.join(format!("checkpoints/step-{:06}", step - 1));
        assert!(err.contains(&format!("'{}'", last.display())), "{err}");
    } else {
        assert!(err.contains("No checkpoint was written yet"), "{err}");
    }
}
