//! A frozen projection with its LoRA branch as one op:
//! y = x·Wᵀ + s·((x ⊙ M)·Aᵀ)·Bᵀ, differentiable in x, A and B.
//!
//! Built from separate tensor ops, every LoRA projection kept its dropout
//! mask, the masked input, both low-rank products, the scaled branch and
//! the frozen output alive until backward, and made as many passes over
//! memory. This op keeps its inputs and the small (m, r) product
//! (x ⊙ M)·Aᵀ; backward rebuilds the mask from its key. The branch is
//! added into the frozen product by the gemm itself (dst += a·b), forward
//! and backward, so it costs no pass of its own.

use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, bail};

use super::frozen::FrozenWeight;
use super::kernels::OpPath;
use super::ops::matmul::{MatMut, MatRef, Threads, matmul_into, product};
use super::ops::{f32_data, with_f32};
use super::portable;
use crate::lora::dropout_mask_values;

#[derive(Clone)]
pub struct LoraLinear {
    weight: FrozenWeight,
    scale: f64,
    /// Drop probability and the mask's key; `None` without dropout.
    dropout: Option<(f64, Arc<[u64]>)>,
    /// (x ⊙ M)·Aᵀ from forward, for backward. Shared by the op's clones,
    /// so the copy candle records sees what forward kept.
    low: Arc<Mutex<Option<Vec<f32>>>>,
}

impl LoraLinear {
    pub fn new(weight: FrozenWeight, scale: f64, dropout: Option<(f64, &[u64])>) -> Self {
        Self {
            weight,
            scale,
            dropout: dropout
                .filter(|(p, _)| *p > 0.0)
                .map(|(p, key)| (p, Arc::from(key))),
            low: Arc::default(),
        }
    }

    /// This pass's implementation of x·Wᵀ + branch + bias: the fused kernel
    /// (bias added after it) or the portable op (bias inside).
    pub(crate) fn apply(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        bias: Option<&Tensor>,
        path: OpPath,
    ) -> Result<Tensor> {
        match path {
            OpPath::Fused => {
                let y = self.forward(x, a, b)?;
                match bias {
                    Some(bias) => y.broadcast_add(bias),
                    None => Ok(y),
                }
            }
            OpPath::Portable => {
                let frozen = portable::linear::LoraFrozen {
                    weight: &self.weight,
                    bias,
                    scale: self.scale,
                    dropout: self.dropout.clone(),
                };
                portable::linear::lora_linear(x, a, b, frozen)
            }
        }
    }

    /// x (m, in), a (r, in), b (out, r) → (m, out).
    pub fn forward(&self, x: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        x.contiguous()?
            .apply_op3(&a.contiguous()?, &b.contiguous()?, self.clone())
    }

    /// x ⊙ M, or x itself without dropout.
    fn masked<'x>(&self, x: &'x [f32]) -> std::borrow::Cow<'x, [f32]> {
        match &self.dropout {
            Some((p, key)) => {
                let mask = dropout_mask_values(x.len(), *p, key);
                x.par_iter()
                    .zip(&mask)
                    .map(|(v, s)| v * s)
                    .collect::<Vec<_>>()
                    .into()
            }
            None => x.into(),
        }
    }

    fn kept_low(&self) -> Result<std::sync::MutexGuard<'_, Option<Vec<f32>>>> {
        self.low
            .lock()
            .map_err(|_| candle_core::Error::msg("lora_linear: a panic poisoned its state"))
    }
}

/// Row-major (rows, cols) at the start of `data`.
fn mat(data: &[f32], rows: usize, cols: usize) -> MatRef<'_> {
    MatRef::new(data, 0, rows, cols, cols)
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
        let name = self.name();
        let (x, a, b) = (
            f32_data(xs, xl, name)?,
            f32_data(a_s, al, name)?,
            f32_data(b_s, bl, name)?,
        );
        // 1. The frozen product, W in f32 for this call only.
        let mut y = self
            .weight
            .with_f32(|w| Ok(product(mat(x, m, k), mat(w, n, k).t(), 1.0)))?;
        // 2. The branch: low = (x ⊙ M)·Aᵀ (m, r), then y += s·low·Bᵀ.
        let low = product(mat(&self.masked(x), m, k), mat(a, r, k).t(), 1.0);
        let dst = MatMut::new(&mut y, 0, m, n, n);
        let (low_m, bt) = (mat(&low, m, r), mat(b, n, r).t());
        matmul_into(dst, low_m, bt, self.scale as f32, true, Threads::Pool);
        *self.kept_low()? = Some(low);
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
        let name = self.name();
        let (m, k) = x.dims2()?;
        let (n, r) = b.dims2()?;
        let s = self.scale as f32;
        let (a, b) = (
            a.flatten_all()?.to_vec1::<f32>()?,
            b.flatten_all()?.to_vec1::<f32>()?,
        );
        let dy = grad.contiguous()?;
        let kept = self.kept_low()?.take();
        let (dx, da, db) = with_f32(x, name, |x| {
            with_f32(&dy, name, |dy| {
                let xm = self.masked(x);
                let low = match kept {
                    Some(low) => low,
                    None => product(mat(&xm, m, k), mat(&a, r, k).t(), 1.0),
                };
                let dy_m = mat(dy, m, n);
                // dy·B, scaled once here for both uses below: (m, r)
                let dy_b = product(dy_m, mat(&b, n, r), s);
                let (dy_b_m, a_m) = (mat(&dy_b, m, r), mat(&a, r, k));
                // dx = dy·W, then the branch's share
                let mut dx = self
                    .weight
                    .with_f32(|w| Ok(product(dy_m, mat(w, n, k), 1.0)))?;
                match &self.dropout {
                    Some((p, key)) => {
                        let branch = product(dy_b_m, a_m, 1.0);
                        let mask = dropout_mask_values(m * k, *p, key);
                        dx.par_iter_mut()
                            .zip(branch.par_iter().zip(&mask))
                            .for_each(|(d, (v, keep))| *d += v * keep);
                    }
                    None => {
                        let dst = MatMut::new(&mut dx, 0, m, k, k);
                        matmul_into(dst, dy_b_m, a_m, 1.0, true, Threads::Pool);
                    }
                }
                // dA = (s·dy·B)ᵀ·xm: (r, k); dB = s·dyᵀ·low: (n, r)
                let da = product(dy_b_m.t(), mat(&xm, m, k), 1.0);
                let db = product(dy_m.t(), mat(&low, m, r), s);
                Ok((dx, da, db))
            })
        })?;
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, (m, k), dev)?),
            Some(Tensor::from_vec(da, (r, k), dev)?),
            Some(Tensor::from_vec(db, (n, r), dev)?),
        ))
    }
}
