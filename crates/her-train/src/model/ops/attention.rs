//! Causal grouped-query attention as one op: softmax(scale · Q·Kᵀ, causal)·V
//! for every query head, with query head h reading KV head h / rep
//! (llama.cpp's order).
//!
//! Built from candle ops, attention needed permuted copies of Q, K, V and
//! the context, two batched matmuls, and in backward as many more copies
//! plus a zero-fill and an add for every gradient candle accumulates. This
//! op reads Q, K, V where the projections wrote them, works one query head
//! at a time (each on one thread, the heads in parallel) and only on the
//! causal part of the scores: query rows are taken in blocks of
//! [`ROW_BLOCK`], and a block never multiplies the keys after its last
//! position. With samples packed into a row ([`Segments`]) the mask is
//! block-diagonal as well: a block never crosses a sample boundary and
//! never multiplies the keys before its sample's start, so packed samples
//! cost what they would alone. It keeps the probabilities of those blocks
//! (not whole t × t matrices) for backward, as the softmax it replaces did.

use std::sync::{Arc, Mutex, MutexGuard};

use rayon::prelude::*;

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor, bail};

use super::matmul::{MatMut, MatRef, Threads, matmul_into};
use super::{f32_data, vmath};
use crate::model::Segments;

/// Query positions per block of the causal walk.
const ROW_BLOCK: usize = 64;

#[derive(Clone)]
pub struct CausalAttention {
    scale: f32,
    /// The samples of each row; `None`: one per row.
    segments: Option<Arc<Segments>>,
    /// Each (batch, query head)'s probabilities, its row blocks one after
    /// the other (see [`RowBlock`]); kept by forward for backward. Shared
    /// by the op's clones, so the copy candle records sees what forward
    /// kept.
    probs: Arc<Mutex<Vec<Vec<f32>>>>,
}

/// Query rows `r0..r0 + n` of one sample, which read keys `k0..r0 + n` (k0
/// is the sample's first position). Its probabilities are (n × width)
/// row-major at `offset` of the head's buffer, zero after each row's own
/// position.
#[derive(Clone, Copy)]
struct RowBlock {
    r0: usize,
    n: usize,
    k0: usize,
    offset: usize,
}

impl RowBlock {
    fn width(&self) -> usize {
        self.r0 + self.n - self.k0
    }
}

/// The row blocks of one batch row and the size of its probability buffer.
struct RowPlan {
    blocks: Vec<RowBlock>,
    size: usize,
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
    /// (query head's rows, its KV head's rows) for task `task` = (batch,
    /// head): the offsets of position 0 in the q and k/v buffers.
    fn offsets(&self, task: usize) -> (usize, usize) {
        let (bi, h) = (task / self.nh, task % self.nh);
        let g = h / (self.nh / self.nkv);
        (
            bi * self.t * self.nh * self.d + h * self.d,
            bi * self.t * self.nkv * self.d + g * self.d,
        )
    }

    fn q_view<'a>(&self, data: &'a [f32], offset: usize) -> MatRef<'a> {
        MatRef::new(data, offset, self.t, self.d, self.nh * self.d)
    }

    fn kv_view<'a>(&self, data: &'a [f32], offset: usize) -> MatRef<'a> {
        MatRef::new(data, offset, self.t, self.d, self.nkv * self.d)
    }
}

/// Each batch row's blocks of query positions: every sample's rows in
/// blocks of [`ROW_BLOCK`] (a lone row of t positions without segments).
fn row_plans(b: usize, t: usize, segments: Option<&Segments>) -> Vec<RowPlan> {
    (0..b)
        .map(|row| {
            let spans: Vec<(usize, usize)> = match segments {
                Some(s) => s.spans(row).collect(),
                None => vec![(0, t)],
            };
            let mut blocks = Vec::new();
            let mut size = 0;
            for (start, len) in spans {
                for r0 in (start..start + len).step_by(ROW_BLOCK) {
                    let block = RowBlock {
                        r0,
                        n: ROW_BLOCK.min(start + len - r0),
                        k0: start,
                        offset: size,
                    };
                    size += block.n * block.width();
                    blocks.push(block);
                }
            }
            RowPlan { blocks, size }
        })
        .collect()
}

impl CausalAttention {
    /// `scale` multiplies the scores before the softmax (1/√d usually).
    pub fn new(scale: f32) -> Self {
        Self {
            scale,
            segments: None,
            probs: Arc::default(),
        }
    }

    /// Attention kept inside each of the samples packed into a row.
    pub fn with_segments(mut self, segments: Option<Arc<Segments>>) -> Self {
        self.segments = segments;
        self
    }

    /// q (b, t, nh, d), k and v (b, t, nkv, d) → context (b·t, nh·d).
    pub fn forward(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        q.contiguous()?
            .apply_op3(&k.contiguous()?, &v.contiguous()?, self.clone())
    }

