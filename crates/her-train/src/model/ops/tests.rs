//! Each custom op against the same computation in candle's composite ops
//! (whose backward candle derives): values and input gradients must agree.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use candle_core::{D, DType, Device, Tensor, Var};

use super::*;
use crate::model::Segments;
use her_core::rng::SplitMix64;

pub(crate) fn randn(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = SplitMix64::new(seed);
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
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

/// d⟨f(x), r⟩/dx for a fixed random r.
fn grad(x: &Var, y: &Tensor, seed: u64) -> Tensor {
    let r = randn(y.dims(), seed);
    let loss = (y * r).unwrap().sum_all().unwrap();
    loss.backward()
        .unwrap()
        .get(x)
        .expect("no gradient reached x")
        .clone()
}

#[test]
fn rms_norm_matches_the_composite_and_its_gradient() {
    let x = Var::from_tensor(&randn(&[3, 5, 16], 1)).unwrap();
    let w = randn(&[16], 2);
    let op = RmsNorm::new(w.to_vec1().unwrap(), 1e-6).unwrap();
    let y = op.forward(&x).unwrap();
    let r = candle_nn::ops::rms_norm_slow(&x, &w, 1e-6).unwrap();
    assert!(max_diff(&y, &r) < 1e-5);
    assert!(max_diff(&grad(&x, &y, 3), &grad(&x, &r, 3)) < 1e-5);
}

/// candle's tables: (t, d/2) of cos/sin(pos · theta^(−2i/d)).
fn tables(t: usize, d: usize, theta: f64) -> (Tensor, Tensor) {
    let mut c = Vec::new();
    let mut s = Vec::new();
    for pos in 0..t {
        for i in 0..d / 2 {
            let a = pos as f64 * theta.powf(-2.0 * i as f64 / d as f64);
            c.push(a.cos() as f32);
            s.push(a.sin() as f32);
        }
    }
    let dev = Device::Cpu;
    (
        Tensor::from_vec(c, (t, d / 2), &dev).unwrap(),
        Tensor::from_vec(s, (t, d / 2), &dev).unwrap(),
    )
}

#[test]
fn rope_styles_match_candles_interleaved_and_half_split_rope() {
    let (b, t, h, d) = (2, 7, 3, 8);
    let (cos, sin) = tables(t, d, 1e4);
    for (style, reference) in [
        (
            RopeStyle::Norm,
            candle_nn::rotary_emb::rope_i_slow
                as fn(&Tensor, &Tensor, &Tensor) -> candle_core::Result<Tensor>,
        ),
        (RopeStyle::Neox, candle_nn::rotary_emb::rope_slow),
    ] {
        let x = Var::from_tensor(&randn(&[b, t, h, d], 4)).unwrap();
        let y = Rope::new(style, d, t, 1e4).forward(&x).unwrap();
        // candle's rope wants (b, heads, t, d).
        let r = reference(
            &x.transpose(1, 2).unwrap().contiguous().unwrap(),
            &cos,
            &sin,
        )
        .unwrap()
        .transpose(1, 2)
        .unwrap();
        assert!(max_diff(&y, &r) < 1e-5, "{style:?}");
        assert!(
            max_diff(&grad(&x, &y, 5), &grad(&x, &r, 5)) < 1e-5,
            "{style:?}"
        );
    }
}

/// Attention in candle's differentiable ops: KV heads repeated per query
/// head (head h reads KV head h / rep), a −∞ mask wherever `sees(row,
/// query, key)` is false, candle_nn's composite softmax. → (b·t, nh·d)
pub(crate) fn reference_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f32,
    sees: impl Fn(usize, usize, usize) -> bool,
) -> Tensor {
    let (b, t, nh, d) = q.dims4().unwrap();
    let nkv = k.dim(2).unwrap();
    let per_head = |x: &Tensor| x.transpose(1, 2).unwrap().contiguous().unwrap();
    let kv_of_head: Vec<u32> = (0..nh as u32).map(|h| h / (nh / nkv) as u32).collect();
    let kv_of_head = Tensor::from_vec(kv_of_head, nh, &Device::Cpu).unwrap();
    let repeat = |x: &Tensor| per_head(x).index_select(&kv_of_head, 1).unwrap();
    let mask: Vec<f32> = (0..b)
        .flat_map(|row| (0..t).flat_map(move |i| (0..t).map(move |j| (row, i, j))))
        .map(|(row, i, j)| {
            if sees(row, i, j) {
                0.0
            } else {
                f32::NEG_INFINITY
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, (b, 1, t, t), &Device::Cpu).unwrap();
    let scores = per_head(q)
        .matmul(&repeat(k).t().unwrap())
        .unwrap()
        .affine(f64::from(scale), 0.0)
        .unwrap()
        .broadcast_add(&mask)
        .unwrap();
    let probs = candle_nn::ops::softmax(&scores, D::Minus1).unwrap();
    probs
        .matmul(&repeat(v))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .reshape((b * t, nh * d))
        .unwrap()
}

/// The op's output and q/k/v gradients against the reference's, both
/// within 1e-5.
fn assert_attention_matches(
    segments: Option<Segments>,
    (b, t, nh, nkv, d): (usize, usize, usize, usize, usize),
    sees: impl Fn(usize, usize, usize) -> bool,
) {
    let scale = 0.35f32;
    let q = Var::from_tensor(&randn(&[b, t, nh, d], 6)).unwrap();
    let k = Var::from_tensor(&randn(&[b, t, nkv, d], 7)).unwrap();
    let v = Var::from_tensor(&randn(&[b, t, nkv, d], 8)).unwrap();
    let y = CausalAttention::new(scale)
        .with_segments(segments.map(Arc::new))
        .forward(&q, &k, &v)
        .unwrap();
    let r = reference_attention(&q, &k, &v, scale, sees);
    assert!(
        max_diff(&y, &r) < 1e-5,
        "values differ by {}",
        max_diff(&y, &r)
    );

    let w = randn(&[b * t, nh * d], 9);
    let gy = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let gr = (&r * &w).unwrap().sum_all().unwrap().backward().unwrap();
    for (name, x) in [("q", &q), ("k", &k), ("v", &v)] {
        let (a, e) = (gy.get(x).unwrap(), gr.get(x).unwrap());
        assert!(
            max_diff(a, e) < 1e-5,
            "d{name} differs by {}",
            max_diff(a, e)
        );
    }
}

#[test]
fn causal_attention_matches_masked_softmax_attention_and_its_gradients() {
    // t = 70 spans a full and a short block of query rows; 2 query heads
    // per KV head.
    assert_attention_matches(None, (2, 70, 4, 2, 8), |_, i, j| j <= i);
}

#[test]
fn packed_attention_keeps_each_sample_to_itself() {
    // Row 0: samples of 30, 25 and 15 positions; row 1: one of 66 (two
    // row blocks) and one of 4. t = 70 is no multiple of the row block,
    // 2 query heads per KV head.
    let lengths = [vec![30, 25, 15], vec![66, 4]];
    let segments = Segments::from_lengths(70, &lengths).unwrap();
    let sample_of = |row: usize, pos: usize| {
        let mut end = 0;
        lengths[row]
            .iter()
            .position(|&len| {
                end += len;
                pos < end
            })
            .unwrap()
    };
    assert_attention_matches(Some(segments), (2, 70, 4, 2, 8), |row, i, j| {
        j <= i && sample_of(row, i) == sample_of(row, j)
    });
    // Padding after the last sample joins it: causal only, as unpacked.
    let padded = Segments::from_lengths(70, &[vec![40], vec![20, 9]]).unwrap();
    assert_attention_matches(Some(padded), (2, 70, 4, 2, 8), |row, i, j| {
        j <= i && (row == 0 || (i < 20) == (j < 20))
    });
}

#[test]
fn rope_with_positions_equals_rope_on_each_sample_alone() {
    let (t, h, d) = (11, 3, 8);
    let lengths = [vec![4, 7], vec![11]];
    let segments = Segments::from_lengths(t, &lengths).unwrap();
    for style in [RopeStyle::Norm, RopeStyle::Neox] {
        let x = Var::from_tensor(&randn(&[2, t, h, d], 21)).unwrap();
        let packed = Rope::new(style, d, t, 1e4)
            .with_positions(segments.positions())
            .forward(&x)
            .unwrap();
        let mut alone = Vec::new();
        for (row, lens) in lengths.iter().enumerate() {
            let mut at = 0;
            for &len in lens {
                let part = x.narrow(0, row, 1).unwrap().narrow(1, at, len).unwrap();
                alone.push(Rope::new(style, d, len, 1e4).forward(&part).unwrap());
                at += len;
            }
        }
        let alone =
            Tensor::cat(&[Tensor::cat(&alone[..2], 1).unwrap(), alone[2].clone()], 0).unwrap();
        assert_eq!(max_diff(&packed, &alone), 0.0, "{style:?}");
        assert!(
            max_diff(&grad(&x, &packed, 22), &grad(&x, &alone, 22)) < 1e-6,
            "{style:?}"
        );
    }
}

#[test]
fn silu_mul_matches_the_composite_and_both_gradients() {
    let g = Var::from_tensor(&randn(&[4, 9], 8)).unwrap();
    let u = Var::from_tensor(&randn(&[4, 9], 9)).unwrap();
    let y = SiluMul::forward(&g, &u).unwrap();
    let r = (candle_nn::ops::silu(&g).unwrap() * u.as_tensor()).unwrap();
    assert!(max_diff(&y, &r) < 1e-6);
    let rr = randn(&[4, 9], 10);
    let gy = (&y * &rr).unwrap().sum_all().unwrap().backward().unwrap();
    let gr = (&r * &rr).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(max_diff(gy.get(&g).unwrap(), gr.get(&g).unwrap()) < 1e-5);
    assert!(max_diff(gy.get(&u).unwrap(), gr.get(&u).unwrap()) < 1e-6);
}

#[test]
fn ops_reject_non_matching_shapes() {
    let x = randn(&[2, 3], 11);
    assert!(
        RmsNorm::new(vec![1.0; 4], 1e-6)
            .unwrap()
            .forward(&x)
            .is_err()
    );
    let x4 = randn(&[1, 2, 3, 4], 13);
    let attention = CausalAttention::new(1.0);
    assert!(attention.forward(&x, &x, &x).is_err());
    let kv = randn(&[1, 2, 2, 4], 14);
    assert!(attention.forward(&x4, &kv, &kv).is_err());
    assert!(Rope::new(RopeStyle::Neox, 4, 2, 1e4).forward(&x).is_err());
    // Segments or positions for another batch shape.
    let one_row = Segments::from_lengths(2, &[vec![1, 1]]).unwrap();
    let two_rows = randn(&[2, 2, 2, 4], 15);
    let packed = CausalAttention::new(1.0).with_segments(Some(Arc::new(one_row.clone())));
    assert!(packed.forward(&two_rows, &two_rows, &two_rows).is_err());
    let rope = Rope::new(RopeStyle::Neox, 4, 2, 1e4).with_positions(one_row.positions());
    assert!(rope.forward(&two_rows).is_err());
    assert!(SiluMul::forward(&x, &randn(&[3, 2], 12)).is_err());
    let _ = DType::F32;
}
