//! Which implementation of the trainer's ops a pass runs: the fused CPU
//! kernels (`model/ops`, hand-written loops over f32 slices) or the portable
//! set (`model/portable`, candle tensor ops that run on any device).

use candle_core::{DType, Device};

use crate::error::TrainError;

/// `train.kernels` as written in config.toml.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernels {
    /// Fused on the CPU, portable on any other device.
    #[default]
    Auto,
    Fused,
    Portable,
}

/// The op set one pass uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OpPath {
    /// The CPU kernels of `model/ops` (fastest on the CPU, CPU only).
    #[default]
    Fused,
    /// Candle tensor ops with our backward (`model/portable`): any device.
    Portable,
}

impl Kernels {
    pub const NAMES: [&'static str; 3] = ["auto", "fused", "portable"];

    pub fn parse(value: &str) -> Result<Self, TrainError> {
        match value {
            "auto" => Ok(Self::Auto),
            "fused" => Ok(Self::Fused),
            "portable" => Ok(Self::Portable),
            other => Err(TrainError::Input {
                what: "train.kernels",
                detail: format!("'{other}' is not one of auto, fused, portable"),
            }),
        }
    }

    /// The op set for `device` and the compute `dtype`: the fused kernels
    /// exist for the CPU in f32 only.
    pub fn resolve(self, device: &Device, dtype: DType) -> Result<OpPath, TrainError> {
        let fused_fits = device.is_cpu() && dtype == DType::F32;
        match self {
            Self::Auto if fused_fits => Ok(OpPath::Fused),
            Self::Auto | Self::Portable => Ok(OpPath::Portable),
            Self::Fused if fused_fits => Ok(OpPath::Fused),
            Self::Fused if !device.is_cpu() => Err(TrainError::Input {
                what: "train.kernels",
                detail: "'fused' runs on the CPU only; use 'auto' or 'portable' with \
                         train.device = 'cuda'"
                    .into(),
            }),
            Self::Fused => Err(TrainError::Input {
                what: "train.kernels",
                detail: "'fused' computes in f32 only; use 'auto' or 'portable' with \
                         train.dtype = 'bf16', or set train.dtype = 'f32'"
                    .into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_fused_on_the_cpu_and_names_parse() -> Result<(), TrainError> {
        let (cpu, f32) = (Device::Cpu, DType::F32);
        assert_eq!(Kernels::parse("auto")?.resolve(&cpu, f32)?, OpPath::Fused);
        assert_eq!(Kernels::parse("fused")?.resolve(&cpu, f32)?, OpPath::Fused);
        assert_eq!(
            Kernels::parse("portable")?.resolve(&cpu, f32)?,
            OpPath::Portable
        );
        // bf16 is the portable ops' only: auto follows, fused is refused.
        let bf16 = DType::BF16;
        assert_eq!(Kernels::Auto.resolve(&cpu, bf16)?, OpPath::Portable);
        let fused = Kernels::Fused.resolve(&cpu, bf16).map(|_| ());
        assert!(fused.is_err_and(|e| e.to_string().contains("train.dtype = 'f32'")));
        let bad = Kernels::parse("cuda").map(|_| ());
        assert!(bad.is_err_and(|e| e.to_string().contains("auto, fused, portable")));
        Ok(())
    }
}
