//! The trainer's model on the generated tiny Qwen3 (and SmolLM2 for the
//! llama arch with a quantized base): gradients reach every LoRA matrix,
//! match finite differences, the quantized backward equals the dequantized
//! reference, losses agree with the logits, and runs are deterministic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{D, DType, Device, Tensor, Var};
use her_core::rng::SplitMix64;
use her_train::error::TrainError;
use her_train::lora::{LoraSpec, Target, write_lora_gguf};
use her_train::model::{Arch, BaseMode, FrozenLinear, FrozenWeight, RopeStyle, TrainModel};

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

/// Fresh PEFT init has B = 0, so dL/dA = (dL/d(low))·… ·B = 0 and only B
/// would get a gradient; small random B makes every A gradient observable.
fn randomize_b(model: &TrainModel, std: f64, seed: u64) {
    for (i, p) in model.lora_params().iter().enumerate() {
        p.b.set(&randn(p.b.dims(), std, seed + i as u64)).unwrap();
    }
}

/// Random ids (b, t) and labels = the next id, the last position masked.
fn batch(vocab: usize, b: usize, t: usize, seed: u64) -> (Tensor, Tensor) {
    let mut rng = SplitMix64::new(seed);
    let ids: Vec<i64> = (0..b * (t + 1))
        .map(|_| (rng.next_u64() % vocab as u64) as i64)
        .collect();
    let mut x = Vec::new();
    let mut y = Vec::new();
    for row in ids.chunks(t + 1) {
        x.extend_from_slice(&row[..t]);
        y.extend_from_slice(&row[1..]);
    }
    // One masked label per row, as padding would be.
    for r in 0..b {
        y[r * t + t - 1] = -100;
    }
    let dev = Device::Cpu;
    (
        Tensor::from_vec(x, (b, t), &dev).unwrap(),
        Tensor::from_vec(y, (b, t), &dev).unwrap(),
    )
}

fn tiny_model(mode: BaseMode) -> TrainModel {
    TrainModel::load(&common::tiny().model, mode, &Device::Cpu).unwrap()
}

fn scalar(t: &Tensor) -> f64 {
    f64::from(t.to_scalar::<f32>().unwrap())
}

#[test]
fn tiny_qwen3_shape_comes_from_the_gguf() {
    let m = tiny_model(BaseMode::Quantized);
    let spec = &common::tiny().spec;
    let s = &m.shape;
    assert_eq!(s.arch, Arch::Qwen3);
    assert_eq!(s.rope_style, RopeStyle::Neox);
    assert!(s.qk_norm && s.tied_output && !s.qkv_bias);
    assert_eq!(
        (
            s.n_layer,
            s.n_embd,
            s.n_head,
            s.n_head_kv,
            s.head_dim,
            s.n_ff,
            s.n_vocab
        ),
        (2, 64, 4, 2, 32, 128, spec.n_vocab as usize)
    );
    // head_dim 32 != n_embd / n_head = 16: read from key_length.
    assert_eq!(s.rope_theta, 1e6);
    assert!((s.rms_eps - 1e-6).abs() < 1e-12);
}

