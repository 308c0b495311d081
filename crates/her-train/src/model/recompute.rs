//! Activation checkpointing: a decoder block as one op that keeps only its
//! input.
//!
//! candle has no checkpointing, so the block's forward runs inside a
//! `CustomOp1` on the block input x: on a copy of x, with the graph built
//! there dropped as soon as the output is copied out, so the block's
//! activations are freed. Backward rebuilds the block's graph from x (the
//! dropout masks are keyed by (seed, step, layer, target), so they repeat)
//! and back-propagates the incoming gradient through it. The input gradient
//! is the op's own; the LoRA gradients cannot be returned through a custom
//! op, so they are added to a store shared by the model ([`SideGrads`]),
//! which `TrainModel::backward` merges into the loss's `GradStore`.

use std::sync::{Arc, Mutex};

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, CustomOp1, Device, Error, Layout, Result, Shape, Tensor, Var};

use super::block::{Block, Pass};
use super::kernels::OpPath;
use super::ops::f32_data;
use super::portable::attach::{Backward, attach1};
use crate::error::TrainError;

/// LoRA gradients produced by checkpointed blocks' backward passes, waiting
/// to be merged into the loss's `GradStore`.
#[derive(Clone, Default)]
pub(crate) struct SideGrads(Arc<Mutex<GradStore>>);

impl SideGrads {
    /// Add `grads` to the stored ones (summing where a tensor is present).
    fn add(&self, grads: GradStore) -> Result<()> {
        self.lock()?.extend(grads)
    }

    /// Everything stored, leaving the store empty.
    pub fn take(&self) -> Result<GradStore> {
        Ok(std::mem::take(&mut *self.lock()?))
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, GradStore>> {
        // A panic while holding the lock leaves a store of whole tensors.
        Ok(self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// One block's forward, recomputed in backward.
pub(crate) struct Checkpoint {
    block: Block,
    pass: Arc<Pass>,
    side: SideGrads,
}

impl Checkpoint {
    /// The block applied to x (m, embd) keeping only x (and the output) in
    /// the graph. x must be tracked (a variable or the result of an op on
    /// one), or the op is not recorded and its LoRA gets no gradient.
    /// The fused path runs the block inside the op's `cpu_fwd`; the
    /// portable one runs it outside on a detached x and attaches the value
    /// (so it works on any device). Both recompute with the same `Pass`,
    /// hence the same path, in backward.
    pub fn apply(block: &Block, pass: &Arc<Pass>, side: &SideGrads, x: &Tensor) -> Result<Tensor> {
        let op = Self {
            block: block.clone(),
            pass: pass.clone(),
            side: side.clone(),
        };
        match pass.path {
            OpPath::Fused => x.contiguous()?.apply_op1(op),
            OpPath::Portable => {
                let y = block.forward(&x.detach(), pass).map_err(candle_err)?;
                // Detached: the block's graph built just now is dropped.
                attach1(x, y.detach(), op)
            }
        }
    }

    /// Recompute the block from x and back-propagate `grad` through it: the
    /// input gradient is returned, the LoRA gradients go to the side store.
    fn recompute(&self, arg: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let x = Var::from_tensor(&arg.detach())?;
        let y = self
            .block
            .forward(x.as_tensor(), &self.pass)
            .map_err(candle_err)?;
        // d/dθ Σ(y ⊙ grad) = grad backpropagated through the block.
        let mut grads = (y * grad.detach())?.sum_all()?.backward()?;
        let dx = grads.remove(x.as_tensor());
        // Only the variables' gradients: the store also holds ones for
        // untracked operands (frozen tensors, `grad`) that nobody reads.
        let mut lora = GradStore::default();
        for v in self.block.lora_vars() {
            if let Some(g) = grads.remove(v.as_tensor()) {
                lora.insert(v.as_tensor(), g);
            }
        }
        drop(grads);
        self.side.add(lora)?;
        Ok(dx)
    }
}

impl Backward for Checkpoint {
    fn name(&self) -> &'static str {
        "portable_checkpointed_block"
    }

    fn backward(
        &self,
        inputs: &[&Tensor],
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![self.recompute(inputs[0], grad)?])
    }
}

fn candle_err(e: TrainError) -> Error {
    match e {
        TrainError::Candle(e) => e,
        other => Error::wrap(other),
    }
}

impl CustomOp1 for Checkpoint {
    fn name(&self) -> &'static str {
        "checkpointed_block"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        // A fresh, untracked copy of x: only the LoRA variables are tracked
        // in this graph, and it is dropped on return.
        let x = Tensor::from_slice(
            f32_data(s, l, CustomOp1::name(self))?,
            l.shape(),
            &Device::Cpu,
        )?;
        let y = self.block.forward(&x, &self.pass).map_err(candle_err)?;
        if y.dims() != x.dims() {
            candle_core::bail!(
                "checkpointed_block: output {:?} differs from input {:?}",
                y.dims(),
                x.dims()
            );
        }
        let y = y.flatten_all()?.to_vec1::<f32>()?;
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        self.recompute(arg, grad)
    }
}
