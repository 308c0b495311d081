#![allow(clippy::unwrap_used)]

use super::*;
use crate::lora::Target;
use crate::model::{Arch, BaseMode};

const GIB: u64 = 1 << 30;

fn smollm2_settings() -> PlanSettings {
    PlanSettings {
        batch: 4,
        seq: 256,
        rank: 16,
        targets: Target::ALL.to_vec(),
        dtype: PlanDtype::F32,
        checkpointing: false,
        base: BaseMode::Quantized,
        device: PlanDevice::Cpu,
        rollout_engine: false,
    }
}

fn smollm2() -> PlanShape {
    PlanShape::named("smollm2", 4.5).unwrap()
}

fn total(shape: &PlanShape, s: &PlanSettings) -> u64 {
    plan(shape, s, 50 << 20).total()
}

#[test]
fn attention_keeps_one_log_sum_exp_per_row_and_head() {
    assert_eq!(attention_kept_bytes(1, 1, 64), 4 * 64);
    assert_eq!(attention_kept_bytes(3, 5, 128), 4 * 3 * 5 * 128);
    // Linear: twice the length, twice the bytes.
    assert_eq!(
        attention_kept_bytes(1, 16, 4096),
        2 * attention_kept_bytes(1, 16, 2048)
    );
}

#[test]
fn hand_values_for_smollm2_at_4x256() {
    // Each term worked out by hand from the formula's comments.
    let (shape, s) = (smollm2(), smollm2_settings());
    assert_eq!(lora_parameters(&shape, 16, &Target::ALL), 4_884_480);
    let p = plan(&shape, &s, 0);
    assert_eq!(p.term(LORA), Some(16 * 4_884_480));
    // 4·1024·(6·576 + 3·576 + 3·192 + 3·1536) + 4·4·9·256 (log-sum-exp) + 4·7·1024·16
    assert_eq!(
        layer_kept_bytes(&shape, &s),
        4 * 1024 * 10_368 + 4 * 4 * 9 * 256 + 458_752
    );
    // Head, no checkpointing: 4096-row blocks (16 MiB), the packed hidden
    // states and their gradient, and all 12 blocks (192 MiB) kept.
    let head = 1024 * 4096 * 4 + 2 * 1024 * 576 * 4 + 1024 * 49_152 * 4;
    assert_eq!(p.term(HEAD), Some(head));
    // The scratch: the largest projection (1536×576) or a head block (4096×576).
    assert_eq!(p.term(TILE), Some(4096 * 576 * 4));
    // Dequantized on the CPU: every element in f32, and no scratch.
    let d = plan(
        &shape,
        &PlanSettings {
            base: BaseMode::Dequantized,
            ..s
        },
        0,
    );
    assert_eq!(d.term(BASE), Some(shape.elements * 4));
    assert_eq!(d.term(TILE), Some(0));
}

#[test]
fn named_shapes_match_their_configs() {
    // Parameter counts of the Hugging Face models (embeddings included).
    let params = |n: &str| {
        let s = PlanShape::named(n, 16.0).unwrap();
        s.elements as f64 / 1e9
    };
    assert!(
        (params("qwen3-1.7b") - 1.72).abs() < 0.02,
        "{}",
        params("qwen3-1.7b")
    );
    assert!(
        (params("qwen3-8b") - 8.19).abs() < 0.02,
        "{}",
        params("qwen3-8b")
    );
    assert!(
        (params("qwen3-32b") - 32.76).abs() < 0.05,
        "{}",
        params("qwen3-32b")
    );
    assert!(
        (params("smollm2") - 0.1348).abs() < 0.001,
        "{}",
        params("smollm2")
    );
    // Q4_K_M ≈ 4.85 bits: a 32B model is ~19 GiB of weights.
    let q = PlanShape::named("qwen3-32b", 4.85).unwrap();
    assert!((18.0..19.5).contains(&(q.stored_bytes as f64 / GIB as f64)));
    assert_eq!(q.arch, Arch::Qwen3);
    assert!(PlanShape::named("llama-70b", 4.85).is_none());
    assert!(PlanShape::named("qwen3-8b", 0.0).is_none());
}

#[test]
fn from_gguf_sums_the_tensor_infos() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    her_gguf::write_tiny_qwen3(&path, 7).unwrap();
    let shape = PlanShape::from_gguf(&path).unwrap();
    let header = her_gguf::inspect(&path).unwrap();
    let bytes: u64 = header.tensors().iter().map(|t| t.n_bytes).sum();
    assert_eq!(shape.stored_bytes, bytes);
    assert_eq!(shape.elements, header.parameter_count());
    assert_eq!(shape.arch, Arch::Qwen3);
    assert!(shape.largest_matrix > 0);
    assert!(shape.metadata_bytes > 0 && shape.metadata_bytes <= header.file_size());
    // Not a GGUF: the error names the file.
    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, b"not a gguf").unwrap();
    let err = PlanShape::from_gguf(&bad).unwrap_err().to_string();
    assert!(err.contains("bad.gguf"), "{err}");
}

