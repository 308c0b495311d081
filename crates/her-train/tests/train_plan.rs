//! The memory plan against the measured peak: one SmolLM2 training step at
//! 4×256, LoRA r 16 on every projection, in both base modes with
//! activation checkpointing off and on. Each runs in its own child process
//! (VmHWM is per process and glibc keeps freed memory), which plans the
//! step with its own resident memory at start as the runtime term, takes
//! the step, and reports the plan's total beside its VmHWM. Asserts
//! |predicted − measured| ≤ 15% of measured and prints all four:
//! `cargo test --release -p her-train --test train_plan -- --nocapture`
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use candle_core::Device;
use her_train::lora::{LoraSpec, Target};
use her_train::model::{BaseMode, TrainModel};
use her_train::optim::{Accumulator, AdamW, AdamWConfig};
use her_train::plan::{PlanDevice, PlanDtype, PlanSettings, PlanShape, fmt_bytes, plan};
use her_train::settings::TrainConfig;
use her_train::train_loop::trainer::named_params;

const PROBE_ENV: &str = "HER_PLAN_PROBE";
const VARIANTS: [&str; 4] = [
    "quantized-off",
    "quantized-on",
    "dequantized-off",
    "dequantized-on",
];
const MIB: f64 = (1u64 << 20) as f64;

/// A `kB` field of /proc/self/status in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap();
    kb * 1024
}

/// Runs in a child process (see below): plans, then takes one training
/// step as the trainer does; prints one `PROBE` line.
#[test]
#[ignore = "a measurement child, started by the plan_is_within_15_percent_of_the_measured_peak"]
fn probe_plan_and_one_step() {
    let Ok(which) = std::env::var(PROBE_ENV) else {
        return;
    };
    let (mode, checkpointing) = match which.as_str() {
        "quantized-off" => (BaseMode::Quantized, false),
        "quantized-on" => (BaseMode::Quantized, true),
        "dequantized-off" => (BaseMode::Dequantized, false),
        "dequantized-on" => (BaseMode::Dequantized, true),
        other => panic!("{PROBE_ENV}={other}?"),
    };
    let (b, t) = (4, 256);
    let defaults = TrainConfig::default();
    let model_path = common::smollm2();
    // As Trainer::new does before loading.
    her_train::memory::use_one_malloc_arena();
    let runtime = status_bytes("VmRSS:");
    let shape = PlanShape::from_gguf(&model_path).unwrap();
    let settings = PlanSettings {
        batch: b,
        seq: t,
        rank: defaults.rank as usize,
        targets: Target::ALL.to_vec(),
        dtype: PlanDtype::F32,
        checkpointing,
        base: mode,
        device: PlanDevice::Cpu,
        rollout_engine: false,
    };
    let planned = plan(&shape, &settings, runtime);

    let mut m = TrainModel::load(&model_path, mode, &Device::Cpu).unwrap();
    m.attach_lora(
        &LoraSpec {
            rank: defaults.rank as usize,
            alpha: defaults.alpha,
            dropout: defaults.dropout,
            targets: Target::ALL.to_vec(),
        },
        1,
    )
    .unwrap();
    m.set_activation_checkpointing(checkpointing);
    let params = named_params(&m.lora_params());
    let mut opt = AdamW::new(params.clone(), AdamWConfig::default()).unwrap();
    let (ids, labels) = common::next_token_batch(m.shape.n_vocab, b, t, 100);
    let (loss, _) = m.loss(&ids, &labels, true, 0).unwrap();
    let grads = m.backward(&loss).unwrap();
    let mut acc = Accumulator::new(params.len());
    acc.add(&params, &grads, 1.0).unwrap();
    drop(grads);
    drop(loss);
    acc.clip(1.0).unwrap();
    opt.step(&acc, 2e-4).unwrap();
    let measured = status_bytes("VmHWM:");
    let terms: Vec<String> = planned
        .terms
        .iter()
        .map(|t| format!("{}={}", t.name.replace(' ', "_"), fmt_bytes(t.bytes)))
        .collect();
    println!(
        "PROBE {which} predicted={} measured={measured} runtime={runtime} terms: {}",
        planned.total(),
        terms.join(" ")
    );
}

#[test]
fn plan_is_within_15_percent_of_the_measured_peak() {
    let mut failures = Vec::new();
    for (which, lines) in common::probe_lines("probe_plan_and_one_step", PROBE_ENV, &VARIANTS) {
        let line = lines
            .first()
            .unwrap_or_else(|| panic!("{which}: no PROBE line"));
        let field = |name: &str| -> f64 {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} in {line}"))
        };
        let (predicted, measured) = (field("predicted"), field("measured"));
        let error = (predicted - measured) / measured;
        println!(
            "{which:<16} predicted {:>6.0} MiB  measured {:>6.0} MiB  error {:+.1}%",
            predicted / MIB,
            measured / MIB,
            100.0 * error
        );
        println!("  {}", line.split_once("terms: ").map_or("", |t| t.1));
        if error.abs() > 0.15 {
            failures.push(format!("{which}: {:+.1}%", 100.0 * error));
        }
    }
    assert!(failures.is_empty(), "off by more than 15%: {failures:?}");
}
