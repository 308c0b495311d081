//! LM head + log-softmax + NLL as one op, computed in blocks of the vocabulary.
//!
//! candle's autograd would keep the whole (rows × vocab) logits alive until
//! backward, so chunking the loss in plain tensor ops saves nothing. This op
//! keeps only the hidden states. Forward walks the vocabulary in blocks of
//! head rows with an online log-sum-exp per row; backward walks it again,
//! turning each block's logits into (softmax − onehot)·g and accumulating
//! their product with the block of W. Only one block of W is ever in f32,
//! so a quantized head is never dequantized whole (for SmolLM2 that whole
//! copy would be 113 MB). Rows whose label is −100 are skipped entirely
//! (NLL 0, gradient 0).

use std::sync::Arc;

use rayon::prelude::*;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor, bail};

use super::frozen::FrozenWeight;
use super::ops::{f32_data, gemm, into_f32_vec};

/// Label value of positions that do not count (PyTorch's ignore_index).
pub const IGNORE_LABEL: i64 = -100;

#[derive(Clone)]
pub struct HeadNll {
    weight: FrozenWeight,
    labels: Arc<Vec<i64>>,
    /// Head rows (vocabulary entries) per block.
    chunk_vocab: usize,
}

/// The labelled rows of the hidden states, packed contiguously.
struct Packed {
    /// Index of each packed row in the op's input.
    rows: Vec<usize>,
    /// Each packed row's label.
    labels: Vec<usize>,
    /// rows × e values.
    values: CpuStorage,
}

impl HeadNll {
    pub fn new(weight: FrozenWeight, labels: Vec<i64>, chunk_vocab: usize) -> Self {
        Self {
            weight,
            labels: Arc::new(labels),
            chunk_vocab: chunk_vocab.max(1),
        }
    }

    /// h: (n, embd) final hidden states → (n,) NLL per row.
    pub fn forward(&self, h: &Tensor) -> Result<Tensor> {
        // The op's (n, 2) output also holds each row's log-sum-exp, which
        // backward then reads instead of walking the vocabulary once more.
        h.contiguous()?
            .apply_op1(self.clone())?
            .narrow(1, 0, 1)?
            .squeeze(1)
    }

    fn gather(&self, h: &[f32], e: usize) -> Packed {
        let rows: Vec<usize> = (0..self.labels.len())
            .filter(|&i| self.labels[i] != IGNORE_LABEL)
            .collect();
        let mut values = Vec::with_capacity(rows.len() * e);
        for &r in &rows {
            values.extend_from_slice(&h[r * e..(r + 1) * e]);
        }
        Packed {
            labels: rows.iter().map(|&r| self.labels[r] as usize).collect(),
            rows,
            values: CpuStorage::F32(values),
        }
    }

    /// Calls `f(first_vocab_id, w_block, logits)` per block of the
    /// vocabulary, where logits is (packed rows × block) row-major.
    fn for_each_block(
        &self,
        packed: &Packed,
        mut f: impl FnMut(usize, &Tensor, Vec<f32>) -> Result<()>,
    ) -> Result<()> {
        let (vocab, _) = self.weight.dims()?;
        let n = packed.rows.len();
        let mut start = 0;
        while start < vocab && n > 0 {
            let len = self.chunk_vocab.min(vocab - start);
            let w = self.weight.rows_f32(start, len)?;
            let logits = into_f32_vec(gemm(&packed.values, 0, n, &w, true)?, "head_nll")?;
            f(start, &w, logits)?;
            start += len;
        }
        Ok(())
    }

