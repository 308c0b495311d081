//! Rotary position embedding on (b, t, heads, head_dim): positions 0..t in
//! every row, or each token's own position (samples packed into a row
//! restart at 0).
//!
//! llama.cpp rotates pairs (x[2i], x[2i+1]) for `llama` (NORM) and pairs
//! (x[i], x[i + d/2]) for qwen2/qwen3 (NEOX); the GGUF converter permutes
//! llama's q/k weights to suit NORM, so the style must follow the arch.
//! The backward pass is the inverse rotation of the incoming gradient.

use std::sync::Arc;

use rayon::prelude::*;

use candle_core::{CpuStorage, CustomOp1, Device, Layout, Result, Shape, Tensor, bail};

use super::f32_data;
use crate::model::kernels::OpPath;
use crate::model::portable;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs (llama.cpp `LLAMA_ROPE_TYPE_NORM`).
    Norm,
    /// Half-split pairs (llama.cpp `LLAMA_ROPE_TYPE_NEOX`).
    Neox,
}

#[derive(Clone)]
pub struct Rope {
    style: RopeStyle,
    head_dim: usize,
    t: usize,
    /// (t, head_dim/2) tables.
    cos: Arc<Vec<f32>>,
    sin: Arc<Vec<f32>>,
    inverse: bool,
    /// Each token's position (b·t, each < t); `None`: 0..t per row.
    positions: Option<Arc<Vec<u32>>>,
}

impl Rope {
    /// Tables for positions 0..t: angle(pos, i) = pos · theta^(−2i/head_dim).
    pub fn new(style: RopeStyle, head_dim: usize, t: usize, theta: f64) -> Self {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(t * half);
        let mut sin = Vec::with_capacity(t * half);
        for pos in 0..t {
            for i in 0..half {
                let freq = theta.powf(-2.0 * i as f64 / head_dim as f64);
                let angle = pos as f64 * freq;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Self {
            style,
            head_dim,
            t,
            cos: Arc::new(cos),
            sin: Arc::new(sin),
            inverse: false,
            positions: None,
        }
    }

    /// Each token's own position (row-major, b·t values below t).
    pub fn with_positions(mut self, positions: Vec<u32>) -> Self {
        self.positions = Some(Arc::new(positions));
        self
    }

    /// x: (b, t, heads, head_dim).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.contiguous()?.apply_op1(self.clone())
    }

    /// This pass's implementation: the fused kernel or the portable op.
    pub(crate) fn apply(&self, x: &Tensor, path: OpPath) -> Result<Tensor> {
        match path {
            OpPath::Fused => self.forward(x),
            OpPath::Portable => {
                let (cos, sin) = self.tables(x.dim(0)?, x.device())?;
                // In the activations' dtype, as transformers applies them.
                let (cos, sin) = (cos.to_dtype(x.dtype())?, sin.to_dtype(x.dtype())?);
                let style = self.style;
                portable::rope::rope(x, portable::rope::RopeTables { style, cos, sin })
            }
        }
    }

    /// Each token's cos and sin as (b, t, 1, head_dim/2) tensors on
    /// `device`, for the portable rope: the rows of this op's tables at the
    /// tokens' positions (0..t per row without packing).
    pub(crate) fn tables(&self, b: usize, device: &Device) -> Result<(Tensor, Tensor)> {
        let half = self.head_dim / 2;
        let table = |v: &[f32]| Tensor::from_slice(v, (self.t, half), device);
        let (cos, sin) = (table(&self.cos)?, table(&self.sin)?);
        let (cos, sin) = match &self.positions {
            Some(p) => {
                let p = Tensor::from_slice(p.as_slice(), p.len(), device)?;
                (cos.index_select(&p, 0)?, sin.index_select(&p, 0)?)
            }
            None => (
                cos.unsqueeze(0)?.broadcast_as((b, self.t, half))?,
                sin.unsqueeze(0)?.broadcast_as((b, self.t, half))?,
            ),
        };
        let shape = (b, self.t, 1, half);
        Ok((cos.reshape(shape)?, sin.reshape(shape)?))
    }

    fn rotate(&self, x: &[f32], heads: usize) -> Vec<f32> {
        let (d, half) = (self.head_dim, self.head_dim / 2);
        // Backward rotates by −angle: same cos, negated sin.
        let sign = if self.inverse { -1.0 } else { 1.0 };
        let mut y = vec![0f32; x.len()];
        let rows = x.par_chunks_exact(d).zip(y.par_chunks_exact_mut(d));
        rows.enumerate().for_each(|(row, (xr, yr))| {
            let token = row / heads;
            let pos = match &self.positions {
                Some(p) => p[token] as usize,
                None => token % self.t,
            };
            let cos = &self.cos[pos * half..(pos + 1) * half];
            let sin = &self.sin[pos * half..(pos + 1) * half];
            for i in 0..half {
                let (i0, i1) = match self.style {
                    RopeStyle::Norm => (2 * i, 2 * i + 1),
                    RopeStyle::Neox => (i, i + half),
                };
                let (c, s) = (cos[i], sign * sin[i]);
                yr[i0] = xr[i0] * c - xr[i1] * s;
                yr[i1] = xr[i0] * s + xr[i1] * c;
            }
        });
        y
    }
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "rope_with_bwd"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, t, heads, d) = l.shape().dims4()?;
        if t != self.t || d != self.head_dim || d % 2 != 0 {
            bail!(
                "rope: input {:?} does not match t={} head_dim={}",
                l.shape(),
                self.t,
                self.head_dim
            );
        }
        if let Some(p) = &self.positions
            && (p.len() != b * t || p.iter().any(|&pos| pos as usize >= t))
        {
            bail!(
                "rope: {} positions for a {:?} input, or one beyond its {t} tables",
                p.len(),
                l.shape()
            );
        }
        let x = f32_data(s, l, self.name())?;
        Ok((CpuStorage::F32(self.rotate(x, heads)), l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let inverse = Self {
            inverse: !self.inverse,
            ..self.clone()
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&inverse)?))
    }
}
