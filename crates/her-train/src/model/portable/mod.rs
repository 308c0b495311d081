//! The portable op set: every op on the gradient path written in candle
//! tensor ops (forward and backward), so the same code runs on the CPU and
//! on CUDA. `train.kernels = "portable"` selects it on the CPU, which is how
//! CI exercises the path a GPU runs.

pub(crate) mod attach;
pub(crate) mod attention;

#[cfg(test)]
mod attention_tests;
