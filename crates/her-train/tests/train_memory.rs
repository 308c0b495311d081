//! Peak memory of DPO's passes on SmolLM2 with and without a graph
//! (measured, printed, not asserted).
//!
//! DPO's reference log-probs (and its held-out metrics) need no gradient,
//! but candle has no no-grad mode: run with the LoRA as variables, the pass
//! records every op, keeps its activations, attention probabilities and
//! (without checkpointing) up to 256 MiB of loss-head blocks until the
//! result is dropped. The detached passes record nothing. Each variant runs
//! in its own child process (VmHWM is per process): a reference pass alone,
//! and a DPO step (reference pass, policy pass, backward) as `her train dpo`
//! takes it, at 2 pairs of 256 tokens (4 rows), LoRA r 16 on every
//! projection, quantized base:
//! `cargo test --release -p her-train --test train_memory -- --ignored --nocapture`
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use candle_core::{Device, Tensor};
use her_core::rng::SplitMix64;
use her_train::lora::{LoraSpec, Target};
use her_train::model::{BaseMode, TrainModel};
use her_train::run::memory_mib;
use her_train::settings::TrainConfig;

const PROBE_ENV: &str = "HER_NOGRAD_PROBE";

/// Chosen and rejected rows of 2 pairs: random ids, labels = the next id on
/// the last 192 positions (the replies).
fn pairs(vocab: usize) -> (Tensor, Tensor) {
    let (rows, t, prompt) = (4, 256, 64);
    let mut rng = SplitMix64::new(9);
    let ids: Vec<u32> = (0..rows * (t + 1))
        .map(|_| (rng.next_u64() % vocab as u64) as u32)
        .collect();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for row in ids.chunks(t + 1) {
        x.extend_from_slice(&row[..t]);
        y.extend((1..=t).map(|i| if i > prompt { i64::from(row[i]) } else { -100 }));
    }
    (
        Tensor::from_vec(x, (rows, t), &Device::Cpu).unwrap(),
        Tensor::from_vec(y, (rows, t), &Device::Cpu).unwrap(),
    )
}

/// Runs in a child process (see below) and prints one `PROBE` line.
#[test]
#[ignore = "a measurement child, started by dpo_peak_memory_report"]
fn probe_dpo_passes() {
    let Ok(which) = std::env::var(PROBE_ENV) else {
        return;
    };
    let (detached, step) = match which.as_str() {
        "reference-graph" => (false, false),
        "reference-detached" => (true, false),
        "step-graph" => (false, true),
        "step-detached" => (true, true),
        other => panic!("{PROBE_ENV}={other}?"),
    };
    her_train::memory::use_one_malloc_arena();
    let defaults = TrainConfig::default();
    let mut m = TrainModel::load(&common::smollm2(), BaseMode::Quantized, &Device::Cpu).unwrap();
    let spec = LoraSpec {
        rank: defaults.rank as usize,
        alpha: defaults.alpha,
        dropout: 0.0,
        targets: Target::ALL.to_vec(),
    };
    m.attach_lora(&spec, 1).unwrap();
    let (ids, labels) = pairs(m.shape.n_vocab);
    let loaded = memory_mib().1;
    // 1. The reference log-probs, as DPO takes them before training.
    let reference: Vec<f32> = if detached {
        m.sequence_logprobs_detached(&ids, &labels)
    } else {
        m.sequence_logprobs(&ids, &labels).map(|t| t.detach())
    }
    .unwrap()
    .to_vec1()
    .unwrap();
    let after_reference = memory_mib().1;
    // 2. A step: the policy's log-probs with a graph, a loss against the
    // reference, backward (the DPO loss's own arithmetic is 4 numbers).
    if step {
        let reference = Tensor::from_vec(reference, 4, &Device::Cpu).unwrap();
        let policy = m.sequence_logprobs(&ids, &labels).unwrap();
        let loss = (policy - reference).unwrap().sum_all().unwrap();
        let grads = m.backward(&loss).unwrap();
        drop(grads);
    }
    let peak = memory_mib().1;
    println!(
        "PROBE {which}: loaded {loaded:.0} MiB, peak after the reference pass {after_reference:.0} MiB (+{:.0}), peak {peak:.0} MiB (+{:.0})",
        after_reference - loaded,
        peak - loaded
    );
}

#[test]
#[ignore = "slow measurement: run explicitly with --ignored --nocapture"]
fn dpo_peak_memory_report() {
    common::report_probes(
        "probe_dpo_passes",
        PROBE_ENV,
        &[
            "reference-graph",
            "reference-detached",
            "step-graph",
            "step-detached",
        ],
    );
}
