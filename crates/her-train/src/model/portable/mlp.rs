//! The gated MLP activation silu(gate) ⊙ up in candle ops, computed in f32:
//! d gate = g ⊙ up ⊙ σ(gate)(1 + gate(1 − σ(gate))), d up = g ⊙ silu(gate).

use candle_core::{DType, Result, Tensor};

use super::attach::{Backward, attach2};

/// gate, up (same shape) → silu(gate) ⊙ up in their dtype.
pub(crate) fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    let (gate32, up32) = (
        gate.detach().to_dtype(DType::F32)?,
        up.detach().to_dtype(DType::F32)?,
    );
    let y = (gate32.silu()? * up32)?.to_dtype(gate.dtype())?;
    attach2(gate, up, y, SiluMulBwd)
}

struct SiluMulBwd;

impl Backward for SiluMulBwd {
    fn name(&self) -> &'static str {
        "portable_silu_mul"
    }

    fn backward(
        &self,
        inputs: &[&Tensor],
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let (gate, up) = (inputs[0], inputs[1]);
        let g = grad.to_dtype(DType::F32)?;
        let x = gate.to_dtype(DType::F32)?;
        let u = up.to_dtype(DType::F32)?;
        let s = candle_nn::ops::sigmoid(&x)?;
        // σ(x)·(1 + x·(1 − σ(x)))
        let slope = (&s * ((&x * (1.0 - &s)?)? + 1.0)?)?;
        let d_gate = ((&g * &u)? * slope)?;
        let d_up = (&g * (&x * &s)?)?;
        Ok(vec![
            Some(d_gate.to_dtype(gate.dtype())?),
            Some(d_up.to_dtype(up.dtype())?),
        ])
    }
}
