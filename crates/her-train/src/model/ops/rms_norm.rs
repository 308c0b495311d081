//! RMSNorm over the last dim with a frozen weight: y = x · r · w,
//! r = 1/sqrt(mean(x²) + eps) (sum of squares in f64, as ggml does).

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Device, Layout, Result, Shape, Tensor, bail};

use rayon::prelude::*;

use super::f32_data;
use crate::model::kernels::OpPath;
use crate::model::portable;

#[derive(Clone)]
pub struct RmsNorm {
    weight: Arc<Vec<f32>>,
    /// The same weight as a tensor, for the portable op.
    weight_tensor: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn new(weight: Vec<f32>, eps: f64) -> Result<Self> {
        let weight_tensor = Tensor::from_slice(&weight, weight.len(), &Device::Cpu)?;
        Ok(Self {
            weight: Arc::new(weight),
            weight_tensor,
            eps,
        })
    }

    /// The same norm with the portable op's weight on `device` (the fused
    /// kernel reads the host copy).
    pub fn placed_on(self, device: &Device) -> Result<Self> {
        Ok(Self {
            weight_tensor: self.weight_tensor.to_device(device)?,
            ..self
        })
    }

    /// This pass's implementation: the fused kernel or the portable op.
    pub(crate) fn apply(&self, x: &Tensor, path: OpPath) -> Result<Tensor> {
        match path {
            OpPath::Fused => self.forward(x),
            OpPath::Portable => {
                let w = self.weight_tensor.to_device(x.device())?;
                portable::norm::rms_norm(x, &w, self.eps)
            }
        }
    }

    pub fn dim(&self) -> usize {
        self.weight.len()
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.contiguous()?.apply_op1(self.clone())
    }

    fn inv_rms(&self, row: &[f32]) -> f32 {
        let ss: f64 = row.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        (1.0 / (ss / row.len() as f64 + self.eps).sqrt()) as f32
    }

    fn check(&self, l: &Layout) -> Result<usize> {
        let d = l.shape().dims().last().copied().unwrap_or(0);
        if d != self.weight.len() {
            bail!(
                "rms_norm: last dim {d} != weight length {}",
                self.weight.len()
            );
        }
        Ok(d)
    }
}

impl CustomOp1 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms_norm_with_bwd"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let d = self.check(l)?;
        let x = f32_data(s, l, self.name())?;
        let mut y = vec![0f32; x.len()];
        let rows = x.par_chunks_exact(d).zip(y.par_chunks_exact_mut(d));
        rows.for_each(|(xr, yr)| {
            let r = self.inv_rms(xr);
            for ((yv, &xv), &w) in yr.iter_mut().zip(xr).zip(self.weight.iter()) {
                *yv = xv * r * w;
            }
        });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let dx = arg.apply_op2_no_bwd(&grad.contiguous()?, &RmsNormBwd(self.clone()))?;
        Ok(Some(dx))
    }
}

/// dx = r·(g⊙w) − x·r³·⟨g⊙w, x⟩/d, per row.
struct RmsNormBwd(RmsNorm);

impl CustomOp2 for RmsNormBwd {
    fn name(&self) -> &'static str {
        "rms_norm_bwd"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = self.0.check(xl)?;
        let x = f32_data(xs, xl, self.name())?;
        let g = f32_data(gs, gl, self.name())?;
        if x.len() != g.len() {
            bail!(
                "rms_norm_bwd: grad shape {:?} != input shape {:?}",
                gl.shape(),
                xl.shape()
            );
        }
        let w = &self.0.weight;
        let mut dx = vec![0f32; x.len()];
        let rows = x
            .par_chunks_exact(d)
            .zip(g.par_chunks_exact(d))
            .zip(dx.par_chunks_exact_mut(d));
        rows.for_each(|((xr, gr), dr)| {
            let r = self.0.inv_rms(xr);
            let dot: f64 = (0..d)
                .map(|j| f64::from(gr[j]) * f64::from(w[j]) * f64::from(xr[j]))
                .sum();
            let c = (f64::from(r).powi(3) * dot / d as f64) as f32;
            for j in 0..d {
                dr[j] = r * gr[j] * w[j] - xr[j] * c;
            }
        });
        Ok((CpuStorage::F32(dx), xl.shape().clone()))
    }
}
