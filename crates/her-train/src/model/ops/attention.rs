//! Causal grouped-query attention as one op: softmax(scale · Q·Kᵀ, causal)·V
//! for every query head, with query head h reading KV head h / rep
//! (llama.cpp's order), computed tile by tile in the manner of
//! FlashAttention-2 so that no (t × t) matrix is ever held.
//!
//! Forward walks each query tile over the key tiles it can see with an
//! online softmax (running row maxima and sums, the context rescaled as the
//! maximum grows) and keeps only each row's log-sum-exp for backward:
//! b·nh·t floats instead of the causal half of every head's probabilities.
//! Backward recomputes each tile's probabilities from that log-sum-exp,
//! with D = rowsum(dO ⊙ O) standing in for the softmax's row dot product.
//!
//! Q, K, V are read where the projections wrote them (b, t, heads, d);
//! nothing is permuted or repeated. Forward runs one task per (batch, query
//! head); backward one per (batch, KV head), which walks the query heads
//! that share the KV head and sums their dK and dV itself. With samples
//! packed into a row ([`Segments`]) tiles are planned per sample: a query
//! tile never crosses a sample boundary and reads keys from its sample's
//! start only, so the sole mask left is the causal triangle.

use std::sync::{Arc, Mutex, MutexGuard};

use rayon::prelude::*;

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor, bail};

use super::matmul::{MatMut, MatRef, Threads, matmul_into};
use super::{f32_data, vmath};
use crate::model::Segments;

/// Query rows per tile (the default).
const Q_TILE: usize = 64;
/// Keys per tile (the default).
const K_TILE: usize = 256;

/// Checks the inputs of either attention path: q (b, t, nh, d), k and v
/// (b, t, nkv, d) with nh a multiple of nkv, and segments (if any) for b×t
/// positions → (b, t, nh, nkv, d).
pub(crate) fn attention_dims(
    op: &str,
    [q, k, v]: [&Shape; 3],
    segments: Option<&Segments>,
) -> Result<(usize, usize, usize, usize, usize)> {
    let (b, t, nh, d) = q.dims4()?;
    let (kb, kt, nkv, kd) = k.dims4()?;
    if (kb, kt, kd) != (b, t, d) || v != k || nkv == 0 || nh % nkv != 0 {
        bail!(
            "{op}: q {q:?}, k {k:?}, v {v:?} are not (b, t, heads, d) with query heads a \
             multiple of KV heads"
        );
    }
    if let Some(seg) = segments
        && (seg.rows(), seg.row_len()) != (b, t)
    {
        bail!(
            "{op}: segments for {}×{} positions, the input has {b}×{t}",
            seg.rows(),
            seg.row_len()
        );
    }
    Ok((b, t, nh, nkv, d))
}

#[derive(Clone)]
pub struct CausalAttention {
    scale: f32,
    /// The samples of each row; `None`: one per row.
    segments: Option<Arc<Segments>>,
    q_tile: usize,
    k_tile: usize,
    /// Each (batch, query head, position)'s log-sum-exp of its scaled
    /// scores, kept by forward for backward. Shared by the op's clones, so
    /// the copy candle records sees what forward kept.
    lse: Arc<Mutex<Vec<f32>>>,
}

/// Query rows `r0..r0 + n`, all of one sample whose first position is
/// `k0`: they read keys `k0..r0 + n`.
#[derive(Clone, Copy)]
struct QueryTile {
    r0: usize,
    n: usize,
    k0: usize,
}

impl QueryTile {
    /// The key tiles this query tile reads: (first key, keys).
    fn key_tiles(self, k_tile: usize) -> impl Iterator<Item = (usize, usize)> {
        let end = self.r0 + self.n;
        (self.k0..end)
            .step_by(k_tile)
            .map(move |kt| (kt, k_tile.min(end - kt)))
    }

    /// How many of the keys `kt..kt + w` query row `i` of the tile sees.
    fn visible(self, i: usize, kt: usize, w: usize) -> usize {
        (self.r0 + i + 1).saturating_sub(kt).min(w)
    }
}

/// Sizes of one call.
#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    t: usize,
    nh: usize,
    nkv: usize,
    d: usize,
}

impl Dims {
    fn rep(&self) -> usize {
        self.nh / self.nkv
    }

    /// Offset of position 0 of query head `h` of batch row `bi` in q.
    fn q_offset(&self, bi: usize, h: usize) -> usize {
        bi * self.t * self.nh * self.d + h * self.d
    }

    /// Offset of position 0 of KV head `g` of batch row `bi` in k and v.
    fn kv_offset(&self, bi: usize, g: usize) -> usize {
        bi * self.t * self.nkv * self.d + g * self.d
    }

