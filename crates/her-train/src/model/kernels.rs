//! Which implementation of the trainer's ops a pass runs: the fused CPU
//! kernels (`model/ops`, hand-written loops over f32 slices) or the portable
//! set (`model/portable`, candle tensor ops that run on any device).

use candle_core::Device;

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

    /// The op set for `device`: the fused kernels exist for the CPU only.
    pub fn resolve(self, device: &Device) -> Result<OpPath, TrainError> {
        match (self, device.is_cpu()) {
            (Self::Auto, true) | (Self::Fused, true) => Ok(OpPath::Fused),
            (Self::Auto, false) | (Self::Portable, _) => Ok(OpPath::Portable),
            (Self::Fused, false) => Err(TrainError::Input {
                what: "train.kernels",
                detail: "'fused' runs on the CPU only; use 'auto' or 'portable' with \
                         train.device = 'cuda'"
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
        let cpu = Device::Cpu;
        assert_eq!(Kernels::parse("auto")?.resolve(&cpu)?, OpPath::Fused);
        assert_eq!(Kernels::parse("fused")?.resolve(&cpu)?, OpPath::Fused);
        assert_eq!(Kernels::parse("portable")?.resolve(&cpu)?, OpPath::Portable);
        let bad = Kernels::parse("cuda").map(|_| ());
        assert!(bad.is_err_and(|e| e.to_string().contains("auto, fused, portable")));
        Ok(())
    }
}