    fn dims(&self, q: &Layout, k: &Layout, v: &Layout) -> Result<Dims> {
        let (b, t, nh, d) = q.shape().dims4()?;
        let (kb, kt, nkv, kd) = k.shape().dims4()?;
        if (kb, kt, kd) != (b, t, d) || v.shape() != k.shape() || nkv == 0 || nh % nkv != 0 {
            bail!(
                "causal_attention: q {:?}, k {:?}, v {:?} are not (b, t, heads, d) with \
                 query heads a multiple of KV heads",
                q.shape(),
                k.shape(),
                v.shape()
            );
        }
        if let Some(seg) = &self.segments
            && (seg.rows(), seg.row_len()) != (b, t)
        {
            bail!(
                "causal_attention: segments for {}×{} positions, the input has {b}×{t}",
                seg.rows(),
                seg.row_len()
            );
        }
        Ok(Dims { b, t, nh, nkv, d })
    }

    fn plans(&self, s: Dims) -> Vec<RowPlan> {
        row_plans(s.b, s.t, self.segments.as_deref())
    }

    fn kept(&self) -> Result<MutexGuard<'_, Vec<Vec<f32>>>> {
        self.probs.lock().map_err(|_| {
            candle_core::Error::msg("causal_attention: a panic poisoned the probabilities")
        })
    }

    /// One query head: its row blocks' probabilities and (t × d) context.
    fn head_forward(
        &self,
        s: Dims,
        plan: &RowPlan,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        task: usize,
    ) -> (Vec<f32>, Vec<f32>) {
        let d = s.d;
        let (qo, kvo) = s.offsets(task);
        let (qh, kh, vh) = (s.q_view(q, qo), s.kv_view(k, kvo), s.kv_view(v, kvo));
        let mut p = vec![0f32; plan.size];
        let mut ctx = vec![0f32; s.t * d];
        for blk in &plan.blocks {
            let (n, w) = (blk.n, blk.width());
            // Scores of rows r0.. against keys k0..r0+n, already scaled.
            let dst = MatMut::new(&mut p, blk.offset, n, w, w);
            matmul_into(
                dst,
                qh.rows(blk.r0, n),
                kh.rows(blk.k0, w).t(),
                self.scale,
                false,
                Threads::One,
            );
            for i in 0..n {
                let row = &mut p[blk.offset + i * w..blk.offset + (i + 1) * w];
                softmax_causal_row(row, blk.r0 + i - blk.k0 + 1);
            }
            let dst = MatMut::new(&mut ctx, blk.r0 * d, n, d, d);
            let probs = MatRef::new(&p, blk.offset, n, w, w);
            matmul_into(dst, probs, vh.rows(blk.k0, w), 1.0, false, Threads::One);
        }
        (p, ctx)
    }

    /// One query head's gradients: (dq, dk, dv), each (t × d); dk and dv
    /// are this head's share of its KV head's gradient.
    #[allow(clippy::too_many_arguments)]
    fn head_backward(
        &self,
        s: Dims,
        plan: &RowPlan,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        dctx: &[f32],
        p: &[f32],
        task: usize,
    ) -> [Vec<f32>; 3] {
        let (t, d) = (s.t, s.d);
        let (qo, kvo) = s.offsets(task);
        let (qh, kh, vh) = (s.q_view(q, qo), s.kv_view(k, kvo), s.kv_view(v, kvo));
        let dout = MatRef::new(dctx, qo, t, d, s.nh * d);
        let (mut dq, mut dk, mut dv) = (vec![0f32; t * d], vec![0f32; t * d], vec![0f32; t * d]);
        let mut ds = vec![0f32; ROW_BLOCK.min(t) * t];
        for blk in &plan.blocks {
            let (r0, n, k0, w) = (blk.r0, blk.n, blk.k0, blk.width());
            let probs = MatRef::new(p, blk.offset, n, w, w);
            // dv[k0..] += Pᵀ · dout (rows r0..)
            let dst = MatMut::new(&mut dv, k0 * d, w, d, d);
            matmul_into(dst, probs.t(), dout.rows(r0, n), 1.0, true, Threads::One);
            // dP = dout · Vᵀ, then dS = scale · P ⊙ (dP − ⟨dP, P⟩) per row.
            let dst = MatMut::new(&mut ds, 0, n, w, w);
            matmul_into(
                dst,
                dout.rows(r0, n),
                vh.rows(k0, w).t(),
                1.0,
                false,
                Threads::One,
            );
            for i in 0..n {
                let pr = &p[blk.offset + i * w..blk.offset + (i + 1) * w];
                let dr = &mut ds[i * w..(i + 1) * w];
                let dot: f64 = pr
                    .iter()
                    .zip(dr.iter())
                    .map(|(a, b)| f64::from(a * b))
                    .sum();
                let dot = dot as f32;
                for (g, &pv) in dr.iter_mut().zip(pr) {
                    *g = self.scale * pv * (*g - dot);
                }
            }
            let dscores = MatRef::new(&ds, 0, n, w, w);
            // dq (rows r0..) = dS · K; dk[k0..] += dSᵀ · Q (rows r0..)
            let dst = MatMut::new(&mut dq, r0 * d, n, d, d);
            matmul_into(dst, dscores, kh.rows(k0, w), 1.0, false, Threads::One);
            let dst = MatMut::new(&mut dk, k0 * d, w, d, d);
            matmul_into(dst, dscores.t(), qh.rows(r0, n), 1.0, true, Threads::One);
        }
        [dq, dk, dv]
    }
}