    fn q_view<'a>(&self, data: &'a [f32], bi: usize, h: usize) -> MatRef<'a> {
        MatRef::new(data, self.q_offset(bi, h), self.t, self.d, self.nh * self.d)
    }

    fn kv_view<'a>(&self, data: &'a [f32], bi: usize, g: usize) -> MatRef<'a> {
        MatRef::new(
            data,
            self.kv_offset(bi, g),
            self.t,
            self.d,
            self.nkv * self.d,
        )
    }
}

/// Each batch row's query tiles: every sample's rows in tiles of `q_tile`
/// (a lone sample of t positions without segments).
fn query_tiles(
    b: usize,
    t: usize,
    q_tile: usize,
    segments: Option<&Segments>,
) -> Vec<Vec<QueryTile>> {
    (0..b)
        .map(|row| {
            let spans: Vec<(usize, usize)> = match segments {
                Some(s) => s.spans(row).collect(),
                None => vec![(0, t)],
            };
            spans
                .into_iter()
                .flat_map(|(start, len)| {
                    (start..start + len)
                        .step_by(q_tile)
                        .map(move |r0| QueryTile {
                            r0,
                            n: q_tile.min(start + len - r0),
                            k0: start,
                        })
                })
                .collect()
        })
        .collect()
}

impl CausalAttention {
    /// `scale` multiplies the scores before the softmax (1/√d usually).
    pub fn new(scale: f32) -> Self {
        Self {
            scale,
            segments: None,
            q_tile: Q_TILE,
            k_tile: K_TILE,
            lse: Arc::default(),
        }
    }

    /// Attention kept inside each of the samples packed into a row.
    pub fn with_segments(mut self, segments: Option<Arc<Segments>>) -> Self {
        self.segments = segments;
        self
    }

    /// Other tile sizes (query rows, keys), so tests reach ragged tiles
    /// with short inputs.
    #[cfg(test)]
    pub(crate) fn with_tiles(mut self, q_tile: usize, k_tile: usize) -> Self {
        self.q_tile = q_tile.max(1);
        self.k_tile = k_tile.max(1);
        self
    }

    /// Bytes the op keeps between forward and backward (the log-sum-exp).
    pub fn kept_bytes(&self) -> usize {
        self.kept().map_or(0, |lse| lse.len() * size_of::<f32>())
    }

    /// q (b, t, nh, d), k and v (b, t, nkv, d) → context (b·t, nh·d).
    pub fn forward(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        q.contiguous()?
            .apply_op3(&k.contiguous()?, &v.contiguous()?, self.clone())
    }

    fn dims(&self, q: &Layout, k: &Layout, v: &Layout) -> Result<Dims> {
        let (b, t, nh, nkv, d) = attention_dims(
            "causal_attention",
            [q.shape(), k.shape(), v.shape()],
            self.segments.as_deref(),
        )?;
        Ok(Dims { b, t, nh, nkv, d })
    }

    fn tiles(&self, s: Dims) -> Vec<Vec<QueryTile>> {
        query_tiles(s.b, s.t, self.q_tile, self.segments.as_deref())
    }

    /// scale · Q·Kᵀ of one tile (n query rows × w keys) into `dst`.
    fn tile_scores(&self, dst: &mut [f32], q: MatRef<'_>, k: MatRef<'_>, (n, w): (usize, usize)) {
        let dst = MatMut::new(dst, 0, n, w, w);
        matmul_into(dst, q, k.t(), self.scale, false, Threads::One);
    }

