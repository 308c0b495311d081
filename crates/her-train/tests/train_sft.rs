//! SFT end to end on the tiny model: it overfits four samples, the adapter
//! it exports makes llama.cpp's greedy decoding write a trained reply
//! exactly, a run stopped half-way resumes to the same loss curve, every
//! assistant turn can be learned, and early stopping keeps the best
//! checkpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use her_engine::{Backend, GenerateRequest};
use her_train::data::{LossOn, Sample, Tokenized, batch, chatml_parts, tokenize_turns};
use her_train::settings::TrainConfig;
use her_train::sft::{Progress, SftJob, SftReport};
use her_train::train_loop::run;

use common::{message, sample};

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
        spec: common::spec(&model, settings, dir.join("run"), resume),
        sources: Vec::new(),
    }
}

#[test]
fn overfits_four_samples_and_llama_cpp_replays_a_trained_reply() {
    overfit_and_replay("fused");
}

/// The same run on the portable op set (`train.kernels = "portable"`): the
/// code a GPU runs, here on the CPU.
#[test]
fn the_portable_kernels_overfit_and_llama_cpp_replays_a_trained_reply() {
    overfit_and_replay("portable");
}

/// `train.dtype = "bf16"` computes what f32 computes, within bf16's
/// rounding, step by step.
#[test]
fn bf16_steps_track_f32() {
    common::assert_bf16_tracks_f32(2, |run_dir, dtype| {
        let settings = TrainConfig {
            dtype: dtype.into(),
            ..settings(2)
        };
        let job = SftJob {
            spec: common::spec(
                &common::tiny().model,
                settings,
                run_dir.to_path_buf(),
                false,
            ),
            sources: Vec::new(),
        };
        run(&job, four(), &AtomicBool::new(false), &mut |_| {}).unwrap();
    });
}

fn overfit_and_replay(kernels: &str) {
    let dir = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(false);
    let settings = TrainConfig {
        kernels: kernels.into(),
        ..settings(80)
    };
    let report = run(
        &job(dir.path(), settings, false),
        four(),
        &stop,
        &mut |_| {},
    )
    .unwrap();
    let first = report.losses[0];
    let last = *report.losses.last().unwrap();
    assert!(last < 0.1 * first, "{kernels}: loss {first} -> {last}");

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
    assert_eq!(reply, target.messages[2].content, "{kernels}");
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
    let adapter = her_train::export::adapter_of_run(&parts.path().join("run")).unwrap();
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
    let data = her_train::data::read_jsonl(
        &common::repo_root().join("assets/datasets/elizabeth-sft.jsonl"),
    )
    .unwrap();
    let model = common::smollm2();
    let settings = TrainConfig {
        max_steps: 6,
        batch_size: 2,
        learning_rate: 1e-3,
        warmup_steps: 1,
        eval_fraction: 0.25,
        eval_every: 0,
        checkpoint_every: 0,
        ..TrainConfig::default()
    };
    let job = SftJob {
        spec: common::spec(&model, settings, dir.path().join("run"), false),
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
        spec: common::spec(&model, settings, dir.join("run"), false),
        sources: Vec::new(),
    };
    (job, samples)
}

fn nan_settings() -> TrainConfig {
    let mut s = settings(10);
    s.batch_size = 1;
    s.checkpoint_every = 1;
    // One sample per step, so exactly the poisoned sample's steps are NaN.
    s.packing = false;
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
    let skipped = common::skipped_steps(&job.spec.run);
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    let nan: Vec<u64> = (1..=10u64)
        .filter(|s| report.losses[*s as usize - 1].is_nan())
        .collect();
    assert_eq!(nan, skipped);
    assert!(common::assert_skipped_steps_changed_nothing(&job.spec.run) >= 1);
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
    let step = common::assert_stopped_at_first_skip(&err, &job.spec.run);
    assert!(err.contains("train.max_nonfinite_steps = 1"), "{err}");
    if step > 1 {
        let last = job
            .spec
            .run
            .join(format!("checkpoints/step-{:06}", step - 1));
        assert!(err.contains(&format!("'{}'", last.display())), "{err}");
    } else {
        assert!(err.contains("No checkpoint was written yet"), "{err}");
    }
}
/// A user turn, a reply, a user turn, a reply, a user turn and the final
/// reply; each reply has a plan.
fn three_turns() -> Sample {
    let m = message;
    Sample {
        messages: vec![
            m("system", "You are Elizabeth Bennet."),
            m("user", "Darcy: Do you dance?"),
            m(
                "assistant",
                "<system_thinking>Tease.</system_thinking>Elizabeth: <role_thinking>Proud man.</role_thinking>Not with you.",
            ),
            m("user", "Darcy: Why not?"),
            m(
                "assistant",
                "<system_thinking>Stay cool.</system_thinking>Elizabeth: <role_action>turns away</role_action>I prefer to sit.",
            ),
            m("user", "Darcy: Then talk with me."),
            m(
                "assistant",
                "<system_thinking>Relent a little.</system_thinking>Elizabeth: Only a little, sir.",
            ),
        ],
    }
}

