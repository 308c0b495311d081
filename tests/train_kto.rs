//! KTO on the tiny model: unpaired thumbs (replies that act are good,
//! replies that only talk are bad) open a reward gap on held-out replies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::AtomicBool;

use her_studio::config::TrainConfig;
use her_studio::train::data::Message;
use her_studio::train::kto::{KtoJob, KtoSample, run};

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

#[test]
fn kto_opens_a_held_out_reward_gap() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny().model.clone();
    let job = KtoJob {
        model_fingerprint: her_studio::engine::local::fingerprint(&model).unwrap(),
        model,
        settings: TrainConfig {
            rank: 8,
            alpha: 16.0,
            dropout: 0.0,
            base: "dequantized".into(),
            learning_rate: 5e-3,
            warmup_steps: 0,
            max_steps: 30,
            batch_size: 4,
            eval_fraction: 0.25,
            ..TrainConfig::default()
        },
        beta: 0.1,
        run: dir.path().join("run"),
        resume: false,
        init_adapter: None,
    };
    let never = AtomicBool::new(false);
    let report = run(&job, samples(), &never, &mut |_, _, _| {}).unwrap();
    let before = report.eval_before.unwrap();
    let after = report.eval_after.unwrap();
    assert!(before.reward_gap.abs() < 1e-4, "{before:?}");
    assert!(after.reward_gap > 0.5, "{before:?} -> {after:?}");
    assert!(after.loss < before.loss, "{before:?} -> {after:?}");
    assert!(report.adapter_gguf.unwrap().is_file());
}

/// A run stopped after 3 of 8 steps and resumed gives the same loss curve
/// and the same held-out result as one that never stopped.
#[test]
fn a_stopped_kto_run_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny().model.clone();
    let job = |name: &str, resume: bool| KtoJob {
        model_fingerprint: her_studio::engine::local::fingerprint(&model).unwrap(),
        model: model.clone(),
        settings: TrainConfig {
            rank: 4,
            alpha: 8.0,
            dropout: 0.0,
            base: "dequantized".into(),
            learning_rate: 5e-3,
            warmup_steps: 2,
            max_steps: 8,
            batch_size: 4,
            eval_fraction: 0.25,
            checkpoint_every: 0,
            ..TrainConfig::default()
        },
        beta: 0.1,
        run: dir.path().join(name),
        resume,
        init_adapter: None,
    };
    let losses = |name: &str| -> Vec<f64> {
        std::fs::read_to_string(dir.path().join(name).join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["kind"] == "step")
            .map(|v| v["loss"].as_f64().unwrap())
            .collect()
    };
    let never = AtomicBool::new(false);
    let whole = run(&job("whole", false), samples(), &never, &mut |_, _, _| {}).unwrap();
    let stop = AtomicBool::new(false);
    let stopped = run(&job("part", false), samples(), &stop, &mut |step, _, _| {
        if step == 3 {
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    })
    .unwrap();
    assert!(stopped.interrupted && stopped.steps == 3);
    let resumed = run(&job("part", true), samples(), &never, &mut |_, _, _| {}).unwrap();
    assert_eq!(resumed.steps, 8);
    assert_eq!(losses("part"), losses("whole"));
    assert_eq!(
        resumed.eval_after.unwrap().reward_gap,
        whole.eval_after.unwrap().reward_gap
    );
}
