//! The gated MLP activation silu(gate) ⊙ up, fused, with its backward:
//! d gate = g ⊙ up ⊙ σ(x)(1 + x(1 − σ(x))), d up = g ⊙ silu(gate).

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail};

use rayon::prelude::*;

use super::f32_data;

#[derive(Clone, Copy)]
pub struct SiluMul;

impl SiluMul {
    pub fn forward(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
        gate.contiguous()?.apply_op2(&up.contiguous()?, SiluMul)
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn same_len(a: &Layout, b: &Layout, op: &str) -> Result<()> {
    if a.shape() != b.shape() {
        bail!("{op}: shapes {:?} and {:?} differ", a.shape(), b.shape());
    }
    Ok(())
}

impl CustomOp2 for SiluMul {
    fn name(&self) -> &'static str {
        "silu_mul_with_bwd"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        us: &CpuStorage,
        ul: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        same_len(gl, ul, self.name())?;
        let gate = f32_data(gs, gl, self.name())?;
        let up = f32_data(us, ul, self.name())?;
        let y = gate
            .par_iter()
            .zip(up)
            .map(|(&x, &u)| x * sigmoid(x) * u)
            .collect();
        Ok((CpuStorage::F32(y), gl.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let d_gate = gate.apply_op3_no_bwd(up, &grad, &SiluMulBwd::Gate)?;
        let d_up = gate.apply_op3_no_bwd(up, &grad, &SiluMulBwd::Up)?;
        Ok((Some(d_gate), Some(d_up)))
    }
}

/// One of the two input gradients, from (gate, up, grad).
enum SiluMulBwd {
    Gate,
    Up,
}

impl CustomOp3 for SiluMulBwd {
    fn name(&self) -> &'static str {
        "silu_mul_bwd"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        us: &CpuStorage,
        ul: &Layout,
        ds: &CpuStorage,
        dl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        same_len(gl, ul, self.name())?;
        same_len(gl, dl, self.name())?;
        let gate = f32_data(gs, gl, self.name())?;
        let up = f32_data(us, ul, self.name())?;
        let dy = f32_data(ds, dl, self.name())?;
        let out = match self {
            SiluMulBwd::Gate => gate
                .par_iter()
                .zip(up)
                .zip(dy)
                .map(|((&x, &u), &g)| {
                    let s = sigmoid(x);
                    g * u * s * (1.0 + x * (1.0 - s))
                })
                .collect(),
            SiluMulBwd::Up => gate
                .par_iter()
                .zip(dy)
                .map(|(&x, &g)| g * x * sigmoid(x))
                .collect(),
        };
        Ok((CpuStorage::F32(out), gl.shape().clone()))
    }
}
