//! Frozen base weights: linear layers whose backward returns only the input
//! gradient, and the embedding lookup.
//!
//! In quantized mode the GGUF QTensor is kept as is and dequantized per call
//! (forward and backward), so no f32 copy of the model stays alive; f32 gemm
//! on the dequantized matrix is faster than candle's quantized matmul at
//! training batch sizes and does not quantize the activations. In both modes
//! the op skips the weight gradient that candle's matmul would compute (and
//! keep) for a frozen matrix.

use std::sync::{Arc, Mutex, TryLockError};

use candle_core::quantized::QTensor;
use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Result, Shape, Tensor, bail};

use super::kernels::OpPath;
use super::ops::matmul::{MatRef, product};
use super::ops::{f32_data, with_f32};
use super::portable;

mod dequantize;

/// Where quantized matrices are dequantized for one call; grows to the
/// largest matrix (or head block) and stays. One for the process, not one
/// per thread: forward and backward may run on different pool threads.
static SCRATCH: Mutex<Vec<f32>> = Mutex::new(Vec::new());

/// A frozen (out, in) matrix, quantized or dense.
#[derive(Clone)]
pub enum FrozenWeight {
    Quantized(Arc<QTensor>),
    Dense(Tensor),
    /// Cut into blocks of rows at load: the head on a GPU, of which the
    /// loss dequantizes one block at a time.
    Rows(Arc<RowBlocks>),
}

/// A matrix as consecutive blocks of `block_rows` rows (the last may be
/// shorter).
pub struct RowBlocks {
    blocks: Vec<FrozenWeight>,
    block_rows: usize,
    dims: (usize, usize),
}

impl RowBlocks {
    pub fn new(blocks: Vec<FrozenWeight>, block_rows: usize, rows: usize, cols: usize) -> Self {
        Self {
            blocks,
            block_rows: block_rows.max(1),
            dims: (rows, cols),
        }
    }

    /// Rows `start..start + len`, from the blocks they fall in.
    fn dense_rows(
        &self,
        start: usize,
        len: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let br = self.block_rows;
        let mut pieces = Vec::new();
        let mut row = start;
        while row < start + len {
            let (index, offset) = (row / br, row % br);
            let Some(block) = self.blocks.get(index) else {
                bail!(
                    "row {row} is past the last block of a {:?} matrix",
                    self.dims
                );
            };
            let take = (block.dims()?.0 - offset).min(start + len - row);
            pieces.push(block.dense_rows(offset, take, dtype, device)?);
            row += take;
        }
        match pieces.len() {
            1 => Ok(pieces.remove(0)),
            _ => Tensor::cat(&pieces, 0),
        }
    }
}

impl FrozenWeight {
    /// (out, in).
    pub fn dims(&self) -> Result<(usize, usize)> {
        match self {
            FrozenWeight::Quantized(q) => q.shape().dims2(),
            FrozenWeight::Dense(t) => t.dims2(),
            FrozenWeight::Rows(r) => Ok(r.dims),
        }
    }

    /// Rows per block of a matrix kept in blocks.
    pub fn block_rows(&self) -> Option<usize> {
        match self {
            FrozenWeight::Rows(r) => Some(r.block_rows),
            _ => None,
        }
    }

    /// Runs `f` on the whole matrix in f32, row-major (out, in): see
    /// [`Self::with_rows_f32`].
    pub fn with_f32<R>(&self, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
        self.with_rows_f32(0, self.dims()?.0, f)
    }

    /// Runs `f` on rows `start..start + len` in f32, row-major (len, in). A
    /// dense matrix lends its own rows. A quantized one dequantizes only
    /// those rows (a row is whole quantization blocks, so its bytes can be
    /// cut out) into this thread's scratch buffer, which is kept from call to
    /// call: a fresh buffer per call had every step page-fault its way
    /// through ~1.5 GB of new memory on SmolLM2 (each matrix is dequantized
    /// in forward and again in backward).
    pub fn with_rows_f32<R>(
        &self,
        start: usize,
        len: usize,
        f: impl FnOnce(&[f32]) -> Result<R>,
    ) -> Result<R> {
        let (n, k) = self.dims()?;
        if start + len > n {
            bail!("rows {start}..{} of a matrix with {n} rows", start + len);
        }
        let q = match self {
            FrozenWeight::Dense(t) => return with_f32(&t.narrow(0, start, len)?, "frozen", f),
            FrozenWeight::Rows(r) => {
                return with_f32(
                    &r.dense_rows(start, len, DType::F32, &Device::Cpu)?,
                    "frozen",
                    f,
                );
            }
            FrozenWeight::Quantized(q) => q,
        };
        let dtype = q.dtype();
        let row_bytes = k / dtype.block_size() * dtype.type_size();
        let data = q.data()?;
        let bytes = &data[start * row_bytes..(start + len) * row_bytes];
        let dequantize_into = |out: &mut [f32]| -> Result<()> {
            if !dequantize::in_parallel(dtype, bytes, out) {
                let t = qtensor_from_ggml(dtype, bytes, vec![len, k], &Device::Cpu)?
                    .dequantize(&Device::Cpu)?;
                with_f32(&t, "frozen", |v| {
                    out.copy_from_slice(v);
                    Ok(())
                })?;
            }
            Ok(())
        };
        let mut buf = match SCRATCH.try_lock() {
            Ok(buf) => buf,
            // A panic while it was lent leaves only stale numbers behind.
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            // Lent already (by a caller up this stack or another thread's
            // op): a buffer of its own for this call.
            Err(TryLockError::WouldBlock) => {
                let mut out = vec![0f32; len * k];
                dequantize_into(&mut out)?;
                return f(&out);
            }
        };
        if buf.len() < len * k {
            buf.resize(len * k, 0.0);
        }
        let out = &mut buf[..len * k];
        dequantize_into(out)?;
        f(out)
    }

