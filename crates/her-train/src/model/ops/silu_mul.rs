//! The gated MLP activation silu(gate) ⊙ up, fused, with its backward:
//! d gate = g ⊙ up ⊙ σ(x)(1 + x(1 − σ(x))), d up = g ⊙ silu(gate).

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail};

use rayon::prelude::*;

use super::f32_data;
use super::vmath::sigmoid;
use crate::model::kernels::OpPath;
use crate::model::portable;

#[derive(Clone, Copy)]
pub struct SiluMul;

impl SiluMul {
    /// This pass's implementation: the fused kernel or the portable op.
    pub(crate) fn apply(gate: &Tensor, up: &Tensor, path: OpPath) -> Result<Tensor> {
        match path {
            OpPath::Fused => Self::forward(gate, up),
            OpPath::Portable => portable::mlp::silu_mul(gate, up),
        }
    }

    pub fn forward(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
        gate.contiguous()?.apply_op2(&up.contiguous()?, SiluMul)
    }
}

/// Elements per parallel task: long enough for the inner loops to run as
/// vector code, short enough to split a (m, ff) activation across cores.
const CHUNK: usize = 1 << 14;

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
        let mut y = vec![0f32; gate.len()];
        y.par_chunks_mut(CHUNK)
            .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)))
            .for_each(|(y, (gate, up))| {
                for ((y, &x), &u) in y.iter_mut().zip(gate).zip(up) {
                    *y = x * sigmoid(x) * u;
                }
            });
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
        // Both gradients in one pass, stacked: (2, …) → [d gate, d up].
        let both = gate.apply_op3_no_bwd(up, &grad, &SiluMulBwd)?;
        Ok((Some(both.get(0)?), Some(both.get(1)?)))
    }
}

/// Both input gradients from (gate, up, grad), stacked as (2, …).
struct SiluMulBwd;

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
        let n = gate.len();
        let mut out = vec![0f32; 2 * n];
        let (d_gate, d_up) = out.split_at_mut(n);
        d_gate
            .par_chunks_mut(CHUNK)
            .zip(d_up.par_chunks_mut(CHUNK))
            .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)))
            .zip(dy.par_chunks(CHUNK))
            .for_each(|(((d_gate, d_up), (gate, up)), dy)| {
                let inputs = gate.iter().zip(up).zip(dy);
                for ((dg, du), ((&x, &u), &g)) in d_gate.iter_mut().zip(d_up).zip(inputs) {
                    let s = sigmoid(x);
                    *dg = g * u * s * (1.0 + x * (1.0 - s));
                    *du = g * x * s;
                }
            });
        let mut dims = vec![2];
        dims.extend_from_slice(gl.dims());
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}
