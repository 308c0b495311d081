//! Activation checkpointing (`TrainModel::set_activation_checkpointing`):
//! the same loss and the same gradient for every LoRA A and B as without
//! it, with and without dropout, on the tiny Qwen3 and on SmolLM2 (llama,
//! Q4_1), through `TrainModel::backward` and through an SFT run.
//!
//! `peak_memory_and_speed_report` (ignored) measures one SmolLM2 training
//! step at 4×256 in both base modes with checkpointing off and on, each in
//! its own child process (VmHWM is per process); it prints, asserts nothing:
//! `cargo test --release -p her-train --test train_ckpt -- --ignored --nocapture peak_memory`
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::next_token_batch as batch;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use candle_core::{Device, Tensor};
use her_core::rng::SplitMix64;
use her_train::lora::{LoraSpec, Target};
use her_train::model::{BaseMode, TrainModel};
use her_train::optim::{Accumulator, AdamW, AdamWConfig};
use her_train::settings::TrainConfig;
use her_train::sft::SftJob;
use her_train::train_loop::run;

fn randn(shape: &[usize], std: f64, seed: u64) -> Tensor {
    let mut rng = SplitMix64::new(seed);
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| (rng.normal() * std) as f32).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn all_targets(rank: usize, dropout: f64) -> LoraSpec {
    LoraSpec {
        rank,
        alpha: 2.0 * rank as f64,
        dropout,
        targets: Target::ALL.to_vec(),
    }
}

/// Fresh PEFT init has B = 0, which makes every A gradient 0: small random
/// B values make them observable.
fn randomize_b(model: &TrainModel, std: f64, seed: u64) {
    for (i, p) in model.lora_params().iter().enumerate() {
        p.b.set(&randn(p.b.dims(), std, seed + i as u64)).unwrap();
    }
}

