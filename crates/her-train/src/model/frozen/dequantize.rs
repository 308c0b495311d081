//! GGUF blocks to f32 on every core.
//!
//! candle dequantizes a tensor on one thread. The quantized trainer
//! dequantizes each frozen matrix in forward and again in backward (three
//! times with checkpointing), so on two cores half of that time was one
//! idle core. This splits the blocks into runs and lets candle's own
//! per-type `to_float` convert each run.

use candle_core::quantized::GgmlDType;
use candle_core::quantized::k_quants::{
    BlockQ2K, BlockQ3K, BlockQ4_0, BlockQ4_1, BlockQ4K, BlockQ5_0, BlockQ5_1, BlockQ5K, BlockQ6K,
    BlockQ8_0, BlockQ8K, GgmlType,
};
use half::{bf16, f16};
use rayon::prelude::*;

/// Blocks per parallel task (32–256 values each).
const BLOCKS_PER_TASK: usize = 512;

/// Dequantizes the GGUF `bytes` of `dtype` into `out` in parallel. Returns
/// false, leaving `out` alone, for a type it does not know or bytes that do
/// not fit `out`; the caller then takes candle's one-thread path.
pub(super) fn in_parallel(dtype: GgmlDType, bytes: &[u8], out: &mut [f32]) -> bool {
    match dtype {
        GgmlDType::F32 => blocks::<f32>(bytes, out),
        GgmlDType::F16 => blocks::<f16>(bytes, out),
        GgmlDType::BF16 => blocks::<bf16>(bytes, out),
        GgmlDType::Q4_0 => blocks::<BlockQ4_0>(bytes, out),
        GgmlDType::Q4_1 => blocks::<BlockQ4_1>(bytes, out),
        GgmlDType::Q5_0 => blocks::<BlockQ5_0>(bytes, out),
        GgmlDType::Q5_1 => blocks::<BlockQ5_1>(bytes, out),
        GgmlDType::Q8_0 => blocks::<BlockQ8_0>(bytes, out),
        GgmlDType::Q2K => blocks::<BlockQ2K>(bytes, out),
        GgmlDType::Q3K => blocks::<BlockQ3K>(bytes, out),
        GgmlDType::Q4K => blocks::<BlockQ4K>(bytes, out),
        GgmlDType::Q5K => blocks::<BlockQ5K>(bytes, out),
        GgmlDType::Q6K => blocks::<BlockQ6K>(bytes, out),
        GgmlDType::Q8K => blocks::<BlockQ8K>(bytes, out),
        _ => false,
    }
}

fn blocks<T: GgmlType>(bytes: &[u8], out: &mut [f32]) -> bool {
    // SAFETY: GGUF block types are #[repr(C)] structs of f16/f32/u8/i8/i16
    // fields (or plain floats), for which every bit pattern is a valid
    // value; `align_to` only hands out the correctly aligned middle, and we
    // use it only when nothing is left over on either side.
    let (head, blocks, tail) = unsafe { bytes.align_to::<T>() };
    if !head.is_empty() || !tail.is_empty() || blocks.len() * T::BLCK_SIZE != out.len() {
        return false;
    }
    out.par_chunks_mut(BLOCKS_PER_TASK * T::BLCK_SIZE)
        .zip(blocks.par_chunks(BLOCKS_PER_TASK))
        .for_each(|(values, blocks)| T::to_float(blocks, values));
    true
}
