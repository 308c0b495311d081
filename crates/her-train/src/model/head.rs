//! LM head + log-softmax + NLL as one op, computed in blocks of the vocabulary.
//!
//! candle's autograd would keep the whole (rows × vocab) logits alive until
//! backward, so chunking the loss in plain tensor ops saves nothing. This op
//! keeps the hidden states and, up to a byte budget, the first blocks of
//! (softmax − onehot). Forward walks the vocabulary in blocks of head rows
//! with an online log-sum-exp per row; backward walks it again, scaling
//! each kept block by g (or recomputing a block that was not kept) and
//! accumulating its product with the block of W. Keeping a block saves one
//! gemm and its exponentials in backward. Only one block of W is ever in
//! f32, so a quantized head is never dequantized whole (for SmolLM2 that
//! whole copy would be 113 MB). Rows whose label is −100 are skipped
//! entirely (NLL 0, gradient 0).

use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor, bail};

use super::frozen::FrozenWeight;
use super::kernels::OpPath;
use super::ops::matmul::{MatMut, MatRef, Threads, matmul_into, product};
use super::ops::{f32_data, vmath};
use super::portable;

/// Label value of positions that do not count (PyTorch's ignore_index).
pub const IGNORE_LABEL: i64 = -100;

#[derive(Clone)]
pub struct HeadNll {
    weight: FrozenWeight,
    labels: Arc<Vec<i64>>,
    /// Head rows (vocabulary entries) per block.
    chunk_vocab: usize,
    /// Bytes of (softmax − onehot) blocks forward may keep for backward.
    keep_bytes: usize,
    /// The kept blocks, from the first block of the vocabulary on: each is
    /// (packed rows × block) row-major. Shared by the op's clones, so the
    /// copy candle records for backward sees what forward kept.
    kept: Arc<Mutex<Vec<Vec<f32>>>>,
}

/// A block of logits kept from forward for backward.
struct Kept {
    /// Its first vocabulary id and its number of ids.
    first: usize,
    width: usize,
    /// (packed rows × width): e^(logit − shift of the row).
    values: Vec<f32>,
    shifts: Vec<f32>,
}

/// The labelled rows of the hidden states, packed contiguously.
struct Packed {
    /// Index of each packed row in the op's input.
    rows: Vec<usize>,
    /// Each packed row's label.
    labels: Vec<usize>,
    /// rows × e values.
    values: Vec<f32>,
}

impl HeadNll {
    /// `keep_bytes` = 0 recomputes every block in backward (least memory).
    pub fn new(
        weight: FrozenWeight,
        labels: Vec<i64>,
        chunk_vocab: usize,
        keep_bytes: usize,
    ) -> Self {
        Self {
            weight,
            labels: Arc::new(labels),
            chunk_vocab: chunk_vocab.max(1),
            keep_bytes,
            kept: Arc::default(),
        }
    }

    /// [`Self::forward`] by this pass's implementation: the fused kernel or
    /// the portable op (which recomputes every block in backward).
    pub(crate) fn apply(&self, h: &Tensor, path: OpPath) -> Result<Tensor> {
        match path {
            OpPath::Fused => self.forward(h),
            OpPath::Portable => {
                let (n, _) = h.dims2()?;
                self.check(&Layout::contiguous((n, h.dim(1)?)))?;
                portable::head::head_nll(h, &self.weight, &self.labels, self.chunk_vocab)?
                    .narrow(1, 0, 1)?
                    .squeeze(1)
            }
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
            values,
        }
    }

    /// Calls `f(first_vocab_id, width, w_block, logits)` per block of the
    /// vocabulary, where w_block is (width × e) and logits (packed rows ×
    /// width), both row-major; the first `skip` blocks get no logits (their
    /// gemm is not run).
    fn for_each_block(
        &self,
        packed: &Packed,
        skip: usize,
        mut f: impl FnMut(usize, usize, &[f32], Option<Vec<f32>>) -> Result<()>,
    ) -> Result<()> {
        let (vocab, e) = self.weight.dims()?;
        let n = packed.rows.len();
        let h = MatRef::new(&packed.values, 0, n, e, e);
        let mut start = 0;
        let mut index = 0;
        while start < vocab && n > 0 {
            let len = self.chunk_vocab.min(vocab - start);
            self.weight.with_rows_f32(start, len, |w| {
                let logits =
                    (index >= skip).then(|| product(h, MatRef::new(w, 0, len, e, e).t(), 1.0));
                f(start, len, w, logits)
            })?;
            start += len;
            index += 1;
        }
        Ok(())
    }

