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