    fn kept(&self) -> Result<MutexGuard<'_, Vec<f32>>> {
        self.lse.lock().map_err(|_| {
            candle_core::Error::msg("causal_attention: a panic poisoned the log-sum-exp")
        })
    }

    /// One query head: its (t × d) context and the t log-sum-exps.
    fn head_forward(
        &self,
        s: Dims,
        tiles: &[QueryTile],
        [q, k, v]: [&[f32]; 3],
        (bi, h): (usize, usize),
    ) -> (Vec<f32>, Vec<f32>) {
        let d = s.d;
        let g = h / s.rep();
        let (qh, kh, vh) = (s.q_view(q, bi, h), s.kv_view(k, bi, g), s.kv_view(v, bi, g));
        let mut ctx = vec![0f32; s.t * d];
        let mut lse = vec![0f32; s.t];
        let mut scores = vec![0f32; self.q_tile * self.k_tile];
        let (mut max, mut sum) = (vec![0f32; self.q_tile], vec![0f32; self.q_tile]);
        for &tile in tiles {
            let (r0, n) = (tile.r0, tile.n);
            max[..n].fill(f32::NEG_INFINITY);
            sum[..n].fill(0.0);
            for (kt, w) in tile.key_tiles(self.k_tile) {
                // Scaled scores of rows r0.. against keys kt..kt+w.
                self.tile_scores(&mut scores, qh.rows(r0, n), kh.rows(kt, w), (n, w));
                for i in 0..n {
                    let row = &mut scores[i * w..(i + 1) * w];
                    let seen = tile.visible(i, kt, w);
                    let (keys, hidden) = row.split_at_mut(seen);
                    hidden.fill(0.0);
                    if seen == 0 {
                        continue;
                    }
                    // The first visible tile of a row holds its sample's
                    // first key, so `max` is finite from then on.
                    let new_max = max[i].max(vmath::max(keys));
                    let shrink = vmath::exp(max[i] - new_max);
                    let tile_sum = vmath::exp_shifted_sum(keys, new_max) as f32;
                    sum[i] = sum[i] * shrink + tile_sum;
                    max[i] = new_max;
                    if shrink != 1.0 {
                        ctx[(r0 + i) * d..(r0 + i + 1) * d]
                            .iter_mut()
                            .for_each(|o| *o *= shrink);
                    }
                }
                let dst = MatMut::new(&mut ctx, r0 * d, n, d, d);
                let probs = MatRef::new(&scores, 0, n, w, w);
                matmul_into(dst, probs, vh.rows(kt, w), 1.0, true, Threads::One);
            }
            for i in 0..n {
                let inv = 1.0 / sum[i];
                ctx[(r0 + i) * d..(r0 + i + 1) * d]
                    .iter_mut()
                    .for_each(|o| *o *= inv);
                lse[r0 + i] = max[i] + sum[i].ln();
            }
        }
        (ctx, lse)
    }

    /// One KV head and the query heads that read it: (dq of those heads,
    /// one (t × d) block per head, dk, dv), recomputing each tile's
    /// probabilities from the kept log-sum-exp.
    fn kv_head_backward(
        &self,
        s: Dims,
        tiles: &[QueryTile],
        [q, k, v, out, dout]: [&[f32]; 5],
        lse: &[f32],
        (bi, g): (usize, usize),
    ) -> [Vec<f32>; 3] {
        let (t, d, rep) = (s.t, s.d, s.rep());
        let (kh, vh) = (s.kv_view(k, bi, g), s.kv_view(v, bi, g));
        let (mut dq, mut dk, mut dv) = (
            vec![0f32; rep * t * d],
            vec![0f32; t * d],
            vec![0f32; t * d],
        );
        let mut probs = vec![0f32; self.q_tile * self.k_tile];
        let mut dscores = vec![0f32; self.q_tile * self.k_tile];
        for r in 0..rep {
            let h = g * rep + r;
            let qh = s.q_view(q, bi, h);
            let doh = s.q_view(dout, bi, h);
            let lse = &lse[(bi * s.nh + h) * t..][..t];
            let offset = s.q_offset(bi, h);
            // D = rowsum(dO ⊙ O): the softmax backward's row dot product.
            let dots: Vec<f32> = (0..t)
                .map(|pos| {
                    let at = offset + pos * s.nh * d;
                    let dot: f64 = out[at..at + d]
                        .iter()
                        .zip(&dout[at..at + d])
                        .map(|(a, b)| f64::from(a * b))
                        .sum();
                    dot as f32
                })
                .collect();
            for &tile in tiles {
                let (r0, n) = (tile.r0, tile.n);
                for (kt, w) in tile.key_tiles(self.k_tile) {
                    self.tile_scores(&mut probs, qh.rows(r0, n), kh.rows(kt, w), (n, w));
                    for i in 0..n {
                        let row = &mut probs[i * w..(i + 1) * w];
                        let (keys, hidden) = row.split_at_mut(tile.visible(i, kt, w));
                        vmath::exp_shifted_sum(keys, lse[r0 + i]);
                        hidden.fill(0.0);
                    }
                    let p = MatRef::new(&probs, 0, n, w, w);
                    // dV[kt..] += Pᵀ · dO (rows r0..)
                    let dst = MatMut::new(&mut dv, kt * d, w, d, d);
                    matmul_into(dst, p.t(), doh.rows(r0, n), 1.0, true, Threads::One);
                    // dP = dO · Vᵀ, then dS = scale · P ⊙ (dP − D) per row.
                    let dst = MatMut::new(&mut dscores, 0, n, w, w);
                    matmul_into(
                        dst,
                        doh.rows(r0, n),
                        vh.rows(kt, w).t(),
                        1.0,
                        false,
                        Threads::One,
                    );
                    for i in 0..n {
                        let dot = dots[r0 + i];
                        let pr = &probs[i * w..(i + 1) * w];
                        for (g, &pv) in dscores[i * w..(i + 1) * w].iter_mut().zip(pr) {
                            *g = self.scale * pv * (*g - dot);
                        }
                    }
                    let ds = MatRef::new(&dscores, 0, n, w, w);
                    // dQ (rows r0..) += dS · K; dK[kt..] += dSᵀ · Q (rows r0..)
                    let dst = MatMut::new(&mut dq, (r * t + r0) * d, n, d, d);
                    matmul_into(dst, ds, kh.rows(kt, w), 1.0, true, Threads::One);
                    let dst = MatMut::new(&mut dk, kt * d, w, d, d);
                    matmul_into(dst, ds.t(), qh.rows(r0, n), 1.0, true, Threads::One);
                }
            }
        }
        [dq, dk, dv]
    }
}

