//! Tiled causal grouped-query attention in candle tensor ops only, so it
//! runs on any device: the FlashAttention-2 algorithm of the fused CPU op
//! (`ops::CausalAttention`), recorded through [`attach3`] so that candle's
//! autograd never sees a tile.
//!
//! The rep = nh / nkv query heads that share a KV head are stacked along
//! the rows of one batched product per (batch, KV head): q (b, t, nh, d) is
//! viewed as (b, nkv, rep, t, d), a query tile is (b, nkv, rep·n, d), and
//! K and V are (b, nkv, t, d) without a copy per query head. The key
//! gradients of one tile then sum over the rep heads inside the product.
//!
//! Forward keeps the online softmax's log-sum-exp (b·nh·t f32) in a stash
//! for the backward, which recomputes every tile's probabilities. Tiles
//! cover the same positions in every batch row; packed samples
//! ([`Segments`]) and the causal triangle are masked per tile with
//! `where_cond`, and tiles in which no row sees any key are skipped.
//! Scores and softmax statistics are f32 whatever the input dtype.

use std::sync::{Arc, Mutex};

use candle_core::{D, DType, Device, Result, Tensor, bail};

use super::attach::{Backward, attach3};
use crate::model::Segments;
use crate::model::ops::attention_dims;

/// Largest tile side: few, large products suit a GPU, where every candle op
/// is a kernel launch.
const MAX_TILE: usize = 512;
/// Smallest tile side the budget below may shrink to.
const MIN_TILE: usize = 32;
/// Bytes one tile's scores may take over the whole batch: S and P in f32
/// and P in the value dtype, b·nh·Br·Bc·(4 + 4 + 2).
const TILE_BUDGET: usize = 256 << 20;

/// A row's running maximum before it has seen a key: finite, so that
/// exp(−∞ − floor) is 0 rather than NaN for rows a tile hides entirely.
const MAX_FLOOR: f64 = -1e30;

/// Tiled attention with its log-sum-exp stash; `forward` is the op.
#[derive(Clone)]
pub(crate) struct TiledAttention {
    scale: f32,
    segments: Option<Arc<Segments>>,
    /// (query rows, keys) per tile; `None`: from [`default_tiles`].
    tiles: Option<(usize, usize)>,
    stash: Stash,
}

/// The log-sum-exp forward leaves for backward (b, nkv, rep, t).
type Stash = Arc<Mutex<Option<Tensor>>>;

/// Causal attention of q (b, t, nh, d) over k and v (b, t, nkv, d), inside
/// each packed sample → context (b·t, nh·d): the fused op's inputs and
/// output, in portable ops.
pub(crate) fn causal_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f32,
    segments: Option<Arc<Segments>>,
) -> Result<Tensor> {
    TiledAttention::new(scale)
        .with_segments(segments)
        .forward(q, k, v)
}

/// Equal tile sides, halved from [`MAX_TILE`] until one tile's scores fit
/// [`TILE_BUDGET`].
fn default_tiles(b: usize, nh: usize) -> (usize, usize) {
    let mut side = MAX_TILE;
    while side > MIN_TILE && b * nh * side * side * 10 > TILE_BUDGET {
        side /= 2;
    }
    (side, side)
}

impl TiledAttention {
    pub fn new(scale: f32) -> Self {
        Self {
            scale,
            segments: None,
            tiles: None,
            stash: Arc::default(),
        }
    }

    /// Attention kept inside each of the samples packed into a row.
    pub fn with_segments(mut self, segments: Option<Arc<Segments>>) -> Self {
        self.segments = segments;
        self
    }

    /// Other tile sizes (query rows, keys).
    #[cfg(test)]
    pub fn with_tiles(mut self, q_tile: usize, k_tile: usize) -> Self {
        self.tiles = Some((q_tile.max(1), k_tile.max(1)));
        self
    }

    /// Bytes kept between forward and backward (the log-sum-exp).
    #[cfg(test)]
    pub fn kept_bytes(&self) -> usize {
        match self.stash.lock() {
            Ok(slot) => slot
                .as_ref()
                .map_or(0, |lse| lse.elem_count() * lse.dtype().size_in_bytes()),
            Err(_) => 0,
        }
    }

    /// q (b, t, nh, d), k and v (b, t, nkv, d) → context (b·t, nh·d).
    pub fn forward(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let plan = self.plan(q, k, v)?;
        let (q5, k4, v4) = plan.heads(&q.detach(), &k.detach(), &v.detach())?;
        let (ctx, lse) = plan.forward(&q5, &k4, &v4)?;
        let out = plan.merge_heads(&ctx)?.to_dtype(q.dtype())?;
        if !(q.track_op() || k.track_op() || v.track_op()) {
            return Ok(out);
        }
        match self.stash.lock() {
            Ok(mut slot) => *slot = Some(lse),
            Err(_) => bail!("tiled_attention: a panic poisoned the log-sum-exp"),
        }
        let bwd = TiledBackward {
            plan,
            stash: self.stash.clone(),
        };
        attach3(q, k, v, out, bwd)
    }

