//! DPO on the tiny model: on a synthetic preference set (every chosen reply
//! acts, every rejected one only talks), training raises the held-out
//! reward margin and pair accuracy from their reference values.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::AtomicBool;

use her_studio::config::TrainConfig;
use her_studio::train::data::Message;
use her_studio::train::dpo::{DpoJob, PairSample, run};

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
    let job = DpoJob {
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
            checkpoint_every: 0,
            activation_checkpointing,
            ..TrainConfig::default()
        },
        beta: 0.1,
        run: dir.path().join("run"),
        resume: false,
        init_adapter: None,
    };
    let never = AtomicBool::new(false);
    let report = run(&job, pairs(), &never, &mut |_, _, _| {}).unwrap();
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
