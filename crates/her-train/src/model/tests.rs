//! The frozen linear op and the chunked head loss against plain candle ops.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{D, Device, Tensor, Var};

use super::lora_linear::LoraLinear;
use super::*;

fn randn(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = SplitMix64::new(seed);
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn frozen_linear_gives_x_a_gradient_and_the_weight_none() {
    let w = randn(&[6, 32], 1);
    let x = Var::from_tensor(&randn(&[2, 3, 32], 2)).unwrap();
    let bias = randn(&[6], 3);
    let lin = FrozenLinear::new(FrozenWeight::Dense(w.clone()), Some(bias.clone()));
    let y = lin.forward(&x).unwrap();
    let r = x
        .broadcast_matmul(&w.t().unwrap())
        .unwrap()
        .broadcast_add(&bias)
        .unwrap();
    assert_eq!(y.dims(), &[2, 3, 6]);
    assert!(max_diff(&y, &r) < 1e-5);
    let g = y.sum_all().unwrap().backward().unwrap();
    let gr = r.sum_all().unwrap().backward().unwrap();
    assert!(max_diff(g.get(&x).unwrap(), gr.get(&x).unwrap()) < 1e-5);
    // A frozen weight is no graph node at all: nothing is stored for it.
    assert!(g.get(&w).is_none());
}

#[test]
fn quantized_frozen_linear_uses_the_dequantized_matrix() {
    let q = QTensor::quantize(&randn(&[8, 64], 4), GgmlDType::Q8_0).unwrap();
    let deq = q.dequantize(&Device::Cpu).unwrap();
    let lin = FrozenLinear::new(FrozenWeight::Quantized(Arc::new(q)), None);
    let x = randn(&[5, 64], 5);
    let y = lin.forward(&x).unwrap();
    assert!(max_diff(&y, &x.matmul(&deq.t().unwrap()).unwrap()) < 1e-5);
}

#[test]
fn chunked_head_nll_matches_log_softmax_and_its_gradient() {
    let (n, e, vocab) = (7, 16, 11);
    let w = randn(&[vocab, e], 6);
    let h = Var::from_tensor(&randn(&[n, e], 7)).unwrap();
    let labels: Vec<i64> = vec![3, IGNORE_LABEL, 0, 10, 5, IGNORE_LABEL, 2];
    let logp = candle_nn::ops::log_softmax(&h.matmul(&w.t().unwrap()).unwrap(), D::Minus1).unwrap();
    let idx: Vec<u32> = labels.iter().map(|&y| y.max(0) as u32).collect();
    let keep: Vec<f32> = labels
        .iter()
        .map(|&y| f32::from(u8::from(y != IGNORE_LABEL)))
        .collect();
    let picked = logp
        .gather(&Tensor::from_vec(idx, (n, 1), &Device::Cpu).unwrap(), 1)
        .unwrap()
        .squeeze(1)
        .unwrap();
    let reference =
        (picked.neg().unwrap() * Tensor::from_vec(keep, n, &Device::Cpu).unwrap()).unwrap();
    let r = randn(&[n], 8);
    let gr = (&reference * &r)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    // Blocks of 2 vocabulary entries: labels fall in different blocks, the
    // last is short. A block is 5 labelled rows × 2 × 4 bytes: keep none,
    // the first two, or all six for backward.
    for keep_bytes in [0, 80, usize::MAX] {
        let nll = HeadNll::new(
            FrozenWeight::Dense(w.clone()),
            labels.clone(),
            2,
            keep_bytes,
        )
        .forward(&h)
        .unwrap();
        assert!(max_diff(&nll, &reference) < 1e-5);
        let g = (&nll * &r).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_diff(g.get(&h).unwrap(), gr.get(&h).unwrap()) < 1e-5);
    }
}