    /// Per packed row: log Σ exp(logits) over the whole vocabulary, and the
    /// label's logit. A running maximum keeps it stable; exponentials are
    /// f32 (as PyTorch's), their sums f64; rows run in parallel.
    fn log_sum_exp(&self, packed: &Packed) -> Result<(Vec<f64>, Vec<f64>)> {
        /// (running max, sum of exp(v − max), the label's logit)
        #[derive(Clone, Copy)]
        struct Row(f32, f64, f64);
        let mut state = vec![Row(f32::NEG_INFINITY, 0.0, 0.0); packed.rows.len()];
        self.for_each_block(packed, |first, w, logits| {
            let width = w.dims2()?.0;
            logits
                .par_chunks_exact(width)
                .zip(state.par_iter_mut())
                .zip(packed.labels.par_iter())
                .for_each(|((row, Row(max, sum, picked)), &label)| {
                    let block_max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                    if block_max > *max {
                        *sum *= f64::from(*max - block_max).exp();
                        *max = block_max;
                    }
                    let m = *max;
                    *sum += row.iter().map(|&v| f64::from((v - m).exp())).sum::<f64>();
                    if (first..first + width).contains(&label) {
                        *picked = f64::from(row[label - first]);
                    }
                });
            Ok(())
        })?;
        let lse = state
            .iter()
            .map(|Row(m, s, _)| f64::from(*m) + s.ln())
            .collect();
        Ok((lse, state.iter().map(|r| r.2).collect()))
    }

    fn check(&self, l: &Layout) -> Result<(usize, usize)> {
        let (n, e) = l.shape().dims2()?;
        let (vocab, we) = self.weight.dims()?;
        if e != we || n != self.labels.len() {
            bail!(
                "head_nll: hidden {:?} vs head ({vocab}, {we}) and {} labels",
                l.shape(),
                self.labels.len()
            );
        }
        if let Some(bad) = self
            .labels
            .iter()
            .find(|&&y| y != IGNORE_LABEL && !(0..vocab as i64).contains(&y))
        {
            bail!("head_nll: label {bad} is outside the vocabulary (0..{vocab})");
        }
        Ok((n, e))
    }
}

impl CustomOp1 for HeadNll {
    fn name(&self) -> &'static str {
        "head_nll"
    }

    /// (n, 2): each row's NLL and log-sum-exp (0 and 0 where masked).
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, e) = self.check(l)?;
        let packed = self.gather(f32_data(s, l, self.name())?, e);
        let (lse, picked) = self.log_sum_exp(&packed)?;
        let mut out = vec![0f32; n * 2];
        for (i, &r) in packed.rows.iter().enumerate() {
            out[2 * r] = (lse[i] - picked[i]) as f32;
            out[2 * r + 1] = lse[i] as f32;
        }
        Ok((CpuStorage::F32(out), Shape::from((n, 2))))
    }

    /// dh_r = g_r · (softmax(logits_r) − onehot(label_r)) · W.
    fn bwd(&self, arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (n, e) = arg.dims2()?;
        // Only the NLL column is ever used downstream.
        let g = grad.narrow(1, 0, 1)?.flatten_all()?.to_vec1::<f32>()?;
        let lse_all = res.narrow(1, 1, 1)?.flatten_all()?.to_vec1::<f32>()?;
        let packed = {
            let (st, l) = arg.storage_and_layout();
            let Storage::Cpu(st) = &*st else {
                bail!("head_nll: the hidden states are not on the CPU");
            };
            self.gather(f32_data(st, l, self.name())?, e)
        };
        let m = packed.rows.len();
        let mut dh_packed = vec![0f32; m * e];
        self.for_each_block(&packed, |first, w, mut p| {
            let width = w.dims2()?.0;
            p.par_chunks_exact_mut(width)
                .zip(packed.rows.par_iter().zip(&packed.labels))
                .for_each(|(row, (&r, &label))| {
                    let (gi, lse) = (g[r], lse_all[r]);
                    for v in row.iter_mut() {
                        *v = (*v - lse).exp() * gi;
                    }
                    if (first..first + width).contains(&label) {
                        row[label - first] -= gi;
                    }
                });
            // dh += p (m × width) · W_block (width × e)
            let d = into_f32_vec(gemm(&CpuStorage::F32(p), 0, m, w, false)?, "head_nll")?;
            for (acc, v) in dh_packed.iter_mut().zip(&d) {
                *acc += v;
            }
            Ok(())
        })?;
        let mut dh = vec![0f32; n * e];
        for (i, &r) in packed.rows.iter().enumerate() {
            dh[r * e..(r + 1) * e].copy_from_slice(&dh_packed[i * e..(i + 1) * e]);
        }
        Ok(Some(Tensor::from_vec(dh, (n, e), arg.device())?))
    }
}
