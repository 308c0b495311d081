//! Where training runs: `train.device` resolved to a candle device with a
//! message that says what to do when it cannot be, and the CUDA report
//! `her doctor` prints.
//!
//! Without the `cuda` feature candle's CUDA backend is a stub whose
//! constructor fails, so only the report needs a `cfg`.

use candle_core::{Device, DeviceLocation};

/// The compute capability the CUDA kernels were built for (`CUDA_COMPUTE_CAP`
/// when the `cuda` build ran; candle's build picks the local GPU's otherwise).
pub const BUILT_COMPUTE_CAP: Option<&str> = option_env!("CUDA_COMPUTE_CAP");

/// Whether this binary has the trainer's CUDA backend.
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

/// One CUDA device as the driver describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct CudaDeviceReport {
    pub ordinal: usize,
    pub name: String,
    pub total_bytes: u64,
    pub free_bytes: u64,
    /// (major, minor).
    pub compute: (i32, i32),
}

impl CudaDeviceReport {
    /// bf16 kernels in candle need compute capability 8.0 (Ampere) or newer.
    pub fn supports_bf16(&self) -> bool {
        self.compute.0 >= 8
    }
}

/// What the trainer can do with CUDA in this binary on this machine.
#[derive(Debug, Clone, PartialEq)]
pub enum CudaStatus {
    /// Built without the `cuda-train` feature.
    NotBuilt,
    /// Built with it, but the driver has no device to give (the reason).
    Unavailable(String),
    Devices(Vec<CudaDeviceReport>),
}

/// Asks the CUDA driver for its devices (cheap: no context is kept).
pub fn cuda_status() -> CudaStatus {
    #[cfg(feature = "cuda")]
    {
        use candle_core::cuda_backend::cudarc::driver::CudaContext;
        let count = match CudaContext::device_count() {
            Ok(n) if n > 0 => n as usize,
            Ok(_) => return CudaStatus::Unavailable("the driver reports no CUDA device".into()),
            Err(e) => return CudaStatus::Unavailable(format!("{e:?}")),
        };
        let mut devices = Vec::with_capacity(count);
        for ordinal in 0..count {
            let describe = || -> Result<CudaDeviceReport, String> {
                let ctx = CudaContext::new(ordinal).map_err(|e| format!("{e:?}"))?;
                let (free, total) = ctx.mem_get_info().map_err(|e| format!("{e:?}"))?;
                Ok(CudaDeviceReport {
                    ordinal,
                    name: ctx.name().map_err(|e| format!("{e:?}"))?,
                    total_bytes: total as u64,
                    free_bytes: free as u64,
                    compute: ctx.compute_capability().map_err(|e| format!("{e:?}"))?,
                })
            };
            match describe() {
                Ok(report) => devices.push(report),
                Err(reason) => {
                    return CudaStatus::Unavailable(format!("device {ordinal}: {reason}"));
                }
            }
        }
        CudaStatus::Devices(devices)
    }
    #[cfg(not(feature = "cuda"))]
    {
        CudaStatus::NotBuilt
    }
}

/// Whether candle's bf16 kernels run on `device`: always on the CPU; on a
/// GPU from compute capability 8.0 (Ampere) on.
pub fn has_bf16_kernels(device: &Device) -> bool {
    match device.location() {
        DeviceLocation::Cpu => true,
        DeviceLocation::Cuda { gpu_id } => match cuda_status() {
            CudaStatus::Devices(found) => found
                .get(gpu_id)
                .is_some_and(CudaDeviceReport::supports_bf16),
            _ => false,
        },
        DeviceLocation::Metal { .. } => false,
    }
}

/// `train.device` → a candle device: "cpu", "cuda" (device 0) or "cuda:N".
pub fn train_device(setting: &str) -> Result<Device, String> {
    let ordinal = match setting {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => n,
            _ => {
                return Err(format!(
                    "train.device = '{setting}' is not a device: use 'cpu', 'cuda' or 'cuda:N'"
                ));
            }
        },
    };
    if !CUDA_BUILT {
        return Err(format!(
            "train.device = '{setting}', but this binary was built without CUDA: rebuild with \
             `cargo build --release --features cuda-train` (scripts/setup.sh does it where nvcc is \
             installed), or set train.device = 'cpu'"
        ));
    }
    let no_device = |reason: &dyn std::fmt::Display| {
        format!(
            "train.device = '{setting}': no CUDA device could be opened ({reason}): check \
             `nvidia-smi` and the NVIDIA driver, or set train.device = 'cpu'"
        )
    };
    match cuda_status() {
        CudaStatus::Devices(found) if ordinal >= found.len() => Err(format!(
            "train.device = '{setting}': this machine has {} CUDA device(s) (cuda:0..cuda:{}); \
             pick one of them",
            found.len(),
            found.len().saturating_sub(1)
        )),
        CudaStatus::Unavailable(reason) => Err(no_device(&reason)),
        _ => Device::new_cuda(ordinal).map_err(|e| no_device(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_always_available_and_bad_names_say_what_is_allowed() {
        assert!(train_device("cpu").is_ok_and(|d| d.is_cpu()));
        let err = train_device("gpu").err().unwrap_or_default();
        assert!(err.contains("'cpu', 'cuda' or 'cuda:N'"), "{err}");
        let err = train_device("cuda:x").err().unwrap_or_default();
        assert!(err.contains("not a device"), "{err}");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_build_names_the_feature() {
        for setting in ["cuda", "cuda:1"] {
            let err = train_device(setting).err().unwrap_or_default();
            assert!(err.contains("built without CUDA"), "{err}");
            assert!(err.contains("--features cuda-train"), "{err}");
        }
        assert_eq!(cuda_status(), CudaStatus::NotBuilt);
    }
}
