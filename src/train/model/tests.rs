//! The frozen linear op and the chunked head loss against plain candle ops.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{D, Device, Tensor, Var};

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
    // Blocks of 2 rows: the packed labelled rows span several blocks.
    let nll = HeadNll::new(FrozenWeight::Dense(w.clone()), labels.clone(), 2)
        .forward(&h)
        .unwrap();
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
    assert!(max_diff(&nll, &reference) < 1e-5);
    let r = randn(&[n], 8);
    let g = (&nll * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let gr = (&reference * &r)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(max_diff(g.get(&h).unwrap(), gr.get(&h).unwrap()) < 1e-5);
}
