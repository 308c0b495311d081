//! A frozen projection with its LoRA branch as one op:
//! y = x·Wᵀ + s·((x ⊙ M)·Aᵀ)·Bᵀ, differentiable in x, A and B.
//!
//! Built from separate tensor ops, every LoRA projection kept its dropout
//! mask, the masked input, both low-rank products, the scaled branch and
//! the frozen output alive until backward, and made as many passes over
//! memory. This op keeps nothing but its inputs: backward rebuilds the
//! mask from its key and recomputes the (m, r) low-rank product, which is
//! cheap next to the frozen matmul.

use std::sync::Arc;

use rayon::prelude::*;

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, bail};

use super::frozen::FrozenWeight;
use super::ops::{f32_data, gemm, gemm_storage, into_f32_vec};
use crate::train::lora::dropout_mask_values;

#[derive(Clone)]
pub struct LoraLinear {
    weight: FrozenWeight,
    scale: f64,
    /// Drop probability and the mask's key; `None` without dropout.
    dropout: Option<(f64, Arc<[u64]>)>,
}

impl LoraLinear {
    pub fn new(weight: FrozenWeight, scale: f64, dropout: Option<(f64, &[u64])>) -> Self {
        Self {
            weight,
            scale,
            dropout: dropout
                .filter(|(p, _)| *p > 0.0)
                .map(|(p, key)| (p, Arc::from(key))),
        }
    }

    /// x (m, in), a (r, in), b (out, r) → (m, out).
    pub fn forward(&self, x: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        x.contiguous()?
            .apply_op3(&a.contiguous()?, &b.contiguous()?, self.clone())
    }

    fn mask(&self, n: usize) -> Option<Vec<f32>> {
        self.dropout
            .as_ref()
            .map(|(p, key)| dropout_mask_values(n, *p, key))
    }
}

impl CustomOp3 for LoraLinear {
    fn name(&self) -> &'static str {
        "lora_linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        a_s: &CpuStorage,
        al: &Layout,
        b_s: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (m, k) = xl.shape().dims2()?;
        let (n, wk) = self.weight.dims()?;
        let (r, ak) = al.shape().dims2()?;
        if wk != k || ak != k || bl.shape().dims2()? != (n, r) {
            bail!(
                "lora_linear: x {:?}, W ({n}, {wk}), A {:?}, B {:?} do not fit",
                xl.shape(),
                al.shape(),
                bl.shape()
            );
        }
        let x = f32_data(xs, xl, self.name())?;
        let offset = xl.start_offset();
        // 1. The frozen product, W in f32 for this call only.
        let w = self.weight.to_f32()?;
        let mut y = into_f32_vec(gemm(xs, offset, m, &w, true)?, self.name())?;
        drop(w);
        // 2. The branch: (x ⊙ M)·Aᵀ (m, r), then ·Bᵀ (m, out).
        let low = match self.mask(m * k) {
            Some(mask) => {
                let xm: Vec<f32> = x.par_iter().zip(&mask).map(|(v, s)| v * s).collect();
                gemm_storage(&CpuStorage::F32(xm), 0, m, a_s, al, true)?
            }
            None => gemm_storage(xs, offset, m, a_s, al, true)?,
        };
        let branch = into_f32_vec(gemm_storage(&low, 0, m, b_s, bl, true)?, self.name())?;
        let s = self.scale as f32;
        y.par_iter_mut()
            .zip(&branch)
            .for_each(|(acc, v)| *acc += s * v);
        Ok((CpuStorage::F32(y), Shape::from((m, n))))
    }

    /// dx = dy·W + s·((dy·B)·A) ⊙ M, dA = s·(dy·B)ᵀ·(x ⊙ M),
    /// dB = s·dyᵀ·((x ⊙ M)·Aᵀ).
    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // Plain tensor ops on detached inputs: nothing here is recorded.
        let (x, a, b) = (x.detach(), a.detach(), b.detach());
        let dy = grad.detach().contiguous()?;
        let mask = match self.mask(x.elem_count()) {
            Some(m) => Some(Tensor::from_vec(m, x.shape(), x.device())?),
            None => None,
        };
        let xm = match &mask {
            Some(m) => (&x * m)?,
            None => x,
        };
        // The scale goes on the (m, r) products, the cheapest place for it.
        let dy_b = (dy.matmul(&b)? * self.scale)?;
        let mut d_branch = dy_b.matmul(&a)?;
        if let Some(m) = &mask {
            d_branch = (d_branch * m)?;
        }
        let dx = (dy.matmul(&self.weight.to_f32()?)? + d_branch)?;
        let da = dy_b.t()?.matmul(&xm)?;
        let low = (xm.matmul(&a.t()?)? * self.scale)?;
        let db = dy.t()?.matmul(&low)?;
        Ok((Some(dx), Some(da), Some(db)))
    }
}
