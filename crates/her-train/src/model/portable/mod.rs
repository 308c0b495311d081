//! The portable op set: every op on the gradient path written in candle
//! tensor ops (forward and backward), so the same code runs on the CPU and
//! on CUDA. `train.kernels = "portable"` selects it on the CPU, which is how
//! CI exercises the path a GPU runs. Each op type of `model` dispatches to
//! these in its `apply(…, OpPath)`.

pub(crate) mod attach;
pub(crate) mod attention;
pub(crate) mod head;
pub(crate) mod linear;
pub(crate) mod mlp;
pub(crate) mod norm;
pub(crate) mod rope;

#[cfg(test)]
mod attention_tests;
#[cfg(test)]
mod tests;