#[test]
fn unsupported_arch_and_missing_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpt2.gguf");
    let mut w = her_gguf::GgufWriter::new();
    w.add_string("general.architecture", "gpt2").add_tensor_f32(
        "token_embd.weight",
        &[4, 8],
        vec![0.0; 32],
    );
    w.write(&path).unwrap();
    let err = TrainModel::load(&path, BaseMode::Quantized, &Device::Cpu)
        .err()
        .unwrap();
    assert!(matches!(err, TrainError::UnsupportedArch { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("'gpt2'") && msg.contains("gpt2.gguf"), "{msg}");

    let missing = dir.path().join("nope.gguf");
    let msg = TrainModel::load(&missing, BaseMode::Quantized, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("nope.gguf"), "{msg}");
}

#[test]
fn every_lora_matrix_gets_a_finite_nonzero_gradient() {
    for mode in [BaseMode::Quantized, BaseMode::Dequantized] {
        let mut m = tiny_model(mode);
        m.attach_lora(&all_targets(4, 0.1), 7).unwrap();
        randomize_b(&m, 0.05, 100);
        let (ids, labels) = batch(m.shape.n_vocab, 2, 12, 1);
        let (loss, count) = m.loss(&ids, &labels, true, 3).unwrap();
        assert_eq!(count, 2 * 11);
        let grads = loss.backward().unwrap();
        let params = m.lora_params();
        assert_eq!(params.len(), 2 * 7);
        for p in &params {
            for (name, var) in [("A", &p.a), ("B", &p.b)] {
                let g = grads.get(var).unwrap_or_else(|| {
                    panic!(
                        "{mode:?}: no gradient for layer {} {} {name}",
                        p.layer, p.target
                    )
                });
                let g = g.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert!(
                    g.iter().all(|v| v.is_finite()),
                    "layer {} {} {name}",
                    p.layer,
                    p.target
                );
                let norm: f32 = g.iter().map(|v| v * v).sum::<f32>().sqrt();
                assert!(
                    norm > 1e-6,
                    "{mode:?}: zero gradient for layer {} {} {name}",
                    p.layer,
                    p.target
                );
            }
        }
    }
}

#[test]
fn smollm2_quantized_lora_gets_gradients_through_all_30_layers() {
    let mut m = TrainModel::load(&common::smollm2(), BaseMode::Quantized, &Device::Cpu).unwrap();
    assert_eq!(m.shape.arch, Arch::Llama);
    assert_eq!(m.shape.rope_style, RopeStyle::Norm);
    assert_eq!(
        (m.shape.n_layer, m.shape.n_head, m.shape.n_head_kv),
        (30, 9, 3)
    );
    assert!(m.shape.tied_output);
    m.attach_lora(&all_targets(4, 0.0), 1).unwrap();
    randomize_b(&m, 0.01, 5);
    let (ids, labels) = batch(m.shape.n_vocab, 1, 8, 2);
    let (loss, _) = m.loss(&ids, &labels, true, 0).unwrap();
    let grads = loss.backward().unwrap();
    let params = m.lora_params();
    assert_eq!(params.len(), 30 * 7);
    for p in &params {
        for var in [&p.a, &p.b] {
            let n = grads.get(var).unwrap().sqr().unwrap().sum_all().unwrap();
            let n = scalar(&n);
            assert!(n.is_finite() && n > 0.0, "layer {} {}", p.layer, p.target);
        }
    }
}

/// The custom backward of a quantized frozen linear (dx = dy·W with W
/// dequantized on the fly) against candle's matmul on the dequantized W.
#[test]
fn quantized_backward_equals_the_dequantized_reference() {
    for (i, dtype) in [
        GgmlDType::Q4_0,
        GgmlDType::Q4_1,
        GgmlDType::Q8_0,
        GgmlDType::Q4K,
    ]
    .into_iter()
    .enumerate()
    {
        let seed = 10 * i as u64;
        // K-quants need an in-dim divisible by 256.
        let w = randn(&[48, 256], 0.05, seed);
        let q = QTensor::quantize(&w, dtype).unwrap();
        let deq = q.dequantize(&Device::Cpu).unwrap();
        let lin = FrozenLinear::new(FrozenWeight::Quantized(Arc::new(q)), None);
        let x = Var::from_tensor(&randn(&[3, 5, 256], 1.0, seed + 1)).unwrap();
        let r = randn(&[3, 5, 48], 1.0, seed + 2);

        let y = lin.forward(&x).unwrap();
        let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let y_ref = x.broadcast_matmul(&deq.t().unwrap()).unwrap();
        let g_ref = (&y_ref * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();

        let diff = |a: &Tensor, b: &Tensor| {
            scalar(
                &(a - b)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .max(0)
                    .unwrap(),
            )
        };
        let dy = diff(&y, &y_ref);
        let dx = diff(g.get(&x).unwrap(), g_ref.get(&x).unwrap());
        println!("{dtype:?}: max |Δy| {dy:e}, max |Δdx| {dx:e}");
        assert!(dy <= 1e-5, "{dtype:?} forward {dy}");
        assert!(dx <= 1e-6, "{dtype:?} backward {dx}");
        // The quantization itself is real (the test is not comparing f32 with f32).
        assert!(diff(&deq, &w) > 1e-4, "{dtype:?}");
    }
}

/// Sets one entry of a Var, returning the old value.
fn set_entry(var: &Var, idx: usize, value: f32) -> f32 {
    let mut v = var
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let old = v[idx];
    v[idx] = value;
    var.set(&Tensor::from_vec(v, var.dims(), &Device::Cpu).unwrap())
        .unwrap();
    old
}

fn argmax_abs(t: &Tensor) -> (usize, f64) {
    let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let (i, g) = v
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .unwrap();
    (i, f64::from(*g))
}

/// Central differences of the loss (f32 model) against backprop for one
/// entry of A (layer 0, q: every op of both blocks sits between it and the
/// loss) and one of B (layer 1, down).
#[test]
fn finite_differences_match_backprop_for_an_a_and_a_b_entry() {
    let mut m = tiny_model(BaseMode::Dequantized);
    m.attach_lora(&all_targets(4, 0.0), 11).unwrap();
    randomize_b(&m, 0.05, 200);
    let (ids, labels) = batch(m.shape.n_vocab, 2, 16, 3);
    let loss_of = |m: &TrainModel| scalar(&m.loss(&ids, &labels, false, 0).unwrap().0);
    let grads = m
        .loss(&ids, &labels, false, 0)
        .unwrap()
        .0
        .backward()
        .unwrap();
    let params = m.lora_params();
    let a = &params
        .iter()
        .find(|p| p.layer == 0 && p.target == Target::Q)
        .unwrap()
        .a;
    let b = &params
        .iter()
        .find(|p| p.layer == 1 && p.target == Target::Down)
        .unwrap()
        .b;
    for (name, var, eps) in [("A[0,q]", a, 1e-2f32), ("B[1,down]", b, 1e-2)] {
        let (idx, analytic) = argmax_abs(grads.get(var).unwrap());
        let x0 = set_entry(var, idx, 0.0);
        set_entry(var, idx, x0 + eps);
        let up = loss_of(&m);
        set_entry(var, idx, x0 - eps);
        let down = loss_of(&m);
        set_entry(var, idx, x0);
        let numeric = (up - down) / (2.0 * f64::from(eps));
        let rel = (numeric - analytic).abs() / analytic.abs();
        println!(
            "{name}[{idx}]: backprop {analytic:.6e}, finite difference {numeric:.6e}, rel err {rel:.2e}"
        );
        assert!(rel < 1e-2, "{name}: {analytic} vs {numeric}");
    }
}

/// The directional derivative along a random direction in ALL LoRA
/// matrices at once: a path whose gradient some op dropped (a norm, rope,
/// softmax, the MLP gate…) makes backprop disagree with the loss itself.
#[test]
fn directional_derivative_over_all_lora_matrices_matches_the_loss() {
    let mut m = tiny_model(BaseMode::Quantized);
    m.attach_lora(&all_targets(4, 0.0), 12).unwrap();
    randomize_b(&m, 0.05, 300);
    let (ids, labels) = batch(m.shape.n_vocab, 2, 16, 4);
    let params = m.lora_params();
    let vars: Vec<&Var> = params.iter().flat_map(|p| [&p.a, &p.b]).collect();
    let grads = m
        .loss(&ids, &labels, false, 0)
        .unwrap()
        .0
        .backward()
        .unwrap();
    let dirs: Vec<Tensor> = vars
        .iter()
        .enumerate()
        .map(|(i, v)| randn(v.dims(), 1.0, 1000 + i as u64))
        .collect();
    let analytic: f64 = vars
        .iter()
        .zip(&dirs)
        .map(|(v, d)| scalar(&(grads.get(v).unwrap() * d).unwrap().sum_all().unwrap()))
        .sum();
    let originals: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().copy().unwrap()).collect();
    let eps = 2e-3;
    let at = |s: f64| {
        for ((v, d), o) in vars.iter().zip(&dirs).zip(&originals) {
            v.set(&(o + (d * s).unwrap()).unwrap()).unwrap();
        }
        scalar(&m.loss(&ids, &labels, false, 0).unwrap().0)
    };
    let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
    at(0.0);
    let rel = (numeric - analytic).abs() / analytic.abs();
    println!(
        "directional: backprop {analytic:.6e}, finite difference {numeric:.6e}, rel err {rel:.2e}"
    );
    assert!(rel < 1e-2, "{analytic} vs {numeric}");
}

#[test]
fn loss_and_sequence_logprobs_agree_with_the_logits() {
    let mut m = tiny_model(BaseMode::Quantized);
    m.attach_lora(&all_targets(4, 0.0), 2).unwrap();
    randomize_b(&m, 0.05, 400);
    m.set_loss_chunk_vocab(37); // several blocks of the vocabulary, the last one short
    let (ids, labels) = batch(m.shape.n_vocab, 3, 9, 5);
    let logp = candle_nn::ops::log_softmax(&m.logits(&ids).unwrap(), D::Minus1).unwrap();
    let logp = logp.to_vec3::<f32>().unwrap();
    let labels_v = labels.to_vec2::<i64>().unwrap();
    let mut per_seq = vec![0f64; 3];
    let mut total = 0f64;
    for (s, row) in labels_v.iter().enumerate() {
        for (t, &y) in row.iter().enumerate() {
            if y >= 0 {
                per_seq[s] += f64::from(logp[s][t][y as usize]);
            }
        }
        total += per_seq[s];
    }
    let (loss, count) = m.loss(&ids, &labels, false, 0).unwrap();
    assert_eq!(count, 3 * 8);
    assert!((scalar(&loss) + total / count as f64).abs() < 1e-4);
    let seq = m
        .sequence_logprobs(&ids, &labels)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    for (a, b) in seq.iter().zip(&per_seq) {
        assert!((f64::from(*a) - b).abs() < 1e-3, "{a} vs {b}");
    }
}

#[test]
fn runs_are_deterministic_and_dropout_follows_the_step() {
    let run = |step: u64, train: bool| {
        let mut m = tiny_model(BaseMode::Quantized);
        m.attach_lora(&all_targets(4, 0.3), 5).unwrap();
        randomize_b(&m, 0.05, 500);
        let (ids, labels) = batch(m.shape.n_vocab, 2, 10, 6);
        let (loss, _) = m.loss(&ids, &labels, train, step).unwrap();
        let g = loss.backward().unwrap();
        let ga = g
            .get(&m.lora_params()[0].a)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        (loss.to_scalar::<f32>().unwrap(), ga)
    };
    let first = run(1, true);
    assert_eq!(first, run(1, true), "same seed and step, bit for bit");
    assert_ne!(
        first.0,
        run(2, true).0,
        "another step draws other dropout masks"
    );
    let eval = run(1, false);
    assert_eq!(eval, run(2, false), "no dropout in evaluation");
    assert_ne!(eval.0, first.0);
}

#[test]
fn fresh_lora_is_the_identity_and_lora_init_follows_the_seed() {
    let base = tiny_model(BaseMode::Quantized);
    let (ids, _) = batch(base.shape.n_vocab, 1, 6, 7);
    let before = base.logits(&ids).unwrap();
    let mut m = tiny_model(BaseMode::Quantized);
    m.attach_lora(&all_targets(8, 0.0), 9).unwrap();
    let after = m.logits(&ids).unwrap();
    let diff = scalar(
        &(&before - &after)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap(),
    );
    assert_eq!(diff, 0.0, "B = 0 at init");
    let a0 = |m: &TrainModel| {
        m.lora_params()[3]
            .a
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let mut again = tiny_model(BaseMode::Quantized);
    again.attach_lora(&all_targets(8, 0.0), 9).unwrap();
    assert_eq!(a0(&m), a0(&again));
    again.attach_lora(&all_targets(8, 0.0), 10).unwrap();
    assert_ne!(a0(&m), a0(&again));
    // Fewer targets: the remaining ones keep their init (keyed per matrix).
    let mut some = tiny_model(BaseMode::Quantized);
    let spec = LoraSpec {
        targets: vec![Target::O, Target::Down],
        ..all_targets(8, 0.0)
    };
    some.attach_lora(&spec, 9).unwrap();
    assert_eq!(some.lora_params().len(), 4);
    assert_eq!(some.lora_params()[0].target, Target::O);
    assert_eq!(
        a0(&m),
        some.lora_params()[0]
            .a
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    );
}

#[test]
fn exported_lora_loads_back_with_the_same_values_and_logits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("adapter.gguf");
    let mut m = tiny_model(BaseMode::Quantized);
    let spec = LoraSpec {
        targets: vec![Target::Q, Target::V, Target::Up],
        ..all_targets(4, 0.1)
    };
    m.attach_lora(&spec, 3).unwrap();
    randomize_b(&m, 0.05, 600);
    write_lora_gguf(&path, "qwen3", &spec, &m.lora_params()).unwrap();
    let (ids, _) = batch(m.shape.n_vocab, 1, 8, 8);
    let expected = m.logits(&ids).unwrap();

    let mut back = tiny_model(BaseMode::Quantized);
    let loaded = back.load_lora_gguf(&path).unwrap();
    assert_eq!(
        loaded,
        LoraSpec {
            dropout: 0.0,
            ..spec
        }
    );
    let got = back.logits(&ids).unwrap();
    let diff = scalar(
        &(&expected - &got)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap(),
    );
    assert_eq!(diff, 0.0);
}

#[test]
fn bad_inputs_are_reported() {
    let m = tiny_model(BaseMode::Quantized);
    let v = m.shape.n_vocab as i64;
    let dev = Device::Cpu;
    let ids = Tensor::from_vec(vec![0i64, v], (1, 2), &dev).unwrap();
    let msg = m.logits(&ids).err().unwrap().to_string();
    assert!(msg.contains(&format!("'{v}'")), "{msg}");
    let ids = Tensor::from_vec(vec![0i64, 1], (1, 2), &dev).unwrap();
    let labels = Tensor::from_vec(vec![1i64, -5], (1, 2), &dev).unwrap();
    let msg = m.loss(&ids, &labels, false, 0).err().unwrap().to_string();
    assert!(msg.contains("'-5'"), "{msg}");
    let labels = Tensor::zeros((2, 2), DType::I64, &dev).unwrap();
    assert!(m.loss(&ids, &labels, false, 0).is_err());
}

#[test]
fn a_tensor_the_forward_would_ignore_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qwen2-extra.gguf");
    let mut w = common::tiny_qwen2_writer(1);
    // llama.cpp would add this bias; skipping it would be silently wrong.
    w.add_tensor_f32("blk.1.attn_output.bias", &[64], vec![0.5; 64]);
    w.write(&path).unwrap();
    let err = TrainModel::load(&path, BaseMode::Quantized, &Device::Cpu)
        .err()
        .unwrap();
    assert!(matches!(err, TrainError::UnsupportedTensor { .. }), "{err}");
    assert!(
        err.to_string().contains("'blk.1.attn_output.bias'"),
        "{err}"
    );
    // Without it the same file loads.
    common::tiny_qwen2_writer(1).write(&path).unwrap();
    TrainModel::load(&path, BaseMode::Quantized, &Device::Cpu).unwrap();
}

#[test]
fn the_model_can_move_to_a_training_thread() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TrainModel>();
}
