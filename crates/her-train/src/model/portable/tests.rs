//! Each portable op against the fused op and against the same computation
//! in candle's composite ops (whose backward candle derives): the value and
//! every input gradient, plus a finite-difference spot check of the
//! portable op's gradient on one element per input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{D, DType, Device, Tensor, Var};

use crate::lora::dropout_mask_values;
use crate::model::frozen::{FrozenLinear, FrozenWeight};
use crate::model::head::HeadNll;
use crate::model::kernels::OpPath;
use crate::model::lora_linear::LoraLinear;
use crate::model::ops::{RmsNorm, Rope, RopeStyle, SiluMul};
use crate::model::segments::Segments;
use her_core::rng::SplitMix64;

fn randn(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = SplitMix64::new(seed);
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    max_abs(&(a - b).unwrap())
}

type Op<'a> = &'a dyn Fn(&[Tensor]) -> Tensor;

/// The value of `op` on `inputs` (as variables) and the gradient of
/// ⟨value, r⟩ for every input, r a fixed random tensor.
fn run(op: Op<'_>, inputs: &[Tensor]) -> (Tensor, Vec<Tensor>) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = op(&tensors);
    let r = randn(y.dims(), 99);
    let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let grads = vars
        .iter()
        .map(|v| grads.get(v).expect("a gradient for every input").clone())
        .collect();
    (y.detach(), grads)
}

/// ⟨op(inputs), r⟩ without a graph.
fn objective(op: Op<'_>, inputs: &[Tensor], r: &Tensor) -> f64 {
    let y = op(inputs);
    let v = (&y * r)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    f64::from(v)
}

/// The portable op's value and gradients against `fused` and `composite`
/// (within `tol` of each, relative to the reference's largest entry), and
/// one finite-difference check per input.
fn check(
    name: &str,
    inputs: &[Tensor],
    portable: Op<'_>,
    fused: Op<'_>,
    composite: Op<'_>,
    tol: f32,
) {
    let (y, g) = run(portable, inputs);
    for (other, op) in [("fused", fused), ("composite", composite)] {
        let (yr, gr) = run(op, inputs);
        let d = max_diff(&y, &yr);
        assert!(
            d <= tol * max_abs(&yr).max(1.0),
            "{name} vs {other}: values differ by {d}"
        );
        for (i, (a, b)) in g.iter().zip(&gr).enumerate() {
            let d = max_diff(a, b);
            assert!(
                d <= tol * max_abs(b).max(1.0),
                "{name} vs {other}: the gradient of input {i} differs by {d}"
            );
        }
    }
    // Central difference on the largest-gradient element of each input.
    let r = randn(y.dims(), 99);
    for (i, gi) in g.iter().enumerate() {
        let flat = gi.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let at = (0..flat.len())
            .max_by(|&a, &b| flat[a].abs().total_cmp(&flat[b].abs()))
            .unwrap();
        let eps = 1e-2f32;
        let nudged = |sign: f32| {
            let mut v = inputs[i].flatten_all().unwrap().to_vec1::<f32>().unwrap();
            v[at] += sign * eps;
            let mut xs = inputs.to_vec();
            xs[i] = Tensor::from_vec(v, inputs[i].dims(), &Device::Cpu).unwrap();
            objective(portable, &xs, &r)
        };
        let fd = (nudged(1.0) - nudged(-1.0)) / (2.0 * f64::from(eps));
        let want = f64::from(flat[at]);
        assert!(
            (fd - want).abs() <= 1e-2 * want.abs().max(1.0),
            "{name}: input {i}: finite difference {fd} vs gradient {want}"
        );
    }
}

#[test]
fn rms_norm_matches_the_fused_op_and_the_composite() {
    let w = randn(&[16], 2);
    let norm = RmsNorm::new(w.to_vec1().unwrap(), 1e-6).unwrap();
    check(
        "rms_norm",
        &[randn(&[3, 5, 16], 1)],
        &|x| norm.apply(&x[0], OpPath::Portable).unwrap(),
        &|x| norm.apply(&x[0], OpPath::Fused).unwrap(),
        &|x| candle_nn::ops::rms_norm_slow(&x[0], &w, 1e-6).unwrap(),
        1e-5,
    );
}