/// The decoded text of each run of consecutive labelled positions.
fn labelled_runs(tokenizer: &tokenizers::Tokenizer, t: &Tokenized) -> Vec<String> {
    let b = batch(&[t], 0);
    let mut runs: Vec<Vec<u32>> = Vec::new();
    let mut previous = false;
    for &label in &b.labels {
        let learned = label != her_train::data::IGNORE;
        if learned {
            if !previous {
                runs.push(Vec::new());
            }
            runs.last_mut().unwrap().push(label as u32);
        }
        previous = learned;
    }
    runs.iter()
        .map(|ids| tokenizer.decode(ids, false).unwrap())
        .collect()
}

#[test]
fn loss_on_all_labels_exactly_the_assistant_turns_of_a_three_turn_sample() {
    let tokenizer = her_train::tokenizer::from_gguf(&common::smollm2()).unwrap();
    let sample = three_turns();
    let all = tokenize_turns(&tokenizer, &sample, LossOn::All).unwrap();
    let last = tokenize_turns(&tokenizer, &sample, LossOn::Last).unwrap();
    // Earlier turns without their plan (HER's history rule), the final one
    // as written; every turn ends with its end marker.
    assert_eq!(
        labelled_runs(&tokenizer, &all),
        vec![
            "Elizabeth: <role_thinking>Proud man.</role_thinking>Not with you.<|im_end|>",
            "Elizabeth: <role_action>turns away</role_action>I prefer to sit.<|im_end|>",
            "<system_thinking>Relent a little.</system_thinking>Elizabeth: Only a little, sir.<|im_end|>",
        ]
    );
    assert_eq!(
        labelled_runs(&tokenizer, &last),
        vec![
            "<system_thinking>Relent a little.</system_thinking>Elizabeth: Only a little, sir.<|im_end|>"
        ]
    );
    // Both read the same text: the chat's prompt, then the final reply.
    let (prompt, completion) = chatml_parts(&sample);
    for t in [&all, &last] {
        assert_eq!(
            tokenizer.decode(&t.ids, false).unwrap(),
            format!("{prompt}{completion}")
        );
    }
    assert!(!prompt.contains("Tease") && !prompt.contains("Stay cool"));
}

/// Eight samples asking the same question with different replies: the two
/// held out (by content hash) are answered otherwise than the six trained
/// on, so the held-out loss falls while the shared layout is learned and
/// rises as the training replies are memorised.
fn one_question_eight_replies() -> Vec<Sample> {
    let words = [
        "Never.",
        "Perhaps.",
        "Gladly!",
        "Not tonight.",
        "Ask Jane.",
        "I am tired.",
        "Only once.",
        "With pleasure.",
    ];
    words
        .iter()
        .map(|w| {
            sample(
                "Darcy: Will you dance?",
                &format!("<system_thinking>Answer.</system_thinking>Elizabeth: {w}"),
            )
        })
        .collect()
}

fn stopping_settings(patience: u32, load_best: bool) -> TrainConfig {
    TrainConfig {
        learning_rate: 2e-2,
        max_steps: 40,
        batch_size: 1,
        eval_fraction: 0.25,
        eval_every: 2,
        early_stopping_patience: patience,
        load_best_model_at_end: load_best,
        ..settings(40)
    }
}