    fn plan(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Plan> {
        let (b, t, nh, nkv, d) = attention_dims(
            "tiled_attention",
            [q.shape(), k.shape(), v.shape()],
            self.segments.as_deref(),
        )?;
        let (q_tile, k_tile) = self.tiles.unwrap_or_else(|| default_tiles(b, nh));
        let mut plan = Plan {
            b,
            t,
            nkv,
            rep: nh / nkv,
            d,
            scale: self.scale,
            q_tile,
            k_tile,
            segments: self.segments.clone(),
            sample_ids: None,
            device: q.device().clone(),
        };
        if plan.segments.is_some() {
            plan.sample_ids = Some(plan.sample_ids()?);
        }
        Ok(plan)
    }
}

/// Shapes, tiles and masks of one call; shared by forward and backward.
#[derive(Clone)]
struct Plan {
    b: usize,
    t: usize,
    nkv: usize,
    rep: usize,
    d: usize,
    scale: f32,
    q_tile: usize,
    k_tile: usize,
    segments: Option<Arc<Segments>>,
    /// Each position's sample index within its row, (b, t) u32, with segments.
    sample_ids: Option<Tensor>,
    device: Device,
}

/// What a (query tile, key tile) pair needs.
enum Pair {
    /// No row sees any of the keys.
    Dead,
    /// Every row sees every key.
    Open,
    /// Some do: the mask (b, 1, 1, n, w), 1 where a query sees a key.
    Masked(Tensor),
}

impl Plan {
    /// (first position, length) of each tile of `tile` positions.
    fn tiles(&self, tile: usize) -> impl Iterator<Item = (usize, usize)> + use<> {
        let t = self.t;
        (0..t).step_by(tile).map(move |s| (s, tile.min(t - s)))
    }

    /// Each row's sample spans (one span of t without segments).
    fn spans(&self, row: usize) -> Vec<(usize, usize)> {
        match &self.segments {
            Some(s) => s.spans(row).collect(),
            None => vec![(0, self.t)],
        }
    }

    /// Queries r0..r0+n against keys kt..kt+w.
    fn pair(&self, (r0, n): (usize, usize), (kt, w): (usize, usize)) -> Result<Pair> {
        let (q_last, k_last) = (r0 + n - 1, kt + w - 1);
        if kt > q_last {
            return Ok(Pair::Dead);
        }
        let (mut live, mut whole) = (false, k_last <= r0);
        for row in 0..self.b {
            for (start, len) in self.spans(row) {
                let end = start + len - 1;
                // This sample's queries and keys inside the pair.
                let (qa, qb) = (start.max(r0), end.min(q_last));
                let (ka, kb) = (start.max(kt), end.min(k_last));
                if qa <= qb && ka <= kb && ka <= qb {
                    live = true;
                }
                // A sample boundary inside the pair's positions.
                if start > r0.min(kt) && start <= q_last {
                    whole = false;
                }
            }
        }
        if !live {
            return Ok(Pair::Dead);
        }
        if whole {
            return Ok(Pair::Open);
        }
        Ok(Pair::Masked(self.mask((r0, n), (kt, w))?))
    }

    /// (b, 1, 1, n, w) u8: key kt+j is at or before query r0+i, in its sample.
    fn mask(&self, (r0, n): (usize, usize), (kt, w): (usize, usize)) -> Result<Tensor> {
        let dev = &self.device;
        let q_pos = Tensor::arange(r0 as u32, (r0 + n) as u32, dev)?.reshape((n, 1))?;
        let k_pos = Tensor::arange(kt as u32, (kt + w) as u32, dev)?.reshape((1, w))?;
        let causal = k_pos.broadcast_le(&q_pos)?;
        let mask = match &self.sample_ids {
            None => causal.broadcast_as((self.b, n, w))?.contiguous()?,
            Some(ids) => {
                let sq = ids.narrow(1, r0, n)?.reshape((self.b, n, 1))?;
                let sk = ids.narrow(1, kt, w)?.reshape((self.b, 1, w))?;
                sq.broadcast_eq(&sk)?.broadcast_mul(&causal)?
            }
        };
        mask.reshape((self.b, 1, 1, n, w))
    }

