//! The frozen linear and the LoRA linear in candle ops.
//!
//! Both keep the frozen matrix out of the graph: it is dequantized for the
//! forward product and again in backward, and no gradient of it is ever
//! computed (candle's matmul would compute and keep one). The bias is added inside the op for the same reason.

use std::sync::Arc;

use candle_core::{DType, Device, Result, Tensor};

use super::attach::{Backward, attach1, attach3};
use crate::lora::dropout_mask_values;
use crate::model::frozen::FrozenWeight;

/// x (m, in) → x·Wᵀ (+ bias) (m, out); dx only.
pub(crate) fn frozen_linear(
    x: &Tensor,
    weight: &FrozenWeight,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    let xd = x.detach();
    let w = weight.dense(xd.dtype(), xd.device())?;
    let y = with_bias(xd.matmul(&w.t()?)?, bias)?;
    attach1(
        x,
        y,
        FrozenBwd {
            weight: weight.clone(),
        },
    )
}

fn with_bias(y: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    match bias {
        Some(b) => y.broadcast_add(&b.to_device(y.device())?.to_dtype(y.dtype())?),
        None => Ok(y),
    }
}

struct FrozenBwd {
    weight: FrozenWeight,
}

impl Backward for FrozenBwd {
    fn name(&self) -> &'static str {
        "portable_frozen_linear"
    }

    /// dx = dy·W, W dequantized again.
    fn backward(
        &self,
        inputs: &[&Tensor],
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let x = inputs[0];
        let w = self.weight.dense(x.dtype(), x.device())?;
        Ok(vec![Some(grad.to_dtype(x.dtype())?.matmul(&w)?)])
    }
}

/// The frozen parts of a LoRA projection.
pub(crate) struct LoraFrozen<'a> {
    pub weight: &'a FrozenWeight,
    pub bias: Option<&'a Tensor>,
    /// alpha / r.
    pub scale: f64,
    /// Drop probability and the mask's key (the fused op's: same masks).
    pub dropout: Option<(f64, Arc<[u64]>)>,
}

/// y = x·Wᵀ + s·((x ⊙ M)·Aᵀ)·Bᵀ (+ bias) with x (m, in), A (r, in),
/// B (out, r); the branch in f32 (as PEFT computes it). Differentiable in
/// x, A and B; the node keeps them and the (m, r) product (x ⊙ M)·Aᵀ.
pub(crate) fn lora_linear(x: &Tensor, a: &Tensor, b: &Tensor, f: LoraFrozen<'_>) -> Result<Tensor> {
    let (m, k) = x.dims2()?;
    let xd = x.detach();
    let dev = xd.device();
    let w = f.weight.dense(xd.dtype(), dev)?;
    let base = xd.matmul(&w.t()?)?;
    let mask = Mask(f.dropout);
    let xm = mask.apply(&xd.to_dtype(DType::F32)?, m, k)?;
    let low = xm.matmul(&a.detach().t()?)?;
    let branch = (low.matmul(&b.detach().t()?)? * f.scale)?;
    let y = with_bias((base + branch.to_dtype(xd.dtype())?)?, f.bias)?;
    let bwd = LoraBwd {
        weight: f.weight.clone(),
        scale: f.scale,
        mask,
        low,
    };
    attach3(x, a, b, y, bwd)
}

/// The LoRA dropout mask, regenerated from its key wherever it is needed.
/// It is made on the host and uploaded: exact parity with the fused op on
/// the CPU; on a GPU a device-side keyed hash would avoid the upload.
struct Mask(Option<(f64, Arc<[u64]>)>);

impl Mask {
    /// x32 ⊙ M, or x32 itself without dropout.
    fn apply(&self, x32: &Tensor, m: usize, k: usize) -> Result<Tensor> {
        match &self.0 {
            Some((p, key)) => x32.mul(&Self::tensor(*p, key, m, k, x32.device())?),
            None => Ok(x32.clone()),
        }
    }

    fn tensor(p: f64, key: &[u64], m: usize, k: usize, dev: &Device) -> Result<Tensor> {
        Tensor::from_vec(dropout_mask_values(m * k, p, key), (m, k), dev)
    }
}

struct LoraBwd {
    weight: FrozenWeight,
    scale: f64,
    mask: Mask,
    /// (x ⊙ M)·Aᵀ from forward, f32.
    low: Tensor,
}

impl Backward for LoraBwd {
    fn name(&self) -> &'static str {
        "portable_lora_linear"
    }

    /// dx = dy·W + (s·(dy·B)·A) ⊙ M, dA = (s·dy·B)ᵀ·(x ⊙ M),
    /// dB = s·dyᵀ·((x ⊙ M)·Aᵀ).
    fn backward(
        &self,
        inputs: &[&Tensor],
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let (x, a, b) = (inputs[0], inputs[1], inputs[2]);
        let (m, k) = x.dims2()?;
        let dy32 = grad.to_dtype(DType::F32)?;
        let dy_b = (dy32.matmul(b)? * self.scale)?;
        let w = self.weight.dense(x.dtype(), x.device())?;
        let branch = self.mask.apply(&dy_b.matmul(a)?, m, k)?;
        let dx = (grad.to_dtype(x.dtype())?.matmul(&w)? + branch.to_dtype(x.dtype())?)?;
        let xm = self.mask.apply(&x.to_dtype(DType::F32)?, m, k)?;
        let da = dy_b.t()?.matmul(&xm)?;
        let db = (dy32.t()?.matmul(&self.low)? * self.scale)?;
        Ok(vec![Some(dx), Some(da), Some(db)])
    }
}