fn scalar(t: &Tensor) -> f32 {
    t.to_scalar::<f32>().unwrap()
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Every LoRA matrix's gradient, by (layer, target, "A"/"B").
type Grads = HashMap<(usize, Target, &'static str), Vec<f32>>;

fn lora_grads(model: &TrainModel, grads: &candle_core::backprop::GradStore) -> Grads {
    let mut out = HashMap::new();
    for p in model.lora_params() {
        for (name, var) in [("A", &p.a), ("B", &p.b)] {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for layer {} {} {name}", p.layer, p.target));
            out.insert((p.layer, p.target, name), flat(g));
        }
    }
    out
}

/// The bound on each LoRA matrix's gradient difference, as a share of its
/// max |g|, for the tiny models.
const GRAD_TOL: f32 = 1e-5;

/// SmolLM2's bound. Its gradients are ill-conditioned at the f32 rounding
/// level: moving every LoRA B by one rounding step moves them by up to
/// 2.2e-5 of max |g| (`train_portable.rs`, `smollm2_noise_floor_report`).
/// Checkpointing recomputes what the plain pass keeps (the loss head's
/// softmax blocks; the tiled attention recomputes its probabilities from
/// the log-sum-exp in both modes), so on and off agree to that floor, not
/// bit for bit: measured 1.1e-5 with the tiled attention.
const SMOLLM2_GRAD_TOL: f32 = 5e-5;

/// max |Δ| ≤ tol · max |g| per matrix (and the gradients are not all 0).
fn assert_same_grads(what: &str, reference: &Grads, got: &Grads, tol: f32) {
    assert_eq!(reference.len(), got.len(), "{what}");
    let mut worst = 0f32;
    for (key, r) in reference {
        let g = &got[key];
        let scale = r.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = r.iter().zip(g).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            scale > 0.0 && g.iter().all(|v| v.is_finite()),
            "{what}: {key:?} has a zero or non-finite gradient"
        );
        assert!(
            diff <= tol * scale,
            "{what}: {key:?} differs by {diff} (max |g| {scale})"
        );
        worst = worst.max(diff / scale);
    }
    eprintln!(
        "{what}: {} LoRA matrices, largest gradient difference {worst:e} of max |g|",
        reference.len()
    );
}

/// (loss, LoRA gradients) of one training forward + `TrainModel::backward`.
fn loss_and_grads(model: &TrainModel, ids: &Tensor, labels: &Tensor, step: u64) -> (f32, Grads) {
    let (loss, _) = model.loss(ids, labels, true, step).unwrap();
    let grads = model.backward(&loss).unwrap();
    (scalar(&loss), lora_grads(model, &grads))
}

/// Checkpointing on vs off on one model: same loss, same gradients.
fn compare_on_off(
    what: &str,
    model: &mut TrainModel,
    (ids, labels): (&Tensor, &Tensor),
    step: u64,
    tol: f32,
) {
    model.set_activation_checkpointing(false);
    let (loss_off, off) = loss_and_grads(model, ids, labels, step);
    // Without checkpointing, `backward` is exactly `loss.backward()`.
    let (loss, _) = model.loss(ids, labels, true, step).unwrap();
    let plain = lora_grads(model, &loss.backward().unwrap());
    assert_eq!(off, plain, "{what}: backward() vs loss.backward()");

    model.set_activation_checkpointing(true);
    assert!(model.activation_checkpointing());
    let (loss_on, on) = loss_and_grads(model, ids, labels, step);
    model.set_activation_checkpointing(false);
    eprintln!("{what}: loss {loss_off} (off) vs {loss_on} (on)");
    assert!(
        (loss_on - loss_off).abs() <= 1e-6 * loss_off.abs().max(1.0),
        "{what}: loss {loss_off} (off) vs {loss_on} (on)"
    );
    assert_same_grads(what, &off, &on, tol);
}

fn tiny_model(mode: BaseMode) -> TrainModel {
    TrainModel::load(&common::tiny().model, mode, &Device::Cpu).unwrap()
}

#[test]
fn tiny_checkpointing_keeps_the_loss_and_every_lora_gradient() {
    for mode in [BaseMode::Quantized, BaseMode::Dequantized] {
        for dropout in [0.0, 0.1] {
            let mut m = tiny_model(mode);
            m.attach_lora(&all_targets(4, dropout), 7).unwrap();
            randomize_b(&m, 0.05, 100);
            let (ids, labels) = batch(m.shape.n_vocab, 2, 12, 1);
            compare_on_off(
                &format!("tiny {mode:?} dropout {dropout}"),
                &mut m,
                (&ids, &labels),
                3,
                GRAD_TOL,
            );
        }
    }
}

#[test]
fn smollm2_checkpointing_keeps_the_loss_and_every_lora_gradient() {
    for mode in [BaseMode::Quantized, BaseMode::Dequantized] {
        let mut m = TrainModel::load(&common::smollm2(), mode, &Device::Cpu).unwrap();
        m.attach_lora(&all_targets(4, 0.05), 11).unwrap();
        randomize_b(&m, 0.01, 5);
        let (ids, labels) = batch(m.shape.n_vocab, 2, 16, 2);
        compare_on_off(
            &format!("smollm2 {mode:?}"),
            &mut m,
            (&ids, &labels),
            1,
            SMOLLM2_GRAD_TOL,
        );
    }
}

/// Only some layers adapted (a loaded adapter may cover a few): blocks
/// without LoRA are checkpointed too, and gradients still reach the rest.
#[test]
fn partial_adapters_and_targets_get_the_same_gradients() {
    let mut m = tiny_model(BaseMode::Quantized);
    let spec = LoraSpec {
        targets: vec![Target::V, Target::Down],
        ..all_targets(4, 0.1)
    };
    m.attach_lora(&spec, 3).unwrap();
    randomize_b(&m, 0.05, 9);
    let (ids, labels) = batch(m.shape.n_vocab, 2, 10, 4);
    compare_on_off("tiny V+Down", &mut m, (&ids, &labels), 5, GRAD_TOL);

    // Layer 1 only: layer 0 has nothing to train and an untracked input.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layer1.gguf");
    let params: Vec<_> = m
        .lora_params()
        .into_iter()
        .filter(|p| p.layer == 1)
        .collect();
    her_train::lora::write_lora_gguf(&path, m.shape.arch.as_str(), &spec, &params).unwrap();
    m.load_lora_gguf(&path).unwrap();
    assert!(m.lora_params().iter().all(|p| p.layer == 1));
    compare_on_off("tiny layer 1 only", &mut m, (&ids, &labels), 5, GRAD_TOL);
}

/// Two forward passes in one loss (as DPO does with sequence_logprobs):
/// each checkpointed block's gradients add up.
#[test]
fn gradients_of_two_forwards_in_one_loss_add_up() {
    let mut m = tiny_model(BaseMode::Dequantized);
    m.attach_lora(&all_targets(4, 0.0), 5).unwrap();
    randomize_b(&m, 0.05, 50);
    let (ids1, labels1) = batch(m.shape.n_vocab, 2, 9, 10);
    let (ids2, labels2) = batch(m.shape.n_vocab, 2, 9, 11);
    let run_both = |m: &TrainModel| {
        let a = m.sequence_logprobs(&ids1, &labels1).unwrap();
        let b = m.sequence_logprobs(&ids2, &labels2).unwrap();
        let loss = (a.sum_all().unwrap() - (b.sum_all().unwrap() * 0.5).unwrap()).unwrap();
        (scalar(&loss), lora_grads(m, &m.backward(&loss).unwrap()))
    };
    let (loss_off, off) = run_both(&m);
    m.set_activation_checkpointing(true);
    let (loss_on, on) = run_both(&m);
    assert!((loss_on - loss_off).abs() <= 1e-6 * loss_off.abs().max(1.0));
    assert_same_grads("two forwards", &off, &on, GRAD_TOL);
}

/// Side gradients do not leak from one backward into the next, even after
/// a plain `loss.backward()` that left its own behind; evaluation (no
/// backward) gives the same logits and leaves nothing either.
#[test]
fn side_gradients_do_not_leak_between_backward_passes() {
    let mut m = tiny_model(BaseMode::Quantized);
    m.attach_lora(&all_targets(4, 0.1), 8).unwrap();
    randomize_b(&m, 0.05, 70);
    let (ids, labels) = batch(m.shape.n_vocab, 2, 12, 3);
    let logits_off = flat(&m.logits(&ids).unwrap());
    m.set_activation_checkpointing(true);
    assert_eq!(logits_off, flat(&m.logits(&ids).unwrap()));

    let (_, first) = loss_and_grads(&m, &ids, &labels, 2);
    let (_, second) = loss_and_grads(&m, &ids, &labels, 2);
    assert_eq!(first, second);
    // A plain backward misses the checkpointed blocks' LoRA gradients...
    let (loss, _) = m.loss(&ids, &labels, true, 2).unwrap();
    let plain = loss.backward().unwrap();
    let p = &m.lora_params()[0];
    assert!(plain.get(p.a.as_tensor()).is_none());
    // ...and what it left on the side is not added to the next backward.
    let (_, third) = loss_and_grads(&m, &ids, &labels, 2);
    assert_eq!(first, third);
}

use common::sample;

/// `train.activation_checkpointing` in an SFT run: the same loss curve.
#[test]
fn sft_with_activation_checkpointing_follows_the_same_loss_curve() {
    let samples = vec![
        sample("Darcy: Do you dance?", "Elizabeth: Not with you."),
        sample("Jane: Are you well?", "Elizabeth: Quite well."),
        sample("Charlotte: Any news?", "Elizabeth: None at all."),
        sample("Mr. Bennet: Lizzy?", "Elizabeth: Yes, papa."),
    ];
    let curve = |on: bool| {
        let dir = tempfile::tempdir().unwrap();
        let model = common::tiny().model.clone();
        let settings = TrainConfig {
            rank: 8,
            alpha: 16.0,
            dropout: 0.1,
            learning_rate: 3e-3,
            warmup_steps: 0,
            max_steps: 5,
            batch_size: 2,
            eval_fraction: 0.0,
            eval_every: 0,
            checkpoint_every: 0,
            activation_checkpointing: on,
            ..TrainConfig::default()
        };
        let job = SftJob {
            spec: common::spec(&model, settings, dir.path().join("run"), false),
            sources: Vec::new(),
        };
        run(&job, samples.clone(), &AtomicBool::new(false), &mut |_| {})
            .unwrap()
            .losses
    };
    let (off, on) = (curve(false), curve(true));
    assert_eq!(off.len(), 5);
    for (a, b) in off.iter().zip(&on) {
        assert!(
            (a - b).abs() <= 1e-5 * a.abs().max(1.0),
            "{off:?} vs {on:?}"
        );
    }
}

// ---- Peak memory and speed (measured, printed, not asserted) ----

const PROBE_ENV: &str = "HER_CKPT_PROBE";

/// Runs in a child process (see below): load SmolLM2, r16 LoRA on all
/// projections (the defaults), two training steps at 4×256 with AdamW;
/// prints one `PROBE` line.
#[test]
#[ignore = "a measurement child, started by peak_memory_and_speed_report"]
fn probe_one_training_step() {
    let Ok(which) = std::env::var(PROBE_ENV) else {
        return;
    };
    let (mode, on) = match which.as_str() {
        "quantized-off" => (BaseMode::Quantized, false),
        "quantized-on" => (BaseMode::Quantized, true),
        "dequantized-off" => (BaseMode::Dequantized, false),
        "dequantized-on" => (BaseMode::Dequantized, true),
        other => panic!("{PROBE_ENV}={other}?"),
    };
    let defaults = TrainConfig::default();
    let mut m = TrainModel::load(&common::smollm2(), mode, &Device::Cpu).unwrap();
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
    m.set_activation_checkpointing(on);
    let loaded_mib = her_train::run::memory_mib().1;
    let params: Vec<_> = m
        .lora_params()
        .iter()
        .enumerate()
        .flat_map(|(i, p)| {
            [
                (format!("{i}.a"), p.a.clone()),
                (format!("{i}.b"), p.b.clone()),
            ]
        })
        .collect();
    let mut opt = AdamW::new(params.clone(), AdamWConfig::default()).unwrap();
    let mut times = Vec::new();
    let mut losses = Vec::new();
    let mut faults = Vec::new();
    for step in 0..2u64 {
        let faults_before = minor_faults();
        let (ids, labels) = batch(m.shape.n_vocab, 4, 256, 100 + step);
        let began = Instant::now();
        let (loss, _) = m.loss(&ids, &labels, true, step).unwrap();
        let grads = m.backward(&loss).unwrap();
        let mut acc = Accumulator::new(params.len());
        acc.add(&params, &grads, 1.0).unwrap();
        assert!(acc.missing(&params).is_empty());
        acc.clip(1.0).unwrap();
        opt.step(&acc, 2e-4).unwrap();
        times.push(began.elapsed().as_secs_f64());
        losses.push(scalar(&loss));
        faults.push(minor_faults() - faults_before);
    }
    let peak_mib = her_train::run::memory_mib().1;
    println!(
        "PROBE {which} loaded_mib={loaded_mib:.0} peak_mib={peak_mib:.0} step1_s={:.2} step2_s={:.2} tok_s={:.1} loss={:?} page_faults={faults:?}",
        times[0],
        times[1],
        1024.0 / times[1],
        losses
    );
}

/// Minor page faults of this process so far (Linux; 0 elsewhere): a fresh
/// page the kernel must zero costs about as much as filling it.
fn minor_faults() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; minflt is field 10.
            let rest = s.rsplit_once(')')?.1;
            rest.split_whitespace().nth(7)?.parse().ok()
        })
        .unwrap_or(0)
}

#[test]
#[ignore = "slow measurement: run explicitly with --ignored --nocapture"]
fn peak_memory_and_speed_report() {
    common::report_probes(
        "probe_one_training_step",
        PROBE_ENV,
        &[
            "quantized-off",
            "quantized-on",
            "dequantized-off",
            "dequantized-on",
        ],
    );
}