/// Writes a (t × d) head block into its columns of a (b·t, heads·d)
/// buffer; `task` = batch · heads + head.
fn scatter_head(out: &mut [f32], block: &[f32], task: usize, (t, heads, d): (usize, usize, usize)) {
    let (bi, h) = (task / heads, task % heads);
    for (pos, src) in block.chunks_exact(d).take(t).enumerate() {
        out[(bi * t + pos) * heads * d + h * d..][..d].copy_from_slice(src);
    }
}

impl CustomOp3 for CausalAttention {
    fn name(&self) -> &'static str {
        "causal_attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let s = self.dims(ql, kl, vl)?;
        let inputs = [
            f32_data(qs, ql, self.name())?,
            f32_data(ks, kl, self.name())?,
            f32_data(vs, vl, self.name())?,
        ];
        let tiles = self.tiles(s);
        let heads: Vec<(Vec<f32>, Vec<f32>)> = (0..s.b * s.nh)
            .into_par_iter()
            .map(|task| {
                let (bi, h) = (task / s.nh, task % s.nh);
                self.head_forward(s, &tiles[bi], inputs, (bi, h))
            })
            .collect();
        let mut out = vec![0f32; s.b * s.t * s.nh * s.d];
        let mut lse = Vec::with_capacity(s.b * s.nh * s.t);
        for (task, (ctx, head_lse)) in heads.into_iter().enumerate() {
            scatter_head(&mut out, &ctx, task, (s.t, s.nh, s.d));
            lse.extend_from_slice(&head_lse);
        }
        *self.kept()? = lse;
        Ok((CpuStorage::F32(out), Shape::from((s.b * s.t, s.nh * s.d))))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let lse = std::mem::take(&mut *self.kept()?);
        let grad = grad.contiguous()?;
        let res = res.contiguous()?;
        let (qs, ql) = q.storage_and_layout();
        let (ks, kl) = k.storage_and_layout();
        let (vs, vl) = v.storage_and_layout();
        let (os, ol) = res.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let (
            Storage::Cpu(qs),
            Storage::Cpu(ks),
            Storage::Cpu(vs),
            Storage::Cpu(os),
            Storage::Cpu(gs),
        ) = (&*qs, &*ks, &*vs, &*os, &*gs)
        else {
            bail!("causal_attention: the inputs are not on the CPU");
        };
        let s = self.dims(ql, kl, vl)?;
        if lse.len() != s.b * s.nh * s.t {
            bail!("causal_attention: backward without the log-sum-exp of its forward");
        }
        let name = self.name();
        let data = [
            f32_data(qs, ql, name)?,
            f32_data(ks, kl, name)?,
            f32_data(vs, vl, name)?,
            f32_data(os, ol, name)?,
            f32_data(gs, gl, name)?,
        ];
        if data[3].len() != data[0].len() || data[4].len() != data[0].len() {
            bail!("causal_attention: the output or its gradient has the wrong size");
        }
        let tiles = self.tiles(s);
        let grads: Vec<[Vec<f32>; 3]> = (0..s.b * s.nkv)
            .into_par_iter()
            .map(|task| {
                let (bi, g) = (task / s.nkv, task % s.nkv);
                self.kv_head_backward(s, &tiles[bi], data, &lse, (bi, g))
            })
            .collect();
        drop(lse);
        let m = s.b * s.t;
        let rep = s.rep();
        let (mut dq, mut dk, mut dv) = (
            vec![0f32; m * s.nh * s.d],
            vec![0f32; m * s.nkv * s.d],
            vec![0f32; m * s.nkv * s.d],
        );
        for (task, [gq, gk, gv]) in grads.iter().enumerate() {
            let (bi, g) = (task / s.nkv, task % s.nkv);
            for (r, head) in gq.chunks_exact(s.t * s.d).enumerate() {
                let h = g * rep + r;
                scatter_head(&mut dq, head, bi * s.nh + h, (s.t, s.nh, s.d));
            }
            scatter_head(&mut dk, gk, task, (s.t, s.nkv, s.d));
            scatter_head(&mut dv, gv, task, (s.t, s.nkv, s.d));
        }
        let dev = q.device();
        Ok((
            Some(Tensor::from_vec(dq, q.shape(), dev)?),
            Some(Tensor::from_vec(dk, k.shape(), dev)?),
            Some(Tensor::from_vec(dv, v.shape(), dev)?),
        ))
    }
}
