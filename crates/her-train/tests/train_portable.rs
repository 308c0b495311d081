//! The portable op set (`train.kernels = "portable"`, the code a GPU runs)
//! against the fused CPU kernels on whole models: the same loss, the same
//! gradient for every LoRA A and B and the same token log-probs, on the
//! tiny Qwen3 (q/k norm, NEOX rope), a tiny Qwen2 (q/k/v biases) and
//! SmolLM2 Q4_1 (llama: NORM rope, tied head, GQA 9/3); both base modes,
//! activation checkpointing off and on, dropout 0 and 0.1. Every LoRA B is
//! random first: with PEFT's B = 0 every A gradient would be 0 and a broken
//! dA would pass.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use her_core::rng::SplitMix64;
use her_train::lora::{LoraSpec, Target};
use her_train::model::{BaseMode, OpPath, Segments, TrainModel};
use her_train::optim::Accumulator;
use her_train::train_loop::trainer::named_params;

fn randn(shape: &[usize], std: f64, seed: u64) -> Tensor {
    let mut rng = SplitMix64::new(seed);
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| (rng.normal() * std) as f32).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |m, x| m.max(x.abs()))
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// What one path computes on one batch.
struct Outcome {
    loss: f32,
    /// (name, gradient) per LoRA matrix, in parameter order.
    grads: Vec<(String, Vec<f32>)>,
    logprobs: Vec<f32>,
}

struct Case<'a> {
    what: String,
    model: &'a Path,
    mode: BaseMode,
    checkpointing: bool,
    dropout: f64,
    /// (b, t) of the batch.
    size: (usize, usize),
    /// Sample lengths per row: several samples packed into a row.
    packed: Option<Vec<Vec<usize>>>,
}

/// `nudge` moves every LoRA B value by one part in 10⁷ (about an f32
/// rounding step): the noise floor of the gradients' sensitivity.
fn outcome(case: &Case<'_>, path: OpPath, nudge: bool) -> Outcome {
    let mut m = TrainModel::load(case.model, case.mode, &Device::Cpu).unwrap();
    m.set_op_path(path);
    let spec = LoraSpec {
        rank: 4,
        alpha: 8.0,
        dropout: case.dropout,
        targets: Target::ALL.to_vec(),
    };
    m.attach_lora(&spec, 7).unwrap();
    for (i, p) in m.lora_params().iter().enumerate() {
        let b = randn(p.b.dims(), 0.05, 100 + i as u64);
        let b = if nudge {
            (b * (1.0 + 1e-7)).unwrap()
        } else {
            b
        };
        p.b.set(&b).unwrap();
    }
    m.set_activation_checkpointing(case.checkpointing);
    let (b, t) = case.size;
    let (ids, labels) = common::next_token_batch(m.shape.n_vocab, b, t, 3);
    let segments = case
        .packed
        .as_ref()
        .map(|rows| Segments::from_lengths(t, rows).unwrap());
    let (loss, _) = m
        .packed_loss(&ids, &labels, segments.as_ref(), true, 5)
        .unwrap();
    let grads = m.backward(&loss).unwrap();
    let params = named_params(&m.lora_params());
    let mut acc = Accumulator::new(params.len());
    acc.add(&params, &grads, 1.0).unwrap();
    assert!(
        acc.missing(&params).is_empty(),
        "{} {path:?}: no gradient for {:?}",
        case.what,
        acc.missing(&params)
    );
    let grads = params
        .iter()
        .map(|(name, v)| {
            let g = grads.get(v.as_tensor()).unwrap();
            // A tracked gradient would keep the step's graph alive.
            assert!(
                !g.track_op(),
                "{} {path:?}: {name}'s gradient holds a graph",
                case.what
            );
            (name.clone(), flat(g))
        })
        .collect();
    let logprobs = flat(&m.token_logprobs(&ids, &labels).unwrap());
    Outcome {
        loss: loss.to_scalar::<f32>().unwrap(),
        grads,
        logprobs,
    }
}

/// Asserts the portable path matches the fused one: loss and log-probs
/// within 1e-5 of max(1, the fused magnitude), each LoRA gradient within
/// `grad_tol` of max(1, its fused max |g|). Prints the figures first,
/// including the largest gradient difference per layer relative to each
/// matrix's own max |g|.
fn assert_parity(case: &Case<'_>, grad_tol: f32) {
    let fused = outcome(case, OpPath::Fused, false);
    let portable = outcome(case, OpPath::Portable, false);
    compare(case, &fused, &portable, grad_tol);
}

