//! Scaled softmax over the last dim with a causal mask, for attention
//! scores laid out (…, rows, t) where row r is query position r % t (the
//! query heads that share a KV head are stacked in the rows).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, bail};

use rayon::prelude::*;

use super::f32_data;

#[derive(Clone, Copy)]
pub struct CausalSoftmax {
    t: usize,
    scale: f32,
}

impl CausalSoftmax {
    pub fn new(t: usize, scale: f32) -> Self {
        Self { t, scale }
    }

    pub fn forward(&self, scores: &Tensor) -> Result<Tensor> {
        scores.contiguous()?.apply_op1(*self)
    }

    fn check(&self, l: &Layout) -> Result<()> {
        let dims = l.shape().dims();
        let rows = dims.len().checked_sub(2).map(|i| dims[i]).unwrap_or(0);
        if dims.last() != Some(&self.t) || rows % self.t != 0 {
            bail!(
                "causal_softmax: shape {dims:?} is not (…, k·{}, {})",
                self.t,
                self.t
            );
        }
        Ok(())
    }
}

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "causal_softmax_with_bwd"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        self.check(l)?;
        let x = f32_data(s, l, self.name())?;
        let t = self.t;
        let mut y = vec![0f32; x.len()];
        let scale = self.scale;
        let rows = x.par_chunks_exact(t).zip(y.par_chunks_exact_mut(t));
        rows.enumerate().for_each(|(row, (xr, yr))| {
            // Keys after the query position stay 0.
            let n = row % t + 1;
            let max = xr[..n]
                .iter()
                .fold(f32::NEG_INFINITY, |m, &v| m.max(v * scale));
            let mut sum = 0f64;
            for (yv, &xv) in yr[..n].iter_mut().zip(&xr[..n]) {
                *yv = (xv * scale - max).exp();
                sum += f64::from(*yv);
            }
            let inv = (1.0 / sum) as f32;
            yr[..n].iter_mut().for_each(|v| *v *= inv);
        });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let dx = res
            .contiguous()?
            .apply_op2_no_bwd(&grad.contiguous()?, &CausalSoftmaxBwd(*self))?;
        Ok(Some(dx))
    }
}

/// dx = scale · y ⊙ (g − ⟨g, y⟩), per row (y is 0 where masked).
struct CausalSoftmaxBwd(CausalSoftmax);

impl CustomOp2 for CausalSoftmaxBwd {
    fn name(&self) -> &'static str {
        "causal_softmax_bwd"
    }

    fn cpu_fwd(
        &self,
        ys: &CpuStorage,
        yl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.0.check(yl)?;
        let y = f32_data(ys, yl, self.name())?;
        let g = f32_data(gs, gl, self.name())?;
        if y.len() != g.len() {
            bail!(
                "causal_softmax_bwd: grad {:?} != output {:?}",
                gl.shape(),
                yl.shape()
            );
        }
        let t = self.0.t;
        let mut dx = vec![0f32; y.len()];
        let scale = self.0.scale;
        let rows = y
            .par_chunks_exact(t)
            .zip(g.par_chunks_exact(t))
            .zip(dx.par_chunks_exact_mut(t));
        rows.enumerate().for_each(|(row, ((yr, gr), dr))| {
            let n = row % t + 1;
            let dot: f64 = (0..n).map(|j| f64::from(yr[j]) * f64::from(gr[j])).sum();
            let dot = dot as f32;
            for j in 0..n {
                dr[j] = scale * yr[j] * (gr[j] - dot);
            }
        });
        Ok((CpuStorage::F32(dx), yl.shape().clone()))
    }
}
