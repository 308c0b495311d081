//! "Attached" ops: a forward computed outside the graph with candle ops,
//! recorded as one node whose backward is ours.
//!
//! candle's autograd keeps every intermediate of a composite until backward,
//! and computes (and stores) a gradient for frozen operands too. An attached
//! op runs its forward on detached inputs, so nothing of it is recorded, and
//! then records a single node whose backward keeps only what the op chose.
//! The backward receives tensors, so it is written in candle ops and runs on
//! any device; only the hand-back of the precomputed value touches storage,
//! through `try_clone`, which every backend has (the CUDA one is a dummy
//! without the `cuda` feature, so no `cfg` is needed here).

use std::sync::Mutex;

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CudaStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Storage,
    Tensor, bail,
};

/// The backward of an attached op, in candle tensor ops.
pub(crate) trait Backward: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// `inputs` as recorded, `out` the op's value, `grad` its gradient (already
    /// detached by candle) → one gradient (or `None`) per input.
    fn backward(
        &self,
        inputs: &[&Tensor],
        out: &Tensor,
        grad: &Tensor,
    ) -> Result<Vec<Option<Tensor>>>;
}

/// Records `out` (computed from detached copies of `x`) as the value of one
/// node whose backward is `bwd`. When `x` is not tracked (held-out and
/// reference passes) nothing is recorded and `out` comes back as it is.
pub(crate) fn attach1(x: &Tensor, out: Tensor, bwd: impl Backward) -> Result<Tensor> {
    if !x.track_op() {
        return Ok(out);
    }
    x.apply_op1(Attached::new(out, bwd)?)
}

/// [`attach1`] for an op of two inputs.
pub(crate) fn attach2(a: &Tensor, b: &Tensor, out: Tensor, bwd: impl Backward) -> Result<Tensor> {
    if !(a.track_op() || b.track_op()) {
        return Ok(out);
    }
    a.apply_op2(b, Attached::new(out, bwd)?)
}

/// [`attach1`] for an op of three inputs.
pub(crate) fn attach3(
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
    out: Tensor,
    bwd: impl Backward,
) -> Result<Tensor> {
    if !(a.track_op() || b.track_op() || c.track_op()) {
        return Ok(out);
    }
    a.apply_op3(b, c, Attached::new(out, bwd)?)
}

struct Attached<B> {
    /// Taken by the one forward call, so the node does not hold it twice.
    out: Mutex<Option<Tensor>>,
    bwd: B,
}

impl<B: Backward> Attached<B> {
    fn new(out: Tensor, bwd: B) -> Result<Self> {
        // The hand-back copies the whole storage and candle gives it a
        // contiguous layout at offset 0, so the value must already be laid
        // out that way; a view gets a fresh copy first (`copy` would keep
        // the view's strides).
        let l = out.layout();
        let out = if l.is_contiguous() && l.start_offset() == 0 {
            out
        } else {
            out.affine(1.0, 0.0)?
        };
        Ok(Self {
            out: Mutex::new(Some(out)),
            bwd,
        })
    }

    fn take(&self) -> Result<Tensor> {
        let taken = match self.out.lock() {
            Ok(mut slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        match taken {
            Some(out) => Ok(out),
            None => bail!(
                "{}: the attached value was handed back twice",
                self.bwd.name()
            ),
        }
    }

    fn cpu(&self) -> Result<(CpuStorage, Shape)> {
        let out = self.take()?;
        let (storage, layout) = out.storage_and_layout();
        match &*storage {
            Storage::Cpu(s) => Ok((s.try_clone(layout)?, layout.shape().clone())),
            _ => bail!("{}: the value is not on the CPU", self.bwd.name()),
        }
    }

    fn cuda(&self) -> Result<(CudaStorage, Shape)> {
        let out = self.take()?;
        let (storage, layout) = out.storage_and_layout();
        match &*storage {
            Storage::Cuda(s) => Ok((s.try_clone(layout)?, layout.shape().clone())),
            _ => bail!("{}: the value is not on the CUDA device", self.bwd.name()),
        }
    }

    fn grads<const N: usize>(
        &self,
        inputs: [&Tensor; N],
        out: &Tensor,
        grad: &Tensor,
    ) -> Result<[Option<Tensor>; N]> {
        // The inputs as detached views: the backward records nothing, and a
        // gradient never drags the forward graph along (a LoRA variable's
        // gradient would otherwise keep the step's whole graph alive in the
        // optimizer's moments).
        let detached = inputs.map(Tensor::detach);
        let grads = self.bwd.backward(&detached.each_ref(), out, grad)?;
        match <[Option<Tensor>; N]>::try_from(grads) {
            Ok(grads) => Ok(grads),
            Err(grads) => bail!(
                "{}: the backward returned {} gradients for {N} inputs",
                self.bwd.name(),
                grads.len()
            ),
        }
    }
}

impl<B: Backward> CustomOp1 for Attached<B> {
    fn name(&self) -> &'static str {
        self.bwd.name()
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        self.cpu()
    }

    fn cuda_fwd(&self, _: &CudaStorage, _: &Layout) -> Result<(CudaStorage, Shape)> {
        self.cuda()
    }

    fn bwd(&self, x: &Tensor, out: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let [dx] = self.grads([x], out, grad)?;
        Ok(dx)
    }
}

impl<B: Backward> CustomOp2 for Attached<B> {
    fn name(&self) -> &'static str {
        self.bwd.name()
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.cpu()
    }