    /// Each position's sample index within its row.
    fn sample_ids(&self) -> Result<Tensor> {
        let mut ids = Vec::with_capacity(self.b * self.t);
        for row in 0..self.b {
            for (i, (_, len)) in self.spans(row).into_iter().enumerate() {
                ids.extend(std::iter::repeat_n(i as u32, len));
            }
        }
        Tensor::from_vec(ids, (self.b, self.t), &self.device)
    }

    /// Scaled scores (b, nkv, rep·n, w) in f32, hidden entries −∞.
    fn scores(&self, qi: &Tensor, kj: &Tensor, pair: &Pair, n: usize) -> Result<Tensor> {
        let s = qi.matmul(&kj.t()?)?.affine(f64::from(self.scale), 0.0)?;
        let Pair::Masked(mask) = pair else {
            return Ok(s);
        };
        let w = kj.dim(2)?;
        let shape = (self.b, self.nkv, self.rep, n, w);
        let s = s.reshape(shape)?;
        let hidden = Tensor::new(f32::NEG_INFINITY, &self.device)?.broadcast_as(shape)?;
        mask.broadcast_as(shape)?.where_cond(&s, &hidden)?.reshape((
            self.b,
            self.nkv,
            self.rep * n,
            w,
        ))
    }

    /// q (b, t, nh, d) → (b, nkv, rep, t, d); k, v (b, t, nkv, d) → (b, nkv, t, d).
    fn heads(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        Ok((
            self.split_heads(q)?,
            k.transpose(1, 2)?.contiguous()?,
            v.transpose(1, 2)?.contiguous()?,
        ))
    }

    /// (b, t, nh, d) or (b·t, nh·d) → (b, nkv, rep, t, d).
    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        x.reshape((self.b, self.t, self.nkv, self.rep, self.d))?
            .permute((0, 2, 3, 1, 4))?
            .contiguous()
    }

    /// (b, nkv, rep, t, d) → (b·t, nh·d).
    fn merge_heads(&self, x: &Tensor) -> Result<Tensor> {
        x.permute((0, 3, 1, 2, 4))?
            .reshape((self.b * self.t, self.nkv * self.rep * self.d))
    }

    /// Rows r0..r0+n of every stacked head: (b, nkv, rep·n, last) in f32.
    fn rows(&self, x5: &Tensor, (r0, n): (usize, usize)) -> Result<Tensor> {
        let last = x5.dim(4)?;
        x5.narrow(3, r0, n)?
            .contiguous()?
            .reshape((self.b, self.nkv, self.rep * n, last))?
            .to_dtype(DType::F32)
    }

    /// Keys kt..kt+w: (b, nkv, w, d), contiguous, in `dtype`.
    fn keys(&self, x4: &Tensor, (kt, w): (usize, usize), dtype: DType) -> Result<Tensor> {
        x4.narrow(2, kt, w)?.to_dtype(dtype)?.contiguous()
    }

    /// Online-softmax forward: context (b, nkv, rep, t, d) f32 and the
    /// log-sum-exp (b, nkv, rep, t) f32.
    fn forward(&self, q5: &Tensor, k4: &Tensor, v4: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, nkv, rep, d) = (self.b, self.nkv, self.rep, self.d);
        let (mut ctx_tiles, mut lse_tiles) = (Vec::new(), Vec::new());
        for qt in self.tiles(self.q_tile) {
            let n = qt.1;
            let qi = self.rows(q5, qt)?;
            let stat = (b, nkv, rep * n, 1);
            let mut max = Tensor::full(MAX_FLOOR as f32, stat, &self.device)?;
            let mut sum = Tensor::zeros(stat, DType::F32, &self.device)?;
            let mut ctx = Tensor::zeros((b, nkv, rep * n, d), DType::F32, &self.device)?;
            for kt in self.tiles(self.k_tile) {
                let pair = self.pair(qt, kt)?;
                if matches!(pair, Pair::Dead) {
                    continue;
                }
                let s = self.scores(&qi, &self.keys(k4, kt, DType::F32)?, &pair, n)?;
                let new_max = max.maximum(&s.max_keepdim(D::Minus1)?)?;
                let p = s.broadcast_sub(&new_max)?.exp()?;
                let shrink = (&max - &new_max)?.exp()?;
                sum = ((&sum * &shrink)? + p.sum_keepdim(D::Minus1)?)?;
                let vj = self.keys(v4, kt, v4.dtype())?;
                let pv = p.to_dtype(vj.dtype())?.matmul(&vj)?.to_dtype(DType::F32)?;
                ctx = (ctx.broadcast_mul(&shrink)? + pv)?;
                max = new_max;
            }
            ctx_tiles.push(ctx.broadcast_div(&sum)?.reshape((b, nkv, rep, n, d))?);
            lse_tiles.push((max + sum.log()?)?.reshape((b, nkv, rep, n))?);
        }
        Ok((Tensor::cat(&ctx_tiles, 3)?, Tensor::cat(&lse_tiles, 3)?))
    }
}