    /// Rows `start..start + len` as a fresh f32 tensor.
    #[cfg(test)]
    pub fn rows_f32(&self, start: usize, len: usize) -> Result<Tensor> {
        let k = self.dims()?.1;
        self.with_rows_f32(start, len, |v| {
            Tensor::from_slice(v, (len, k), &Device::Cpu)
        })
    }

    /// The whole matrix as a fresh f32 tensor.
    #[cfg(test)]
    pub fn to_f32(&self) -> Result<Tensor> {
        self.rows_f32(0, self.dims()?.0)
    }

    /// The whole matrix as a fresh `dtype` tensor on `device`, for the
    /// portable ops: candle's own dequantize (a CUDA kernel on a GPU), never
    /// the CPU scratch buffer.
    pub fn dense(&self, dtype: DType, device: &Device) -> Result<Tensor> {
        match self {
            // On a GPU straight to f16 (half the bytes of candle's f32
            // kernel's output) and cast from there.
            FrozenWeight::Quantized(q) if !device.is_cpu() && dtype != DType::F32 => {
                q.dequantize_f16(device)?.to_dtype(dtype)
            }
            FrozenWeight::Quantized(q) => q.dequantize(device)?.to_dtype(dtype),
            FrozenWeight::Dense(t) => t.to_device(device)?.to_dtype(dtype),
            FrozenWeight::Rows(r) => r.dense_rows(0, r.dims.0, dtype, device),
        }
    }

    /// Rows `start..start + len` as [`Self::dense`] gives the whole matrix.
    /// A quantized matrix dequantizes only those rows (cut out of its
    /// bytes, which for a QTensor on a GPU are copied to the host first:
    /// splitting the head at load is the device loader's job).
    pub fn dense_rows(
        &self,
        start: usize,
        len: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let (n, k) = self.dims()?;
        if start + len > n {
            bail!("rows {start}..{} of a matrix with {n} rows", start + len);
        }
        match self {
            FrozenWeight::Quantized(q) if (start, len) != (0, n) => {
                let qdtype = q.dtype();
                let row_bytes = k / qdtype.block_size() * qdtype.type_size();
                let data = q.data()?;
                let bytes = &data[start * row_bytes..(start + len) * row_bytes];
                qtensor_from_ggml(qdtype, bytes, vec![len, k], &Device::Cpu)?
                    .dequantize(device)?
                    .to_dtype(dtype)
            }
            FrozenWeight::Quantized(_) => self.dense(dtype, device),
            FrozenWeight::Dense(t) => t.narrow(0, start, len)?.to_device(device)?.to_dtype(dtype),
            FrozenWeight::Rows(r) => r.dense_rows(start, len, dtype, device),
        }
    }

    /// Rows `ids` of the matrix (an embedding lookup): (n,) → (n, in).
    pub fn rows(&self, ids: &Tensor) -> Result<Tensor> {
        match self {
            // Dequantizes only the rows it gathers.
            FrozenWeight::Quantized(q) => q.embedding(ids),
            FrozenWeight::Dense(t) => t.index_select(ids, 0),
            // Not an embedding layout: never gathered from in a pass.
            FrozenWeight::Rows(r) => r
                .dense_rows(0, r.dims.0, DType::F32, &Device::Cpu)?
                .index_select(ids, 0),
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

    /// This pass's implementation: the fused kernel or the portable op
    /// (which keeps the bias inside the op).
    pub(crate) fn apply(&self, x: &Tensor, path: OpPath) -> Result<Tensor> {
        match path {
            OpPath::Fused => self.forward(x),
            OpPath::Portable => {
                portable::linear::frozen_linear(x, &self.weight, self.bias.as_ref())
            }
        }
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
        let m = l.shape().elem_count() / k;
        let x = MatRef::new(f32_data(s, l, self.name())?, 0, m, k, k);
        // y (m, n) = x (m, k) · Wᵀ, W (n, k) in f32 for this call only.
        let y = self.weight.with_f32(|w| {
            Ok(CpuStorage::F32(product(
                x,
                MatRef::new(w, 0, n, k, k).t(),
                1.0,
            )))
        })?;
        let mut out = dims.to_vec();
        if let Some(last) = out.last_mut() {
            *last = n;
        }
        Ok((y, Shape::from(out)))
    }

    /// dx = dy·W; W gets no gradient (it is frozen).
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (n, k) = self.weight.dims()?;
        let m = grad.elem_count() / n;
        let dy = grad.contiguous()?;
        let dx = with_f32(&dy, self.name(), |dy| {
            let dy = MatRef::new(dy, 0, m, n, n);
            self.weight
                .with_f32(|w| Ok(product(dy, MatRef::new(w, 0, n, k, k), 1.0)))
        })?;
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}
