//! RMSNorm over the last dim with a frozen weight, in candle ops:
//! y = x·r·w, r = 1/sqrt(mean(x²) + eps), reductions in f32.
//!
//! The weight stays inside the op (a graph-level multiply would compute and
//! keep an activation-sized gradient for it); the node keeps only x.

use candle_core::{D, DType, Result, Tensor};

use super::attach::{Backward, attach1};

/// x (…, d), weight (d,) f32 on x's device → (…, d) in x's dtype.
pub(crate) fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let x32 = x.detach().to_dtype(DType::F32)?;
    let r = inv_rms(&x32, eps)?;
    let y = x32.broadcast_mul(&r)?.broadcast_mul(weight)?;
    let y = y.to_dtype(x.dtype())?;
    attach1(
        x,
        y,
        RmsNormBwd {
            weight: weight.clone(),
            eps,
        },
    )
}

/// 1/sqrt(mean(x²) + eps) per row: (…, 1).
fn inv_rms(x32: &Tensor, eps: f64) -> Result<Tensor> {
    (x32.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()
}

struct RmsNormBwd {
    weight: Tensor,
    eps: f64,
}

impl Backward for RmsNormBwd {
    fn name(&self) -> &'static str {
        "portable_rms_norm"
    }

    /// dx = r·(g⊙w) − x·r³·⟨g⊙w, x⟩/d, per row.
    fn backward(
        &self,
        inputs: &[&Tensor],
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let x = inputs[0];
        let d = x.dim(D::Minus1)? as f64;
        let x32 = x.to_dtype(DType::F32)?;
        let r = inv_rms(&x32, self.eps)?;
        let gw = grad.to_dtype(DType::F32)?.broadcast_mul(&self.weight)?;
        let dot = (&gw * &x32)?.sum_keepdim(D::Minus1)?;
        let c = ((r.powf(3.0)? * dot)? / d)?;
        let dx = (gw.broadcast_mul(&r)? - x32.broadcast_mul(&c)?)?;
        Ok(vec![Some(dx.to_dtype(x.dtype())?)])
    }
}