/// Rope as plain candle ops on (b, t, heads, d), from per-token angles.
fn composite_rope(x: &Tensor, style: RopeStyle, positions: &[u32], theta: f64) -> Tensor {
    let (b, t, h, d) = x.dims4().unwrap();
    let half = d / 2;
    let angles: Vec<f32> = positions
        .iter()
        .flat_map(|&p| {
            (0..half).map(move |i| (f64::from(p) * theta.powf(-2.0 * i as f64 / d as f64)) as f32)
        })
        .collect();
    let angles = Tensor::from_vec(angles, (b, t, 1, half), &Device::Cpu).unwrap();
    let (c, s) = (angles.cos().unwrap(), angles.sin().unwrap());
    // Index of each pair's members along d.
    let (i0, i1): (Vec<u32>, Vec<u32>) = (0..half as u32)
        .map(|i| match style {
            RopeStyle::Norm => (2 * i, 2 * i + 1),
            RopeStyle::Neox => (i, i + half as u32),
        })
        .unzip();
    let pick = |idx: &[u32]| {
        let idx = Tensor::from_slice(idx, half, &Device::Cpu).unwrap();
        x.contiguous().unwrap().index_select(&idx, 3).unwrap()
    };
    let (x0, x1) = (pick(&i0), pick(&i1));
    let y0 = (x0.broadcast_mul(&c).unwrap() - x1.broadcast_mul(&s).unwrap()).unwrap();
    let y1 = (x0.broadcast_mul(&s).unwrap() + x1.broadcast_mul(&c).unwrap()).unwrap();
    let y = match style {
        RopeStyle::Norm => Tensor::stack(&[y0, y1], D::Minus1).unwrap(),
        RopeStyle::Neox => Tensor::cat(&[y0, y1], D::Minus1).unwrap(),
    };
    y.reshape((b, t, h, d)).unwrap()
}

#[test]
fn rope_matches_the_fused_op_and_the_composite_in_both_styles_packed_or_not() {
    let (b, t, h, d) = (2, 7, 3, 8);
    let packed = Segments::from_lengths(t, &[vec![3, 4], vec![7]]).unwrap();
    for style in [RopeStyle::Norm, RopeStyle::Neox] {
        for segments in [None, Some(&packed)] {
            let positions =
                segments.map_or_else(|| Segments::whole(b, t).positions(), Segments::positions);
            let mut rope = Rope::new(style, d, t, 1e4);
            if segments.is_some() {
                rope = rope.with_positions(positions.clone());
            }
            check(
                &format!("rope {style:?} packed={}", segments.is_some()),
                &[randn(&[b, t, h, d], 4)],
                &|x| rope.apply(&x[0], OpPath::Portable).unwrap(),
                &|x| rope.apply(&x[0], OpPath::Fused).unwrap(),
                &|x| composite_rope(&x[0], style, &positions, 1e4),
                1e-5,
            );
        }
    }
}

#[test]
fn silu_mul_matches_the_fused_op_and_the_composite() {
    check(
        "silu_mul",
        &[randn(&[4, 9], 8), randn(&[4, 9], 9)],
        &|x| SiluMul::apply(&x[0], &x[1], OpPath::Portable).unwrap(),
        &|x| SiluMul::apply(&x[0], &x[1], OpPath::Fused).unwrap(),
        &|x| (candle_nn::ops::silu(&x[0]).unwrap() * &x[1]).unwrap(),
        1e-5,
    );
}

/// A frozen (n, k) matrix in both base modes: dense, and Q8_0 quantized
/// (k a multiple of its 32-value blocks), with the f32 values each holds.
fn weights(n: usize, k: usize, seed: u64) -> Vec<(FrozenWeight, Tensor)> {
    let w = randn(&[n, k], seed);
    let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
    let dq = q.dequantize(&Device::Cpu).unwrap();
    vec![
        (FrozenWeight::Dense(w.clone()), w),
        (FrozenWeight::Quantized(Arc::new(q)), dq),
    ]
}

