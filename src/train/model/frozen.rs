//! Frozen base weights: linear layers whose backward returns only the input
//! gradient, and the embedding lookup.
//!
//! In quantized mode the GGUF QTensor is kept as is and dequantized per call
//! (forward and backward), so no f32 copy of the model stays alive; f32 gemm
//! on the dequantized matrix is faster than candle's quantized matmul at
//! training batch sizes and does not quantize the activations. In both modes
//! the op skips the weight gradient that candle's matmul would compute (and
//! keep) for a frozen matrix.

use std::sync::Arc;

use candle_core::quantized::QTensor;
use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::{CpuStorage, CustomOp1, Device, Layout, Result, Shape, Tensor, bail};

use super::ops::gemm;

mod dequantize;

/// A frozen (out, in) matrix, quantized or f32.
#[derive(Clone)]
pub enum FrozenWeight {
    Quantized(Arc<QTensor>),
    Dense(Tensor),
}

impl FrozenWeight {
    /// (out, in).
    pub fn dims(&self) -> Result<(usize, usize)> {
        match self {
            FrozenWeight::Quantized(q) => q.shape().dims2(),
            FrozenWeight::Dense(t) => t.dims2(),
        }
    }

    /// The f32 matrix: a fresh dequantized copy, or the dense tensor itself.
    pub fn to_f32(&self) -> Result<Tensor> {
        match self {
            FrozenWeight::Quantized(_) => self.rows_f32(0, self.dims()?.0),
            FrozenWeight::Dense(t) => Ok(t.clone()),
        }
    }

    /// Rows `start..start + len` in f32. A quantized matrix dequantizes only
    /// those rows (a row is whole quantization blocks, so its bytes can be
    /// cut out); a dense one returns a view.
    pub fn rows_f32(&self, start: usize, len: usize) -> Result<Tensor> {
        let (n, k) = self.dims()?;
        if start + len > n {
            bail!("rows {start}..{} of a matrix with {n} rows", start + len);
        }
        match self {
            FrozenWeight::Quantized(q) => {
                let dtype = q.dtype();
                let row_bytes = k / dtype.block_size() * dtype.type_size();
                let data = q.data()?;
                let bytes = &data[start * row_bytes..(start + len) * row_bytes];
                let mut out = vec![0f32; len * k];
                if dequantize::in_parallel(dtype, bytes, &mut out) {
                    return Tensor::from_vec(out, (len, k), &Device::Cpu);
                }
                qtensor_from_ggml(dtype, bytes, vec![len, k], &Device::Cpu)?
                    .dequantize(&Device::Cpu)
            }
            FrozenWeight::Dense(t) => t.narrow(0, start, len),
        }
    }

    /// Rows `ids` of the matrix (an embedding lookup): (n,) → (n, in).
    pub fn rows(&self, ids: &Tensor) -> Result<Tensor> {
        match self {
            // Dequantizes only the rows it gathers.
            FrozenWeight::Quantized(q) => q.embedding(ids),
            FrozenWeight::Dense(t) => t.index_select(ids, 0),
        }
    }
}

/// y = x·Wᵀ (+ bias) for a frozen W, as a differentiable op in x only.
#[derive(Clone)]
pub struct FrozenLinear {
    weight: FrozenWeight,
    bias: Option<Tensor>,
    op: Arc<Box<dyn CustomOp1 + Send + Sync>>,
}

impl FrozenLinear {
    pub fn new(weight: FrozenWeight, bias: Option<Tensor>) -> Self {
        let op: Box<dyn CustomOp1 + Send + Sync> = Box::new(DxOnlyMatmul {
            weight: weight.clone(),
        });
        Self {
            weight,
            bias,
            op: Arc::new(op),
        }
    }

    pub fn weight(&self) -> &FrozenWeight {
        &self.weight
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// x: (m, in) → (m, out).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // `apply_op1_arc` records the op for backprop; `apply_op1_no_bwd`
        // (what QMatMul uses) would drop the gradient silently.
        let y = x.contiguous()?.apply_op1_arc(self.op.clone())?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

struct DxOnlyMatmul {
    weight: FrozenWeight,
}

impl CustomOp1 for DxOnlyMatmul {
    fn name(&self) -> &'static str {
        "frozen_linear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, k) = self.weight.dims()?;
        let dims = l.shape().dims();
        if dims.last() != Some(&k) {
            bail!("frozen_linear: input {dims:?} does not end in the weight's in-dim {k}");
        }
        let Some((start, _)) = l.contiguous_offsets() else {
            bail!("frozen_linear: the input must be contiguous, got {l:?}");
        };
        let m = l.shape().elem_count() / k;
        // 1. W (n, k) in f32, for this call only.
        let w = self.weight.to_f32()?;
        // 2. y (m, n) = x (m, k) · Wᵀ
        let y = gemm(s, start, m, &w, true)?;
        let mut out = dims.to_vec();
        if let Some(last) = out.last_mut() {
            *last = n;
        }
        Ok((y, Shape::from(out)))
    }

    /// dx = dy·W; W gets no gradient (it is frozen).
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (n, _k) = self.weight.dims()?;
        let w = self.weight.to_f32()?;
        let m = grad.elem_count() / n;
        let dx = grad.contiguous()?.reshape((m, n))?.matmul(&w)?;
        Ok(Some(dx.reshape(arg.shape())?))
    }
}
