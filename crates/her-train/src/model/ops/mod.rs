//! CPU ops with hand-written backward passes for the differentiable forward.
//!
//! candle's fused `rms_norm`, `rope*` and `softmax_last_dim` have no backward
//! (the gradient silently vanishes) and its composite fallbacks are slow in
//! backward, so each op here is one pass forward and one pass backward. Every
//! `bwd` runs a second no-backward op, which is enough: we never need second
//! derivatives. Inputs must be contiguous f32; callers make them so.

mod attention;
pub(crate) mod matmul;
mod rms_norm;
mod rope;
mod silu_mul;
pub(crate) mod vmath;

#[cfg(test)]
pub(crate) mod tests;

pub use attention::CausalAttention;
pub(crate) use attention::attention_dims;
pub use rms_norm::RmsNorm;
pub use rope::{Rope, RopeStyle};
pub use silu_mul::SiluMul;

use candle_core::{CpuStorage, Layout, Result, Storage, Tensor, bail};

/// The contiguous f32 data an op reads.
pub(crate) fn f32_data<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&s.as_slice::<f32>()?[start..end]),
        None => bail!("{op}: the input must be contiguous, got {l:?}"),
    }
}

/// Runs `f` on the contiguous f32 data of a CPU tensor (without a copy).
pub(crate) fn with_f32<R>(t: &Tensor, op: &str, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (s, l) = t.storage_and_layout();
    let Storage::Cpu(s) = &*s else {
        bail!("{op}: the tensor is not on the CPU");
    };
    f(f32_data(s, l, op)?)
}