/// Softmax in place over the first `n` entries of `row` (the keys up to the
/// query's position); the rest become 0.
fn softmax_causal_row(row: &mut [f32], n: usize) {
    let (keys, rest) = row.split_at_mut(n);
    let max = vmath::max(keys);
    let inv = (1.0 / vmath::exp_shifted_sum(keys, max)) as f32;
    keys.iter_mut().for_each(|v| *v *= inv);
    rest.fill(0.0);
}

/// Writes (or, with `add`, adds) a (t × d) head block into its columns of
/// a (b·t, heads·d) buffer; `task` = batch · heads + head.
fn scatter_head(out: &mut [f32], block: &[f32], task: usize, s: (usize, usize, usize), add: bool) {
    let (t, heads, d) = s;
    let (bi, h) = (task / heads, task % heads);
    for (pos, src) in block.chunks_exact(d).take(t).enumerate() {
        let dst = &mut out[(bi * t + pos) * heads * d + h * d..][..d];
        if add {
            dst.iter_mut().zip(src).for_each(|(a, b)| *a += b);
        } else {
            dst.copy_from_slice(src);
        }
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
        let (q, k, v) = (
            f32_data(qs, ql, self.name())?,
            f32_data(ks, kl, self.name())?,
            f32_data(vs, vl, self.name())?,
        );
        let plans = self.plans(s);
        let heads: Vec<(Vec<f32>, Vec<f32>)> = (0..s.b * s.nh)
            .into_par_iter()
            .map(|task| self.head_forward(s, &plans[task / s.nh], q, k, v, task))
            .collect();
        let mut out = vec![0f32; s.b * s.t * s.nh * s.d];
        for (task, (_, ctx)) in heads.iter().enumerate() {
            scatter_head(&mut out, ctx, task, (s.t, s.nh, s.d), false);
        }
        *self.kept()? = heads.into_iter().map(|(p, _)| p).collect();
        Ok((CpuStorage::F32(out), Shape::from((s.b * s.t, s.nh * s.d))))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let probs = std::mem::take(&mut *self.kept()?);
        let grad = grad.contiguous()?;
        let (qs, ql) = q.storage_and_layout();
        let (ks, kl) = k.storage_and_layout();
        let (vs, vl) = v.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let (Storage::Cpu(qs), Storage::Cpu(ks), Storage::Cpu(vs), Storage::Cpu(gs)) =
            (&*qs, &*ks, &*vs, &*gs)
        else {
            bail!("causal_attention: the inputs are not on the CPU");
        };
        let s = self.dims(ql, kl, vl)?;
        let plans = self.plans(s);
        if probs.len() != s.b * s.nh
            || probs
                .iter()
                .enumerate()
                .any(|(task, p)| p.len() != plans[task / s.nh].size)
        {
            bail!("causal_attention: backward without the probabilities of its forward");
        }
        let name = self.name();
        let (qd, kd, vd, gd) = (
            f32_data(qs, ql, name)?,
            f32_data(ks, kl, name)?,
            f32_data(vs, vl, name)?,
            f32_data(gs, gl, name)?,
        );
        let grads: Vec<[Vec<f32>; 3]> = (0..s.b * s.nh)
            .into_par_iter()
            .map(|task| {
                let plan = &plans[task / s.nh];
                self.head_backward(s, plan, qd, kd, vd, gd, &probs[task], task)
            })
            .collect();
        drop(probs);
        let m = s.b * s.t;
        let rep = s.nh / s.nkv;
        let (mut dq, mut dk, mut dv) = (
            vec![0f32; m * s.nh * s.d],
            vec![0f32; m * s.nkv * s.d],
            vec![0f32; m * s.nkv * s.d],
        );
        for (task, [gq, gk, gv]) in grads.iter().enumerate() {
            scatter_head(&mut dq, gq, task, (s.t, s.nh, s.d), false);
            // A KV head sums the shares of the rep query heads that read it.
            let kv_task = task / s.nh * s.nkv + task % s.nh / rep;
            scatter_head(&mut dk, gk, kv_task, (s.t, s.nkv, s.d), true);
            scatter_head(&mut dv, gv, kv_task, (s.t, s.nkv, s.d), true);
        }
        let dev = q.device();
        Ok((
            Some(Tensor::from_vec(dq, q.shape(), dev)?),
            Some(Tensor::from_vec(dk, k.shape(), dev)?),
            Some(Tensor::from_vec(dv, v.shape(), dev)?),
        ))
    }
}