/// The LoRA tensors of a GGUF adapter or a checkpoint, by GGUF name.
fn adapter_tensors(path: &std::path::Path) -> Vec<(String, Vec<f32>)> {
    let flat = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mut out: Vec<(String, Vec<f32>)> = if path.extension().is_some_and(|e| e == "gguf") {
        her_train::lora::read_lora_gguf(path)
            .unwrap()
            .tensors
            .iter()
            .flat_map(|t| {
                let base = format!("blk.{}.{}.weight", t.layer, t.target.gguf_name());
                [
                    (format!("{base}.lora_a"), flat(&t.a)),
                    (format!("{base}.lora_b"), flat(&t.b)),
                ]
            })
            .collect()
    } else {
        candle_core::safetensors::load(path.join("lora.safetensors"), &candle_core::Device::Cpu)
            .unwrap()
            .iter()
            .map(|(n, t)| (n.clone(), flat(t)))
            .collect()
    };
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// An SFT run on [`one_question_eight_replies`] with patience 2.
fn stopping_run(
    dir: &std::path::Path,
    load_best: bool,
    resume: bool,
    stop: &AtomicBool,
    on_progress: &mut dyn FnMut(Progress<'_>),
) -> SftReport {
    let job = job(dir, stopping_settings(2, load_best), resume);
    run(&job, one_question_eight_replies(), stop, on_progress).unwrap()
}

#[test]
fn early_stopping_ends_the_run_and_the_adapter_is_the_best_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let never = AtomicBool::new(false);
    let report = stopping_run(dir.path(), true, false, &never, &mut |_| {});
    println!("held-out losses: {:?}", report.evals);
    let stopped = report.early_stopped.expect("no early stop in 40 steps");
    assert_eq!(report.steps, stopped);
    // The best is the lowest held-out loss after step 0; with threshold 0
    // patience counts the evaluations since it: two, at 2 steps each.
    let (best_step, best_loss) = report.best.unwrap();
    let lowest = report
        .evals
        .iter()
        .filter(|(s, _)| *s > 0)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    assert_eq!((best_step, best_loss), *lowest);
    assert_eq!(best_step, stopped - 4);
    assert_eq!(report.evals.last().unwrap().0, stopped);
    assert!(
        report.evals.first().unwrap().1 > best_loss,
        "nothing was learned"
    );
    // adapter.gguf holds the best checkpoint's weights; the final ones
    // differ and stay in their checkpoint.
    assert_eq!(report.adapter_step, Some(best_step));
    let run_dir = dir.path().join("run");
    let checkpoint = |step: u64| run_dir.join(format!("checkpoints/step-{step:06}"));
    let exported = adapter_tensors(&report.adapter_gguf.clone().unwrap());
    assert_eq!(exported, adapter_tensors(&checkpoint(best_step)));
    assert_ne!(exported, adapter_tensors(&checkpoint(stopped)));

    // Without load_best_model_at_end the adapter is the final weights.
    let other = tempfile::tempdir().unwrap();
    let last = stopping_run(other.path(), false, false, &never, &mut |_| {});
    assert_eq!(
        (last.early_stopped, last.best),
        (report.early_stopped, report.best)
    );
    assert_eq!(last.adapter_step, Some(stopped));
    assert_eq!(
        adapter_tensors(&last.adapter_gguf.unwrap()),
        adapter_tensors(&checkpoint(stopped))
    );

    // A run stopped on the way and resumed finds the same best and stops
    // at the same step (its earlier evaluations come from its metrics).
    let parts = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(false);
    let halted = stopping_run(parts.path(), true, false, &stop, &mut |p| {
        if let Progress::Step(step) = p
            && step.step == best_step + 1
        {
            stop.store(true, Ordering::SeqCst);
        }
    });
    assert!(halted.interrupted);
    let resumed = stopping_run(parts.path(), true, true, &never, &mut |_| {});
    assert_eq!(
        (resumed.early_stopped, resumed.best, resumed.adapter_step),
        (report.early_stopped, report.best, report.adapter_step)
    );
    assert_eq!(resumed.evals.len(), report.evals.len());
    assert_eq!(adapter_tensors(&resumed.adapter_gguf.unwrap()), exported);
}

#[test]
fn early_stopping_without_evaluations_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = stopping_settings(3, true);
    s.eval_every = 0;
    let err = run(
        &job(dir.path(), s, false),
        four(),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("train.early_stopping_patience") && err.contains("train.eval_every"),
        "{err}"
    );
    assert!(!dir.path().join("run").exists());
}
