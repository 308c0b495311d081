//! LM head + log-softmax + NLL in candle ops, over blocks of the
//! vocabulary with an online log-sum-exp: no (rows × vocab) tensor is ever
//! kept, only one block of logits lives at a time, in forward and again in
//! backward (recomputed there). Rows labelled −100 are skipped (NLL 0,
//! gradient 0).

use candle_core::{D, DType, Device, Result, Tensor};

use super::attach::{Backward, attach1};
use crate::model::frozen::FrozenWeight;
use crate::model::head::IGNORE_LABEL;

/// h (n, e) → (n, 2): each row's NLL and log-sum-exp (0 and 0 where masked),
/// as the fused `HeadNll`. `labels` are checked by the caller.
pub(crate) fn head_nll(
    h: &Tensor,
    weight: &FrozenWeight,
    labels: &[i64],
    chunk_vocab: usize,
) -> Result<Tensor> {
    let (n, _) = h.dims2()?;
    let rows = Labelled::new(labels, h.device())?;
    let out = match &rows {
        None => Tensor::zeros((n, 2), DType::F32, h.device())?,
        Some(rows) => {
            let hp = rows.pack(&h.detach())?;
            let (lse, picked) = log_sum_exp(&hp, rows, weight, chunk_vocab)?;
            let packed = Tensor::cat(&[(&lse - picked)?, lse], 1)?;
            Tensor::zeros((n, 2), DType::F32, h.device())?.index_add(&rows.index, &packed, 0)?
        }
    };
    let bwd = HeadBwd {
        weight: weight.clone(),
        rows,
        chunk_vocab,
    };
    attach1(h, out, bwd)
}

/// The rows whose label counts.
struct Labelled {
    /// Their indices among the op's rows: (m,) u32.
    index: Tensor,
    /// Their labels, host side.
    labels: Vec<u32>,
    /// The same labels as an (m, 1) u32 tensor.
    labels_t: Tensor,
}

impl Labelled {
    fn new(labels: &[i64], dev: &Device) -> Result<Option<Self>> {
        let (index, labels): (Vec<u32>, Vec<u32>) = labels
            .iter()
            .enumerate()
            .filter(|(_, y)| **y != IGNORE_LABEL)
            .map(|(i, &y)| (i as u32, y as u32))
            .unzip();
        if index.is_empty() {
            return Ok(None);
        }
        let m = index.len();
        Ok(Some(Self {
            index: Tensor::from_vec(index, m, dev)?,
            labels_t: Tensor::from_slice(&labels, (m, 1), dev)?,
            labels,
        }))
    }

    /// The labelled rows of h, in f32: (m, e).
    fn pack(&self, h: &Tensor) -> Result<Tensor> {
        h.contiguous()?
            .index_select(&self.index, 0)?
            .to_dtype(DType::F32)
    }
}

/// Calls `f(first_id, w_block, logits)` for each block of the vocabulary,
/// with w_block (width, e) and logits = hp·w_blockᵀ (m, width), both f32.
fn for_each_block(
    hp: &Tensor,
    weight: &FrozenWeight,
    chunk_vocab: usize,
    mut f: impl FnMut(usize, &Tensor, Tensor) -> Result<()>,
) -> Result<()> {
    let (vocab, _) = weight.dims()?;
    let mut start = 0;
    while start < vocab {
        let width = chunk_vocab.max(1).min(vocab - start);
        let w = weight.dense_rows(start, width, DType::F32, hp.device())?;
        let logits = hp.matmul(&w.t()?)?;
        f(start, &w, logits)?;
        start += width;
    }
    Ok(())
}

/// Per labelled row: log Σ exp(logits) over the vocabulary and the label's
/// logit, both (m, 1) f32, with a running maximum per row.
fn log_sum_exp(
    hp: &Tensor,
    rows: &Labelled,
    weight: &FrozenWeight,
    chunk_vocab: usize,
) -> Result<(Tensor, Tensor)> {
    let m = rows.labels.len();
    let dev = hp.device();
    let mut state: Option<(Tensor, Tensor)> = None;
    let mut picked = Tensor::zeros((m, 1), DType::F32, dev)?;
    for_each_block(hp, weight, chunk_vocab, |first, w, logits| {
        let width = w.dim(0)?;
        let block_max = logits.max_keepdim(D::Minus1)?;
        let (max, sum) = match state.take() {
            None => (block_max, Tensor::zeros((m, 1), DType::F32, dev)?),
            Some((max, sum)) => {
                let new_max = max.maximum(&block_max)?;
                let sum = (sum * (max - &new_max)?.exp()?)?;
                (new_max, sum)
            }
        };
        let sum = (sum + logits.broadcast_sub(&max)?.exp()?.sum_keepdim(D::Minus1)?)?;
        // The label's logit, for labels inside this block.
        let (local, inside): (Vec<u32>, Vec<f32>) = rows
            .labels
            .iter()
            .map(|&y| match (y as usize).checked_sub(first) {
                Some(i) if i < width => (i as u32, 1.0),
                _ => (0, 0.0),
            })
            .unzip();
        let local = Tensor::from_vec(local, (m, 1), dev)?;
        let inside = Tensor::from_vec(inside, (m, 1), dev)?;
        picked = (&picked + logits.gather(&local, 1)?.mul(&inside)?)?;
        state = Some((max, sum));
        Ok(())
    })?;
    let Some((max, sum)) = state else {
        candle_core::bail!("portable_head_nll: a head without rows");
    };
    Ok(((max + sum.log()?)?, picked))
}

struct HeadBwd {
    weight: FrozenWeight,
    rows: Option<Labelled>,
    chunk_vocab: usize,
}

impl Backward for HeadBwd {
    fn name(&self) -> &'static str {
        "portable_head_nll"
    }

    /// dh_r = g_r · (softmax(logits_r) − onehot(label_r)) · W, each block's
    /// logits recomputed.
    fn backward(
        &self,
        inputs: &[&Tensor],
        out: &Tensor,
        grad: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let h = inputs[0];
        let Some(rows) = &self.rows else {
            return Ok(vec![Some(h.zeros_like()?)]);
        };
        let (m, e) = (rows.labels.len(), h.dim(1)?);
        let dev = h.device();
        // Only the NLL column is ever used downstream.
        let g = grad
            .narrow(1, 0, 1)?
            .contiguous()?
            .index_select(&rows.index, 0)?;
        let g = g.to_dtype(DType::F32)?;
        let lse = out
            .narrow(1, 1, 1)?
            .contiguous()?
            .index_select(&rows.index, 0)?;
        let hp = rows.pack(h)?;
        let mut dh = Tensor::zeros((m, e), DType::F32, dev)?;
        for_each_block(&hp, &self.weight, self.chunk_vocab, |first, w, logits| {
            let width = w.dim(0)?;
            let p = logits.broadcast_sub(&lse)?.exp()?;
            let ids = Tensor::arange(first as u32, (first + width) as u32, dev)?.unsqueeze(0)?;
            let onehot = ids.broadcast_eq(&rows.labels_t)?.to_dtype(DType::F32)?;
            let d = (p - onehot)?.broadcast_mul(&g)?;
            dh = (&dh + d.matmul(w)?)?;
            Ok(())
        })?;
        let dh = h
            .zeros_like()?
            .index_add(&rows.index, &dh.to_dtype(h.dtype())?, 0)?;
        Ok(vec![Some(dh)])
    }
}