    fn cuda_fwd(
        &self,
        _: &CudaStorage,
        _: &Layout,
        _: &CudaStorage,
        _: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        self.cuda()
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let [da, db] = self.grads([a, b], out, grad)?;
        Ok((da, db))
    }
}

impl<B: Backward> CustomOp3 for Attached<B> {
    fn name(&self) -> &'static str {
        self.bwd.name()
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.cpu()
    }

    fn cuda_fwd(
        &self,
        _: &CudaStorage,
        _: &Layout,
        _: &CudaStorage,
        _: &Layout,
        _: &CudaStorage,
        _: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        self.cuda()
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        c: &Tensor,
        out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let [da, db, dc] = self.grads([a, b, c], out, grad)?;
        Ok((da, db, dc))
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    /// y = a·b + c elementwise, whose gradients are (g·b, g·a, g).
    struct MulAdd;

    impl Backward for MulAdd {
        fn name(&self) -> &'static str {
            "test-mul-add"
        }

        fn backward(
            &self,
            inputs: &[&Tensor],
            _out: &Tensor,
            grad: &Tensor,
        ) -> Result<Vec<Option<Tensor>>> {
            let (a, b) = (inputs[0], inputs[1]);
            Ok(vec![
                Some(grad.mul(b)?),
                Some(grad.mul(a)?),
                Some(grad.clone()),
            ])
        }
    }

    fn vars() -> Result<(Var, Var, Var)> {
        let dev = Device::Cpu;
        Ok((
            Var::new(&[1.0f32, -2.0, 3.0], &dev)?,
            Var::new(&[0.5f32, 4.0, -1.5], &dev)?,
            Var::new(&[2.0f32, 0.0, 1.0], &dev)?,
        ))
    }

    #[test]
    fn an_attached_op_gets_the_composites_value_and_gradients() -> Result<()> {
        let (a, b, c) = vars()?;
        let weights = Tensor::new(&[1.0f32, 2.0, 3.0], &Device::Cpu)?;

        let value = a.detach().mul(&b.detach())?.add(&c.detach())?;
        let attached = attach3(&a, &b, &c, value, MulAdd)?;
        let ours = attached.mul(&weights)?.sum_all()?.backward()?;

        let composite = a.mul(&b)?.add(&c)?;
        let reference = composite.mul(&weights)?.sum_all()?.backward()?;

        assert_eq!(attached.to_vec1::<f32>()?, composite.to_vec1::<f32>()?);
        for v in [&a, &b, &c] {
            let got = ours.get(v).expect("a gradient for each input");
            let want = reference.get(v).expect("a reference gradient");
            assert_eq!(got.to_vec1::<f32>()?, want.to_vec1::<f32>()?);
        }
        Ok(())
    }

    #[test]
    fn untracked_inputs_record_nothing() -> Result<()> {
        let (a, b, c) = vars()?;
        let (a, b, c) = (a.detach(), b.detach(), c.detach());
        let value = a.mul(&b)?.add(&c)?;
        let out = attach3(&a, &b, &c, value.clone(), MulAdd)?;
        assert!(!out.track_op());
        assert_eq!(out.id(), value.id(), "the value comes back as it is");
        Ok(())
    }

    #[test]
    fn a_strided_value_is_handed_back_as_a_fresh_copy() -> Result<()> {
        // A transposed (non-contiguous) value of the right shape.
        let square = Tensor::new(&[[1.0f32, 2.0], [3.0, 4.0]], &Device::Cpu)?;
        let x = Var::from_tensor(&square)?;
        struct Ident;
        impl Backward for Ident {
            fn name(&self) -> &'static str {
                "test-transpose"
            }
            fn backward(
                &self,
                _: &[&Tensor],
                _: &Tensor,
                grad: &Tensor,
            ) -> Result<Vec<Option<Tensor>>> {
                Ok(vec![Some(grad.t()?)])
            }
        }
        let out = attach1(&x, square.t()?, Ident)?;
        assert_eq!(out.to_vec2::<f32>()?, vec![vec![1.0, 3.0], vec![2.0, 4.0]]);
        let grads = out.sum_all()?.backward()?;
        assert!(grads.get(&x).is_some());
        Ok(())
    }
}