/// The recompute backward: dQ, dK, dV from Q, K, V, O, dO and the stash.
struct TiledBackward {
    plan: Plan,
    stash: Stash,
}

impl Backward for TiledBackward {
    fn name(&self) -> &'static str {
        "tiled_attention"
    }

    fn backward(
        &self,
        inputs: &[&Tensor],
        out: &Tensor,
        grad: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let &[q, k, v] = inputs else {
            bail!("tiled_attention: backward wants q, k and v");
        };
        let lse = match self.stash.lock() {
            Ok(mut slot) => slot.take(),
            Err(_) => bail!("tiled_attention: a panic poisoned the log-sum-exp"),
        };
        let Some(lse) = lse else {
            bail!("tiled_attention: backward without the log-sum-exp of its forward");
        };
        let p = &self.plan;
        let (b, nkv, rep, d) = (p.b, p.nkv, p.rep, p.d);
        // Everything detached: `out` is the recorded node, and an op on it
        // would be recorded too, chaining every tile of this backward into a
        // graph that keeps them all alive until the end (t² memory).
        let (q5, k4, v4) = p.heads(&q.detach(), &k.detach(), &v.detach())?;
        let dout5 = p.split_heads(&grad.detach())?;
        // D = rowsum(dO ⊙ O) per stacked row, f32.
        let out5 = p.split_heads(&out.detach())?;
        let dots =
            (dout5.to_dtype(DType::F32)? * out5.to_dtype(DType::F32)?)?.sum_keepdim(D::Minus1)?;
        let lse = lse.unsqueeze(D::Minus1)?;

        let q_tiles: Vec<(usize, usize)> = p.tiles(p.q_tile).collect();
        let mut dq_tiles: Vec<Option<Tensor>> = vec![None; q_tiles.len()];
        let (mut dk_tiles, mut dv_tiles) = (Vec::new(), Vec::new());
        for kt in p.tiles(p.k_tile) {
            let w = kt.1;
            let kj = p.keys(&k4, kt, DType::F32)?;
            let vj = p.keys(&v4, kt, DType::F32)?;
            let mut dk = Tensor::zeros((b, nkv, w, d), DType::F32, &p.device)?;
            let mut dv = dk.clone();
            for (i, &qt) in q_tiles.iter().enumerate() {
                let pair = p.pair(qt, kt)?;
                if matches!(pair, Pair::Dead) {
                    continue;
                }
                let n = qt.1;
                let qi = p.rows(&q5, qt)?;
                let douti = p.rows(&dout5, qt)?;
                let (r0, stat) = (qt.0, (b, nkv, rep * n, 1));
                let lse_i = lse.narrow(3, r0, n)?.contiguous()?.reshape(stat)?;
                let dots_i = dots.narrow(3, r0, n)?.contiguous()?.reshape(stat)?;

                let probs = p.scores(&qi, &kj, &pair, n)?.broadcast_sub(&lse_i)?.exp()?;
                dv = (dv + probs.t()?.matmul(&douti)?)?;
                let dprobs = douti.matmul(&vj.t()?)?;
                let dscores =
                    (probs * dprobs.broadcast_sub(&dots_i)?)?.affine(f64::from(p.scale), 0.0)?;
                let dqi = dscores.matmul(&kj)?;
                dq_tiles[i] = Some(match dq_tiles[i].take() {
                    Some(acc) => (acc + dqi)?,
                    None => dqi,
                });
                dk = (dk + dscores.t()?.matmul(&qi)?)?;
            }
            dk_tiles.push(dk);
            dv_tiles.push(dv);
        }
        let dq_tiles = q_tiles
            .iter()
            .zip(dq_tiles)
            .map(|(&(_, n), dq)| match dq {
                Some(dq) => dq.reshape((b, nkv, rep, n, d)),
                // A query tile that saw no key: it has no gradient.
                None => Tensor::zeros((b, nkv, rep, n, d), DType::F32, &p.device),
            })
            .collect::<Result<Vec<_>>>()?;
        let dq = p
            .merge_heads(&Tensor::cat(&dq_tiles, 3)?)?
            .reshape(q.shape())?
            .to_dtype(q.dtype())?;
        let kv_grad = |tiles: &[Tensor], like: &Tensor| -> Result<Tensor> {
            Tensor::cat(tiles, 2)?
                .transpose(1, 2)?
                .contiguous()?
                .to_dtype(like.dtype())
        };
        Ok(vec![
            Some(dq),
            Some(kv_grad(&dk_tiles, k)?),
            Some(kv_grad(&dv_tiles, v)?),
        ])
    }
}