#[test]
fn quantized_rows_dequantize_to_the_same_values_as_the_whole_matrix() {
    use GgmlDType::*;
    for dtype in [
        Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2K, Q3K, Q4K, Q5K, Q6K, F16, BF16,
    ] {
        let q = QTensor::quantize(&randn(&[9, 256], 9), dtype).unwrap();
        let whole = q.dequantize(&Device::Cpu).unwrap();
        let w = FrozenWeight::Quantized(Arc::new(q));
        for (start, len) in [(0, 9), (2, 3), (8, 1)] {
            let part = w.rows_f32(start, len).unwrap();
            assert_eq!(part.dims(), &[len, 256]);
            assert_eq!(max_diff(&part, &whole.narrow(0, start, len).unwrap()), 0.0);
        }
        assert!(w.rows_f32(8, 2).is_err());
        assert_eq!(max_diff(&w.to_f32().unwrap(), &whole), 0.0);
    }
    // Enough blocks for several parallel tasks, Q4_0's and Q4_K's.
    for dtype in [Q4_0, Q4K] {
        let q = QTensor::quantize(&randn(&[300, 512], 10), dtype).unwrap();
        let whole = q.dequantize(&Device::Cpu).unwrap();
        let w = FrozenWeight::Quantized(Arc::new(q));
        assert_eq!(max_diff(&w.to_f32().unwrap(), &whole), 0.0);
    }
}

#[test]
fn head_nll_on_a_quantized_head_matches_its_dequantized_copy() {
    let q = QTensor::quantize(&randn(&[13, 32], 10), GgmlDType::Q8_0).unwrap();
    let dense = q.dequantize(&Device::Cpu).unwrap();
    let h = Var::from_tensor(&randn(&[4, 32], 11)).unwrap();
    let labels = vec![12, 0, IGNORE_LABEL, 5];
    let run = |w: FrozenWeight, chunk: usize, keep_bytes| {
        let nll = HeadNll::new(w, labels.clone(), chunk, keep_bytes)
            .forward(&h)
            .unwrap();
        let g = nll.sum_all().unwrap().backward().unwrap();
        (nll, g.get(&h).unwrap().clone())
    };
    let (a, ga) = run(FrozenWeight::Quantized(Arc::new(q)), 4, 0);
    let (b, gb) = run(FrozenWeight::Dense(dense), 13, usize::MAX);
    assert!(max_diff(&a, &b) < 1e-5);
    assert!(max_diff(&ga, &gb) < 1e-5);
}

#[test]
fn fused_lora_linear_matches_separate_ops_in_value_and_every_gradient() {
    use crate::lora::LoraAdapter;
    let (m, k, n, r) = (6, 64, 10, 4);
    let dense = randn(&[n, k], 20);
    let q = QTensor::quantize(&dense, GgmlDType::Q8_0).unwrap();
    let dequantized = q.dequantize(&Device::Cpu).unwrap();
    let quantized = FrozenWeight::Quantized(Arc::new(q));
    for (weight, w) in [
        (FrozenWeight::Dense(dense.clone()), dense.clone()),
        (quantized, dequantized),
    ] {
        for dropout in [0.0, 0.3] {
            let x = Var::from_tensor(&randn(&[m, k], 21)).unwrap();
            let adapter = LoraAdapter {
                a: Var::from_tensor(&randn(&[r, k], 22)).unwrap(),
                b: Var::from_tensor(&randn(&[n, r], 23)).unwrap(),
                scale: 2.0,
                dropout,
            };
            let key = [7u64, 1, 2, 3];
            let fused = LoraLinear::new(weight.clone(), adapter.scale, Some((dropout, &key)))
                .forward(&x, adapter.a.as_tensor(), adapter.b.as_tensor())
                .unwrap();
            let reference = (x.matmul(&w.t().unwrap()).unwrap()
                + adapter.forward(&x, Some(&key)).unwrap())
            .unwrap();
            assert!(max_diff(&fused, &reference) < 1e-4, "dropout {dropout}");
            // A weighted sum so every output element has its own gradient.
            let weights = randn(&[m, n], 24);
            let g = (&fused * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let gr = (&reference * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for v in [&x, &adapter.a, &adapter.b] {
                let (a, b) = (g.get(v).unwrap(), gr.get(v).unwrap());
                assert!(
                    max_diff(a, b) < 1e-3,
                    "dropout {dropout}: {}",
                    max_diff(a, b)
                );
            }
        }
    }
}