fn compare(case: &Case<'_>, fused: &Outcome, portable: &Outcome, grad_tol: f32) {
    let what = &case.what;
    let dl = (portable.loss - fused.loss).abs();
    let dlp = max_diff(&fused.logprobs, &portable.logprobs);
    let mut per_layer: Vec<f32> = Vec::new();
    let mut failures = Vec::new();
    for ((name, f), (_, p)) in fused.grads.iter().zip(&portable.grads) {
        let (scale, d) = (max_abs(f), max_diff(f, p));
        assert!(scale > 0.0, "{what}: {name} has a zero gradient");
        assert!(
            p.iter().all(|v| v.is_finite()),
            "{what}: {name} is not finite"
        );
        if d > grad_tol * scale.max(1.0) {
            failures.push(format!("{name} differs by {d} (max |g| {scale})"));
        }
        let layer: usize = name
            .strip_prefix("blk.")
            .and_then(|rest| rest.split('.').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        if per_layer.len() <= layer {
            per_layer.resize(layer + 1, 0.0);
        }
        per_layer[layer] = per_layer[layer].max(d / scale);
    }
    let layers: Vec<String> = per_layer.iter().map(|v| format!("{v:.1e}")).collect();
    eprintln!(
        "{what}: loss {} |Δ| {dl:e}; log-probs max |Δ| {dlp:e}; per layer max |Δg|/max|g|: [{}]",
        fused.loss,
        layers.join(" ")
    );
    assert!(
        dl <= 1e-5 * fused.loss.abs().max(1.0),
        "{what}: loss {} (fused) vs {} (portable)",
        fused.loss,
        portable.loss
    );
    assert!(
        dlp <= 1e-5 * max_abs(&fused.logprobs).max(1.0),
        "{what}: token log-probs differ by {dlp}"
    );
    assert!(failures.is_empty(), "{what}: {}", failures.join("; "));
}

/// The bound for the gradients of the tiny models (measured: ~1.3e-6 of
/// each matrix's max |g|).
const GRAD_TOL: f32 = 1e-5;

/// SmolLM2 misses 1e-5, and this says by how much. Its logits are large, so
/// the f32 rounding of the two paths' different gemm summation orders moves
/// each softmax probability by a few 1e-5 relative, and every LoRA gradient
/// with it. Measured (quantized, no checkpointing, dropout 0) per layer,
/// max |Δg| / max |g|: 1.4e-4 at layer 0, 1.8e-5 to 6.8e-5 at layers 1-29;
/// the fused path against itself with B moved by one rounding step
/// (`smollm2_noise_floor_report`) gives 2.2e-5 at layer 0 and 2.7e-6 to
/// 2.3e-5 elsewhere. Loss and log-probs stay within 1e-5.
const SMOLLM2_GRAD_TOL: f32 = 5e-4;

fn sweep(name: &str, model: &Path, size: (usize, usize), grad_tol: f32) {
    for mode in [BaseMode::Quantized, BaseMode::Dequantized] {
        for checkpointing in [false, true] {
            for dropout in [0.0, 0.1] {
                assert_parity(
                    &Case {
                        what: format!(
                            "{name} {mode:?} checkpointing {checkpointing} dropout {dropout}"
                        ),
                        model,
                        mode,
                        checkpointing,
                        dropout,
                        size,
                        packed: None,
                    },
                    grad_tol,
                );
            }
        }
    }
}

#[test]
fn tiny_qwen3_portable_matches_fused() {
    sweep("tiny qwen3", &common::tiny().model, (2, 12), GRAD_TOL);
}

fn tiny_qwen2() -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("portable-tiny-qwen2.gguf");
    common::tiny_qwen2_writer(1).write(&path).unwrap();
    path
}

#[test]
fn tiny_qwen2_with_biases_portable_matches_fused() {
    sweep("tiny qwen2", &tiny_qwen2(), (2, 12), GRAD_TOL);
}

#[test]
fn smollm2_portable_matches_fused() {
    sweep("smollm2", &common::smollm2(), (2, 16), SMOLLM2_GRAD_TOL);
}

/// Packed rows: per-token rope positions and block-diagonal attention on
/// both paths.
#[test]
fn packed_rows_portable_matches_fused() {
    for (name, model, tol) in [
        ("tiny qwen3", common::tiny().model.clone(), GRAD_TOL),
        ("smollm2", common::smollm2(), SMOLLM2_GRAD_TOL),
    ] {
        for checkpointing in [false, true] {
            assert_parity(
                &Case {
                    what: format!("{name} packed checkpointing {checkpointing}"),
                    model: &model,
                    mode: BaseMode::Quantized,
                    checkpointing,
                    dropout: 0.1,
                    size: (2, 14),
                    packed: Some(vec![vec![5, 6], vec![3, 4, 7]]),
                },
                tol,
            );
        }
    }
}

/// Not a check: the fused path against itself with every LoRA B moved by
/// one f32 rounding step, in the same per-layer figures as the parity
/// tests; how far rounding alone moves SmolLM2's gradients.
/// `cargo test --release -p her-train --test train_portable -- --ignored --nocapture noise_floor`
#[test]
#[ignore]
fn smollm2_noise_floor_report() {
    let model = common::smollm2();
    let case = Case {
        what: "smollm2 fused vs fused with B nudged".into(),
        model: &model,
        mode: BaseMode::Quantized,
        checkpointing: false,
        dropout: 0.0,
        size: (2, 16),
        packed: None,
    };
    let a = outcome(&case, OpPath::Fused, false);
    let b = outcome(&case, OpPath::Fused, true);
    compare(&case, &a, &b, f32::INFINITY);
}