#[test]
fn frozen_linear_matches_the_fused_op_and_a_plain_matmul() {
    let bias = randn(&[6], 31);
    for (weight, dense) in weights(6, 32, 30) {
        let linear = FrozenLinear::new(weight.clone(), Some(bias.clone()));
        check(
            "frozen_linear",
            &[randn(&[5, 32], 32)],
            &|x| linear.apply(&x[0], OpPath::Portable).unwrap(),
            &|x| linear.apply(&x[0], OpPath::Fused).unwrap(),
            &|x| {
                x[0].matmul(&dense.t().unwrap())
                    .unwrap()
                    .broadcast_add(&bias)
                    .unwrap()
            },
            1e-5,
        );
        // dx only: the frozen matrix is no input of the op.
        let x = Var::from_tensor(&randn(&[5, 32], 33)).unwrap();
        let y = linear.apply(&x, OpPath::Portable).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        assert!(grads.get(&bias).is_none(), "the frozen bias got a gradient");
    }
}

#[test]
fn lora_linear_matches_the_fused_op_and_the_composite_with_and_without_dropout() {
    let (m, k, n, r) = (5, 32, 6, 3);
    let bias = randn(&[n], 41);
    let key = [7u64, 3, 1, 2];
    for (weight, dense) in weights(n, k, 40) {
        for p in [0.0, 0.25] {
            let op = LoraLinear::new(weight.clone(), 0.75, Some((p, &key[..])));
            let mask = Tensor::from_vec(dropout_mask_values(m * k, p, &key), (m, k), &Device::Cpu)
                .unwrap();
            check(
                &format!("lora_linear p={p}"),
                &[randn(&[m, k], 42), randn(&[r, k], 43), randn(&[n, r], 44)],
                &|x| {
                    op.apply(&x[0], &x[1], &x[2], Some(&bias), OpPath::Portable)
                        .unwrap()
                },
                &|x| {
                    op.apply(&x[0], &x[1], &x[2], Some(&bias), OpPath::Fused)
                        .unwrap()
                },
                &|x| {
                    let base = x[0].matmul(&dense.t().unwrap()).unwrap();
                    let masked = if p > 0.0 {
                        (&x[0] * &mask).unwrap()
                    } else {
                        x[0].clone()
                    };
                    let low = masked.matmul(&x[1].t().unwrap()).unwrap();
                    let branch = (low.matmul(&x[2].t().unwrap()).unwrap() * 0.75).unwrap();
                    (base + branch).unwrap().broadcast_add(&bias).unwrap()
                },
                1e-5,
            );
        }
    }
}

#[test]
fn head_nll_matches_the_fused_op_and_log_softmax() {
    let (n, e, vocab) = (6, 32, 23);
    // Two rows do not count; blocks of 7 leave a short last block.
    let labels = vec![3i64, -100, 22, 0, -100, 15];
    for (weight, dense) in weights(vocab, e, 50) {
        let head = HeadNll::new(weight.clone(), labels.clone(), 7, 0);
        let kept = HeadNll::new(weight.clone(), labels.clone(), 7, 1 << 20);
        let idx: Vec<u32> = labels.iter().map(|&y| y.max(0) as u32).collect();
        let idx = Tensor::from_vec(idx, (n, 1), &Device::Cpu).unwrap();
        let counts: Vec<f32> = labels
            .iter()
            .map(|&y| if y < 0 { 0.0 } else { 1.0 })
            .collect();
        let counts = Tensor::from_vec(counts, n, &Device::Cpu).unwrap();
        check(
            "head_nll",
            &[randn(&[n, e], 51)],
            &|x| head.apply(&x[0], OpPath::Portable).unwrap(),
            &|x| kept.apply(&x[0], OpPath::Fused).unwrap(),
            &|x| {
                let logits = x[0].matmul(&dense.t().unwrap()).unwrap();
                let lp = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap();
                (lp.gather(&idx, 1)
                    .unwrap()
                    .squeeze(1)
                    .unwrap()
                    .neg()
                    .unwrap()
                    * &counts)
                    .unwrap()
            },
            1e-5,
        );
    }
}

#[test]
fn untracked_inputs_record_nothing_on_the_portable_path() {
    let norm = RmsNorm::new(vec![1.0; 8], 1e-6).unwrap();
    let y = norm.apply(&randn(&[2, 8], 60), OpPath::Portable).unwrap();
    assert!(!y.track_op());
    let _ = DType::F32;
}
