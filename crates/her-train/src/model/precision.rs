//! `train.dtype`: the dtype activations and dequantized weights are
//! computed in. LoRA factors, their gradients, AdamW's state and the loss
//! stay f32 whatever it says (each portable op casts where it meets them).

use candle_core::{DType, Device};

use crate::error::TrainError;

/// `train.dtype` as written in config.toml.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// bf16 on a GPU that has bf16 kernels, f32 everywhere else.
    #[default]
    Auto,
    F32,
    Bf16,
}

impl Precision {
    pub const NAMES: [&'static str; 3] = ["auto", "f32", "bf16"];

    pub fn parse(value: &str) -> Result<Self, TrainError> {
        match value {
            "auto" => Ok(Self::Auto),
            "f32" => Ok(Self::F32),
            "bf16" => Ok(Self::Bf16),
            other => Err(TrainError::Input {
                what: "train.dtype",
                detail: format!("'{other}' is not one of auto, f32, bf16"),
            }),
        }
    }

    /// The compute dtype on `device`. On the CPU bf16 is allowed (it is how
    /// CI checks the GPU's numerics) but never chosen: the fused f32
    /// kernels are much faster there.
    pub fn resolve(self, device: &Device) -> Result<DType, TrainError> {
        let bf16_kernels = crate::device::has_bf16_kernels(device);
        match self {
            Self::F32 => Ok(DType::F32),
            Self::Auto if device.is_cpu() || !bf16_kernels => Ok(DType::F32),
            _ if bf16_kernels => Ok(DType::BF16),
            _ => Err(TrainError::Input {
                what: "train.dtype",
                detail: "'bf16' needs a GPU of compute capability 8.0 (Ampere) or newer; \
                         set train.dtype = 'f32' on this one"
                    .into(),
            }),
        }
    }
}

/// "f32", "bf16", … as `train.dtype` spells them.
pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::BF16 => "bf16",
        DType::F16 => "f16",
        DType::F32 => "f32",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_f32_on_the_cpu_and_bf16_can_be_asked_for() -> Result<(), TrainError> {
        let cpu = Device::Cpu;
        assert_eq!(Precision::parse("auto")?.resolve(&cpu)?, DType::F32);
        assert_eq!(Precision::parse("f32")?.resolve(&cpu)?, DType::F32);
        assert_eq!(Precision::parse("bf16")?.resolve(&cpu)?, DType::BF16);
        let bad = Precision::parse("fp16").map(|_| ());
        assert!(bad.is_err_and(|e| e.to_string().contains("auto, f32, bf16")));
        Ok(())
    }
}
