//! `train.dtype = "bf16"` against f32 on the portable path (the code a GPU
//! runs), on whole models: the loss, the token log-probs and every LoRA
//! gradient of one step, within `parity::BF16_BOUNDS` (why those bounds:
//! see there), and the check that the difference is rounding: f16, with
//! three more significant bits, lands several times closer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use her_train::model::BaseMode;
use her_train::parity::{BF16_BOUNDS, Case, Distance, Setup, outcome};

fn assert_bf16_close(case: &Case) {
    let cpu = Device::Cpu;
    let f32_run = outcome(case, &Setup::portable(&cpu, DType::F32), false).unwrap();
    let bf16_run = outcome(case, &Setup::portable(&cpu, DType::BF16), false).unwrap();
    let d = Distance::between(&f32_run, &bf16_run);
    eprintln!(
        "{}: {} (worst matrix {:.2e})",
        case.what,
        d.summary(),
        d.worst_grad()
    );
    let failures = d.failures(&BF16_BOUNDS);
    assert!(
        failures.is_empty(),
        "{}: {}",
        case.what,
        failures.join("; ")
    );
}

fn sweep(name: &str, model: &Path, size: (usize, usize)) {
    for mode in [BaseMode::Quantized, BaseMode::Dequantized] {
        for checkpointing in [false, true] {
            let what = format!("{name} {mode:?} checkpointing {checkpointing}");
            assert_bf16_close(&Case {
                mode,
                checkpointing,
                dropout: 0.1,
                ..Case::new(what, model, size)
            });
        }
    }
}

#[test]
fn tiny_qwen3_bf16_tracks_f32() {
    sweep("tiny qwen3", &common::tiny().model, (2, 12));
}

fn tiny_qwen2() -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bf16-tiny-qwen2.gguf");
    common::tiny_qwen2_writer(1).write(&path).unwrap();
    path
}

#[test]
fn tiny_qwen2_bf16_tracks_f32() {
    sweep("tiny qwen2", &tiny_qwen2(), (2, 12));
}

#[test]
fn smollm2_bf16_tracks_f32() {
    sweep("smollm2", &common::smollm2(), (2, 16));
}

/// The bf16 differences are rounding, not a wrong op: with f16 (11
/// significant bits against bf16's 8, so 8× finer rounding) the portable
/// path lands several times closer to f32, on the whole gradient and the
/// log-probs. A wrong cast or a dropped term would not shrink with the
/// precision.
#[test]
fn the_differences_shrink_with_the_precision() {
    let cpu = Device::Cpu;
    for (name, model, size) in [
        ("tiny qwen3", common::tiny().model.clone(), (2, 12)),
        ("smollm2", common::smollm2(), (2, 16)),
    ] {
        let case = Case::new(name, &model, size);
        let at = |dtype| outcome(&case, &Setup::portable(&cpu, dtype), false).unwrap();
        let reference = at(DType::F32);
        let bf16 = Distance::between(&reference, &at(DType::BF16));
        let f16 = Distance::between(&reference, &at(DType::F16));
        eprintln!(
            "{name} bf16: {}\n{name} f16: {}",
            bf16.summary(),
            f16.summary()
        );
        assert!(
            3.0 * f16.grad_relative_l2() < bf16.grad_relative_l2(),
            "{name}: gradient error f16 {} vs bf16 {}",
            f16.grad_relative_l2(),
            bf16.grad_relative_l2()
        );
        assert!(
            3.0 * f16.logprob_diff < bf16.logprob_diff,
            "{name}: log-prob error f16 {} vs bf16 {}",
            f16.logprob_diff,
            bf16.logprob_diff
        );
    }
}

/// The fused kernels compute in f32 only: asking them for bf16 is an
/// error that names the setting, not a silent f32 run.
#[test]
fn the_fused_kernels_refuse_bf16() {
    let case = Case::new("fused bf16", &common::tiny().model, (1, 4));
    let setup = Setup {
        dtype: DType::BF16,
        ..Setup::fused_cpu()
    };
    let err = outcome(&case, &setup, false).err().unwrap().to_string();
    assert!(
        err.contains("train.dtype") && err.contains("portable"),
        "{err}"
    );
}
