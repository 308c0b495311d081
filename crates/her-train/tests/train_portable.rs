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

use her_train::model::BaseMode;
use her_train::parity::{Bounds, Case, Distance, GradBound, Setup, outcome};

/// Asserts the portable path matches the fused one: loss and log-probs
/// within 1e-5 of max(1, the fused magnitude), each LoRA gradient within
/// `grad_tol` of max(1, its fused max |g|). Prints the figures first,
/// including the largest gradient difference per layer relative to each
/// matrix's own max |g|.
fn assert_parity(case: &Case, grad_tol: f32) {
    // The reference keeps the head whole.
    let whole = Case {
        head_block_rows: None,
        ..case.clone()
    };
    let fused = outcome(&whole, &Setup::fused_cpu(), false).unwrap();
    let cpu = candle_core::Device::Cpu;
    let portable = outcome(case, &Setup::portable(&cpu, candle_core::DType::F32), false).unwrap();
    compare(case, &fused, &portable, grad_tol);
}

fn compare(
    case: &Case,
    reference: &her_train::parity::Outcome,
    other: &her_train::parity::Outcome,
    grad_tol: f32,
) {
    let d = Distance::between(reference, other);
    eprintln!("{}: {}", case.what, d.summary());
    let failures = d.failures(&Bounds {
        values: 1e-5,
        grad: GradBound::PerMatrix(grad_tol),
    });
    assert!(
        failures.is_empty(),
        "{}: {}",
        case.what,
        failures.join("; ")
    );
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
                let what =
                    format!("{name} {mode:?} checkpointing {checkpointing} dropout {dropout}");
                assert_parity(
                    &Case {
                        mode,
                        checkpointing,
                        dropout,
                        ..Case::new(what, model, size)
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
            let what = format!("{name} packed checkpointing {checkpointing}");
            assert_parity(
                &Case {
                    checkpointing,
                    dropout: 0.1,
                    packed: Some(vec![vec![5, 6], vec![3, 4, 7]]),
                    ..Case::new(what, &model, (2, 14))
                },
                tol,
            );
        }
    }
}

/// The head kept in blocks of rows, as a GPU keeps it (each block
/// dequantized alone for its slice of the loss), computes what the whole
/// head computes: tied (tiny Qwen3, SmolLM2 Q4_1) and untied (tiny Qwen2)
/// heads, blocks that do not divide the vocabulary.
#[test]
fn a_head_in_blocks_matches_the_whole_head() {
    for (name, model, tol, rows) in [
        ("tiny qwen3", common::tiny().model.clone(), GRAD_TOL, 100),
        ("tiny qwen2", tiny_qwen2(), GRAD_TOL, 100),
        ("smollm2", common::smollm2(), SMOLLM2_GRAD_TOL, 8192),
    ] {
        let what = format!("{name} head in blocks of {rows}");
        assert_parity(
            &Case {
                head_block_rows: Some(rows),
                ..Case::new(what, &model, (2, 12))
            },
            tol,
        );
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
    let case = Case::new("smollm2 fused vs fused with B nudged", &model, (2, 16));
    let a = outcome(&case, &Setup::fused_cpu(), false).unwrap();
    let b = outcome(&case, &Setup::fused_cpu(), true).unwrap();
    compare(&case, &a, &b, f32::INFINITY);
}