#[test]
fn the_plan_grows_with_rows_tokens_and_rank() {
    let shape = PlanShape::named("qwen3-1.7b", 4.85).unwrap();
    for device in [PlanDevice::Cpu, PlanDevice::Cuda] {
        for checkpointing in [false, true] {
            let s = PlanSettings {
                device,
                checkpointing,
                ..smollm2_settings()
            };
            let at = |f: &dyn Fn(&mut PlanSettings)| {
                let mut n = s.clone();
                f(&mut n);
                total(&shape, &n)
            };
            let base = total(&shape, &s);
            assert!(at(&|n| n.seq *= 2) > base);
            assert!(at(&|n| n.batch *= 2) > base);
            assert!(at(&|n| n.rank *= 2) > base);
            assert!(at(&|n| n.targets.truncate(2)) < base);
            assert!(at(&|n| n.base = BaseMode::Dequantized) > base);
        }
    }
}

#[test]
fn checkpointing_and_bf16_lower_the_activations() {
    let shape = PlanShape::named("qwen3-8b", 4.85).unwrap();
    let s = PlanSettings {
        device: PlanDevice::Cuda,
        seq: 2048,
        batch: 1,
        ..smollm2_settings()
    };
    let off = plan(&shape, &s, 0);
    let on = plan(
        &shape,
        &PlanSettings {
            checkpointing: true,
            ..s.clone()
        },
        0,
    );
    assert!(on.term(ACTIVATIONS).unwrap() * 4 < off.term(ACTIVATIONS).unwrap());
    let bf16 = plan(
        &shape,
        &PlanSettings {
            dtype: PlanDtype::Bf16,
            ..s
        },
        0,
    );
    assert!(bf16.term(ACTIVATIONS).unwrap() < off.term(ACTIVATIONS).unwrap());
    // LoRA and AdamW stay f32.
    assert_eq!(bf16.term(LORA), off.term(LORA));
}

#[test]
fn the_verdict_keeps_five_percent_free() {
    let p = Plan {
        terms: vec![Term {
            name: BASE,
            bytes: 95,
            note: String::new(),
        }],
    };
    let budget = |b| Budget {
        bytes: Some(b),
        source: String::new(),
    };
    assert_eq!(verdict(&p, &budget(100)), Verdict::Fits);
    assert_eq!(verdict(&p, &budget(99)), Verdict::DoesNotFit);
    let unknown = Budget {
        bytes: None,
        source: String::new(),
    };
    assert_eq!(verdict(&p, &unknown), Verdict::Unknown);
}

#[test]
fn suggestions_put_checkpointing_first_and_say_when_nothing_fits() {
    let (shape, s) = (smollm2(), smollm2_settings());
    let runtime = 50 << 20;
    let need = total(&shape, &s);
    let ckpt = total(
        &shape,
        &PlanSettings {
            checkpointing: true,
            ..s.clone()
        },
    );
    // A budget only checkpointing (or a smaller step) gets under.
    let budget = Budget {
        bytes: Some((ckpt as f64 / FIT_SHARE) as u64 + (1 << 20)),
        source: String::new(),
    };
    assert!(need as f64 > FIT_SHARE * budget.bytes.unwrap() as f64);
    let Suggestions::Single(list) = suggestions(&shape, &s, runtime, &budget) else {
        panic!("one change should fit");
    };
    assert_eq!(list[0].change, "train.activation_checkpointing = true");
    assert!(
        list.iter()
            .all(|x| x.total as f64 <= FIT_SHARE * budget.bytes.unwrap() as f64)
    );
    // Below the base weights: nothing fits, and it says how much.
    let tiny = Budget {
        bytes: Some(shape.stored_bytes / 2),
        source: String::new(),
    };
    match suggestions(&shape, &s, runtime, &tiny) {
        Suggestions::Nothing { smallest, base } => {
            assert_eq!(base, shape.stored_bytes);
            assert!(smallest > base && smallest < need);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn combined_suggestions_fit_when_no_single_change_does() {
    let shape = PlanShape::named("qwen3-8b", 4.85).unwrap();
    let s = PlanSettings {
        device: PlanDevice::Cuda,
        batch: 8,
        seq: 4096,
        base: BaseMode::Dequantized,
        ..smollm2_settings()
    };
    let budget = Budget {
        bytes: Some(24 * GIB),
        source: String::new(),
    };
    match suggestions(&shape, &s, CUDA_CONTEXT_BYTES, &budget) {
        Suggestions::Combined(c) => {
            assert!(c.total as f64 <= FIT_SHARE * (24 * GIB) as f64);
            assert!(
                c.change
                    .starts_with("train.activation_checkpointing = true"),
                "{}",
                c.change
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_table_names_every_term_the_budget_and_the_verdict() {
    let report = PlanReport::new(
        smollm2(),
        smollm2_settings(),
        50 << 20,
        Budget {
            bytes: Some(GIB / 2),
            source: "train.memory_limit_gib = 0.5".into(),
        },
    );
    let text = report.to_string();
    for name in [
        BASE,
        LORA,
        ACTIVATIONS,
        TILE,
        HEAD,
        RUNTIME,
        "total",
        "budget",
    ] {
        assert!(text.contains(name), "{name}: {text}");
    }
    assert!(text.contains("does NOT fit"), "{text}");
    assert!(
        text.contains("train.activation_checkpointing = true"),
        "{text}"
    );
}