    /// Per packed row: log Σ exp(logits) over the whole vocabulary, and the
    /// label's logit. A running maximum keeps it stable; exponentials are
    /// f32 (as PyTorch's), their sums f64; rows run in parallel.
    /// Also returns the leading blocks that fit in `keep_bytes`, as
    /// e^(logit − shift) with each row's shift.
    fn log_sum_exp(&self, packed: &Packed) -> Result<(Vec<f64>, Vec<f64>, Vec<Kept>)> {
        /// (running max, sum of exp(v − max), the label's logit)
        #[derive(Clone, Copy)]
        struct Row(f32, f64, f64);
        let mut state = vec![Row(f32::NEG_INFINITY, 0.0, 0.0); packed.rows.len()];
        let mut kept = Vec::new();
        let (mut kept_bytes, mut keeping) = (0usize, true);
        self.for_each_block(packed, 0, |first, width, _, logits| {
            let Some(mut logits) = logits else {
                bail!("head_nll: a block without logits");
            };
            let bytes = logits.len() * size_of::<f32>();
            keeping &= kept_bytes + bytes <= self.keep_bytes;
            let mut shifts = vec![0f32; packed.rows.len()];
            logits
                .par_chunks_exact_mut(width)
                .zip(state.par_iter_mut().zip(shifts.par_iter_mut()))
                .zip(packed.labels.par_iter())
                .for_each(|((row, (Row(max, sum, picked), shift)), &label)| {
                    if (first..first + width).contains(&label) {
                        *picked = f64::from(row[label - first]);
                    }
                    let block_max = vmath::max(row);
                    if block_max > *max {
                        *sum *= f64::from(*max - block_max).exp();
                        *max = block_max;
                    }
                    *shift = *max;
                    // A kept block is turned into exponentials in place,
                    // so forward never computes them twice.
                    *sum += if keeping {
                        vmath::exp_shifted_sum(row, *max)
                    } else {
                        vmath::sum_exp_shifted(row, *max)
                    };
                });
            if keeping {
                kept_bytes += bytes;
                kept.push(Kept {
                    first,
                    width,
                    values: logits,
                    shifts,
                });
            }
            Ok(())
        })?;
        let lse = state
            .iter()
            .map(|Row(m, s, _)| f64::from(*m) + s.ln())
            .collect();
        Ok((lse, state.iter().map(|r| r.2).collect(), kept))
    }

    /// Turns block logits (packed rows × width, first vocabulary id
    /// `first`) into g·(softmax − onehot) in place, one row per packed row.
    fn softmax_grad(
        block: &mut [f32],
        width: usize,
        first: usize,
        labels: &[usize],
        lse: impl Fn(usize) -> f32 + Sync,
        g: impl Fn(usize) -> f32 + Sync,
    ) {
        block
            .par_chunks_exact_mut(width)
            .zip(labels.par_iter())
            .enumerate()
            .for_each(|(i, (row, &label))| {
                let gi = g(i);
                vmath::exp_shifted_scaled(row, lse(i), gi);
                if (first..first + width).contains(&label) {
                    row[label - first] -= gi;
                }
            });
    }

    fn kept_blocks(&self) -> Result<std::sync::MutexGuard<'_, Vec<Vec<f32>>>> {
        self.kept
            .lock()
            .map_err(|_| candle_core::Error::msg("head_nll: a panic poisoned the kept blocks"))
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
        let (lse, picked, kept) = self.log_sum_exp(&packed)?;
        // Kept blocks become softmax − onehot now; backward scales by g.
        let kept = kept
            .into_iter()
            .map(
                |Kept {
                     first,
                     width,
                     mut values,
                     shifts,
                 }| {
                    values
                        .par_chunks_exact_mut(width)
                        .zip(packed.labels.par_iter())
                        .enumerate()
                        .for_each(|(i, (row, &label))| {
                            let to_softmax = (f64::from(shifts[i]) - lse[i]).exp() as f32;
                            row.iter_mut().for_each(|v| *v *= to_softmax);
                            if (first..first + width).contains(&label) {
                                row[label - first] -= 1.0;
                            }
                        });
                    values
                },
            )
            .collect();
        *self.kept_blocks()? = kept;
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
        let kept = std::mem::take(&mut *self.kept_blocks()?);
        let skip = kept.len();
        let mut kept = kept.into_iter();
        let rows = &packed.rows;
        self.for_each_block(&packed, skip, |first, width, w, logits| {
            let p = match (kept.next(), logits) {
                // Kept: softmax − onehot already; only the scale is left.
                (Some(mut p), _) => {
                    p.par_chunks_exact_mut(width)
                        .zip(rows.par_iter())
                        .for_each(|(row, &r)| row.iter_mut().for_each(|v| *v *= g[r]));
                    p
                }
                (None, Some(mut p)) => {
                    let (lse, g) = (|i: usize| lse_all[rows[i]], |i: usize| g[rows[i]]);
                    Self::softmax_grad(&mut p, width, first, &packed.labels, lse, g);
                    p
                }
                (None, None) => bail!("head_nll: a block neither kept nor computed"),
            };
            // dh += p (m × width) · W_block (width × e)
            let dst = MatMut::new(&mut dh_packed, 0, m, e, e);
            let (p, w) = (
                MatRef::new(&p, 0, m, width, width),
                MatRef::new(w, 0, width, e, e),
            );
            matmul_into(dst, p, w, 1.0, true, Threads::Pool);
            Ok(())
        })?;
        let mut dh = vec![0f32; n * e];
        for (i, &r) in packed.rows.iter().enumerate() {
            dh[r * e..(r + 1) * e].copy_from_slice(&dh_packed[i * e..(i + 1) * e]);
        }
        Ok(Some(Tensor::from_vec(dh, (n, e), arg.device())?))
    }
}
