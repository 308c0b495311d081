//! Both tiled attentions (the fused CPU op and the portable one) against
//! masked softmax attention in candle's composite ops with autograd: the
//! value and the q, k, v gradients, over GQA shapes, lengths that are no
//! multiple of the tile, and packed rows; and what each keeps for backward.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use candle_core::{Tensor, Var};
use her_core::rng::SplitMix64;

use super::attention::TiledAttention;
use crate::model::Segments;
use crate::model::ops::CausalAttention;
use crate::model::ops::tests::{max_diff, randn, reference_attention};

#[derive(Clone, Copy, Debug)]
enum Path {
    Fused,
    Portable,
}

/// One path's op with the given tiles; `kept` reads what it keeps.
struct Op {
    fused: CausalAttention,
    portable: TiledAttention,
    path: Path,
}

impl Op {
    fn new(path: Path, scale: f32, segments: Option<Arc<Segments>>, tile: usize) -> Self {
        Self {
            fused: CausalAttention::new(scale)
                .with_segments(segments.clone())
                .with_tiles(tile, tile),
            portable: TiledAttention::new(scale)
                .with_segments(segments)
                .with_tiles(tile, tile),
            path,
        }
    }

    fn forward(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Tensor {
        match self.path {
            Path::Fused => self.fused.forward(q, k, v).unwrap(),
            Path::Portable => self.portable.forward(q, k, v).unwrap(),
        }
    }

    fn kept_bytes(&self) -> usize {
        match self.path {
            Path::Fused => self.fused.kept_bytes(),
            Path::Portable => self.portable.kept_bytes(),
        }
    }
}

/// max |a − e| / max(1, max |e|).
fn relative_diff(a: &Tensor, e: &Tensor) -> f32 {
    max_diff(a, e) / max_diff(e, &e.zeros_like().unwrap()).max(1.0)
}

/// Random sample lengths filling each of `b` rows of `t` positions,
/// sometimes leaving padding after the last sample.
fn random_lengths(b: usize, t: usize, rng: &mut SplitMix64) -> Vec<Vec<usize>> {
    (0..b)
        .map(|_| {
            let mut lengths = Vec::new();
            let mut at = 0;
            while at < t {
                let len = 1 + (rng.next_u64() as usize) % t.div_ceil(3);
                let len = len.min(t - at);
                if !lengths.is_empty() && rng.unit() < 0.15 {
                    break; // the rest is padding, joined to the last sample
                }
                lengths.push(len);
                at += len;
            }
            lengths
        })
        .collect()
}

/// Which sample of its row each position belongs to (padding joins the last).
fn sample_index(lengths: &[Vec<usize>], t: usize) -> Vec<Vec<usize>> {
    lengths
        .iter()
        .map(|row| {
            let mut ids = Vec::with_capacity(t);
            for (i, &len) in row.iter().enumerate() {
                ids.extend(std::iter::repeat_n(i, len));
            }
            let last = row.len().saturating_sub(1);
            ids.resize(t, last);
            ids
        })
        .collect()
}

/// Value and q/k/v gradients of `path` against the reference, each within
/// 1e-5 relative.
fn check(path: Path, (nh, nkv): (usize, usize), t: usize, tile: usize, packed: bool) {
    let (b, d, scale) = (2, 8, 0.35f32);
    let seed = (nh * 1000 + nkv * 100 + t) as u64;
    let mut rng = SplitMix64::new(seed);
    let lengths = if packed {
        random_lengths(b, t, &mut rng)
    } else {
        vec![vec![t]; b]
    };
    let sample = sample_index(&lengths, t);
    let segments = packed.then(|| Arc::new(Segments::from_lengths(t, &lengths).unwrap()));
    let q = Var::from_tensor(&randn(&[b, t, nh, d], seed + 1)).unwrap();
    let k = Var::from_tensor(&randn(&[b, t, nkv, d], seed + 2)).unwrap();
    let v = Var::from_tensor(&randn(&[b, t, nkv, d], seed + 3)).unwrap();

    let y = Op::new(path, scale, segments, tile).forward(&q, &k, &v);
    let r = reference_attention(&q, &k, &v, scale, |row, i, j| {
        j <= i && sample[row][i] == sample[row][j]
    });
    let case = format!("{path:?} nh {nh} nkv {nkv} t {t} tile {tile} lengths {lengths:?}");
    let diff = relative_diff(&y, &r);
    assert!(diff <= 1e-5, "{case}: values differ by {diff}");

    let w = randn(&[b * t, nh * d], seed + 4);
    let gy = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let gr = (&r * &w).unwrap().sum_all().unwrap().backward().unwrap();
    for (name, x) in [("q", &q), ("k", &k), ("v", &v)] {
        let diff = relative_diff(gy.get(x).unwrap(), gr.get(x).unwrap());
        assert!(diff <= 1e-5, "{case}: d{name} differs by {diff}");
    }
}

fn check_every_case(path: Path) {
    for heads in [(4, 4), (4, 2), (8, 1)] {
        for t in [1, 7, 64, 77, 130] {
            for tile in [16, 32] {
                for packed in [false, true] {
                    check(path, heads, t, tile, packed);
                }
            }
        }
    }
}

#[test]
fn fused_tiled_attention_matches_the_reference_and_its_gradients() {
    check_every_case(Path::Fused);
}

#[test]
fn portable_tiled_attention_matches_the_reference_and_its_gradients() {
    check_every_case(Path::Portable);
}

#[test]
fn both_paths_keep_only_the_log_sum_exp_between_forward_and_backward() {
    let (b, nh, nkv, d) = (2, 4, 2, 8);
    for path in [Path::Fused, Path::Portable] {
        for t in [64, 128, 256] {
            let q = Var::from_tensor(&randn(&[b, t, nh, d], 31)).unwrap();
            let k = Var::from_tensor(&randn(&[b, t, nkv, d], 32)).unwrap();
            let v = Var::from_tensor(&randn(&[b, t, nkv, d], 33)).unwrap();
            let op = Op::new(path, 0.35, None, 32);
            let y = op.forward(&q, &k, &v);
            assert_eq!(op.kept_bytes(), 4 * b * nh * t, "{path:?} t {t}");
            let grads = y.sum_all().unwrap().backward().unwrap();
            assert_eq!(op.kept_bytes(), 0, "{path:?} t {t}: backward frees it");
            // A gradient that is itself recorded would hold the graph of
            // every tile the backward computed.
            for x in [&q, &k, &v] {
                assert!(!grads.get(x).unwrap().track_op(), "{path:?} t {t}");
            }
        }
    }
}

#[test]
fn the_portable_path_with_default_tiles_equals_the_fused_op() {
    let (b, t, nh, nkv, d) = (2, 77, 4, 2, 8);
    let lengths = [vec![30, 40], vec![77]];
    let segments = Arc::new(Segments::from_lengths(t, &lengths).unwrap());
    let q = Var::from_tensor(&randn(&[b, t, nh, d], 41)).unwrap();
    let k = Var::from_tensor(&randn(&[b, t, nkv, d], 42)).unwrap();
    let v = Var::from_tensor(&randn(&[b, t, nkv, d], 43)).unwrap();
    let fused = CausalAttention::new(0.35)
        .with_segments(Some(segments.clone()))
        .forward(&q, &k, &v)
        .unwrap();
    let portable = super::attention::causal_attention(&q, &k, &v, 0.35, Some(segments)).unwrap();
    assert!(relative_diff(&portable, &fused) <= 1e-5);
}

#[test]
fn untracked_inputs_keep_nothing_on_the_portable_path() {
    let (b, t, nh, nkv, d) = (1, 20, 4, 2, 8);
    let q = randn(&[b, t, nh, d], 51);
    let k = randn(&[b, t, nkv, d], 52);
    let v = randn(&[b, t, nkv, d], 53);
    let op = TiledAttention::new(0.35);
    let y = op.forward(&q, &k, &v).unwrap();
    assert!(!y.track_op());
    assert_eq!(op.kept_bytes(), 0);
}

#[test]
fn the_portable_path_rejects_mismatched_shapes_and_segments() {
    let q = randn(&[1, 4, 3, 8], 61);
    let kv = randn(&[1, 4, 2, 8], 62);
    assert!(TiledAttention::new(1.0).forward(&q, &kv, &kv).is_err());
    let q = randn(&[2, 4, 2, 8], 63);
    let one_row = Arc::new(Segments::from_lengths(4, &[vec![2, 2]]).unwrap());
    let packed = TiledAttention::new(1.0).with_segments(Some(one_row));
    assert!(packed.forward(&q, &q, &q).is_err());
}
