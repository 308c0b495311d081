//! LM head + log-softmax + NLL as one op, computed in blocks of rows.
//!
//! candle's autograd would keep every block's (rows × vocab) logits alive
//! until backward, so chunking the loss in plain tensor ops saves nothing.
//! This op keeps only the hidden states: backward recomputes each block's
//! logits, turns them into (softmax − onehot)·g and multiplies by W.
//! Rows whose label is −100 are skipped entirely (NLL 0, gradient 0).

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor, bail};

use super::frozen::FrozenWeight;
use super::ops::{f32_data, gemm, into_f32_vec};

/// Label value of positions that do not count (PyTorch's ignore_index).
pub const IGNORE_LABEL: i64 = -100;

#[derive(Clone)]
pub struct HeadNll {
    weight: FrozenWeight,
    labels: Arc<Vec<i64>>,
    chunk_rows: usize,
}

impl HeadNll {
    pub fn new(weight: FrozenWeight, labels: Vec<i64>, chunk_rows: usize) -> Self {
        Self {
            weight,
            labels: Arc::new(labels),
            chunk_rows: chunk_rows.max(1),
        }
    }

    /// h: (n, embd) final hidden states → (n,) NLL per row.
    pub fn forward(&self, h: &Tensor) -> Result<Tensor> {
        h.contiguous()?.apply_op1(self.clone())
    }

    /// The labelled rows of h, packed: (row indices, rows × e values).
    fn gather(&self, h: &[f32], e: usize) -> (Vec<usize>, Vec<f32>) {
        let rows: Vec<usize> = (0..self.labels.len())
            .filter(|&i| self.labels[i] != IGNORE_LABEL)
            .collect();
        let mut packed = Vec::with_capacity(rows.len() * e);
        for &r in &rows {
            packed.extend_from_slice(&h[r * e..(r + 1) * e]);
        }
        (rows, packed)
    }

    /// Calls `f(block_start, logits)` per block of packed rows.
    fn for_each_block(
        &self,
        packed: CpuStorage,
        n_rows: usize,
        w: &Tensor,
        mut f: impl FnMut(usize, Vec<f32>) -> Result<()>,
    ) -> Result<()> {
        let e = w.dims2()?.1;
        let mut start = 0;
        while start < n_rows {
            let rows = self.chunk_rows.min(n_rows - start);
            let logits = into_f32_vec(gemm(&packed, start * e, rows, w, true)?, "head_nll")?;
            f(start, logits)?;
            start += rows;
        }
        Ok(())
    }

    fn check(&self, l: &Layout) -> Result<(usize, usize, usize)> {
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
        Ok((n, e, vocab))
    }
}

/// log Σ exp(row), accumulated in f64.
fn log_sum_exp(row: &[f32]) -> f64 {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let sum: f64 = row.iter().map(|&v| f64::from(v - max).exp()).sum();
    f64::from(max) + sum.ln()
}

impl CustomOp1 for HeadNll {
    fn name(&self) -> &'static str {
        "head_nll"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, e, vocab) = self.check(l)?;
        let h = f32_data(s, l, self.name())?;
        let (rows, packed) = self.gather(h, e);
        let w = self.weight.to_f32()?;
        let mut nll = vec![0f32; n];
        self.for_each_block(CpuStorage::F32(packed), rows.len(), &w, |start, logits| {
            for (i, row) in logits.chunks_exact(vocab).enumerate() {
                let r = rows[start + i];
                let label = self.labels[r] as usize;
                nll[r] = (log_sum_exp(row) - f64::from(row[label])) as f32;
            }
            Ok(())
        })?;
        Ok((CpuStorage::F32(nll), Shape::from(n)))
    }

    /// dh_r = g_r · (softmax(logits_r) − onehot(label_r)) · W.
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (n, e) = arg.dims2()?;
        let vocab = self.weight.dims()?.0;
        let g = grad.contiguous()?.to_vec1::<f32>()?;
        let (rows, packed) = {
            let (st, l) = arg.storage_and_layout();
            let Storage::Cpu(st) = &*st else {
                bail!("head_nll: the hidden states are not on the CPU");
            };
            self.gather(f32_data(st, l, self.name())?, e)
        };
        let w = self.weight.to_f32()?;
        let mut dh = vec![0f32; n * e];
        self.for_each_block(CpuStorage::F32(packed), rows.len(), &w, |start, mut p| {
            let n_rows = p.len() / vocab;
            for (i, row) in p.chunks_exact_mut(vocab).enumerate() {
                let r = rows[start + i];
                let lse = log_sum_exp(row);
                for v in row.iter_mut() {
                    *v = (f64::from(*v) - lse).exp() as f32 * g[r];
                }
                row[self.labels[r] as usize] -= g[r];
            }
            let d = into_f32_vec(gemm(&CpuStorage::F32(p), 0, n_rows, &w, false)?, "head_nll")?;
            for (i, dr) in d.chunks_exact(e).enumerate() {
                let r = rows[start + i];
                dh[r * e..(r + 1) * e].copy_from_slice(dr);
            }
            Ok(())
        })?;
        Ok(Some(Tensor::from_vec(dh, (n, e), arg.device())?))
    }
}
