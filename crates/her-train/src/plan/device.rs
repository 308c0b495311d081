//! How much memory the training device has for a run.

use std::io::Read;

use super::fit::Budget;
use super::formula::PlanDevice;

const GIB: f64 = (1u64 << 30) as f64;
/// /proc/meminfo and /proc/self/status are a few KiB.
const PROC_READ_LIMIT: u64 = 64 << 10;

/// A `kB` field of a /proc file, in bytes; `None` off Linux or when the
/// file or field is missing.
fn proc_kb(path: &str, field: &str) -> Option<u64> {
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(PROC_READ_LIMIT)
        .read_to_string(&mut text)
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// The kernel's estimate of memory available to a new workload
/// (MemAvailable).
pub fn cpu_available_bytes() -> Option<u64> {
    proc_kb("/proc/meminfo", "MemAvailable")
}

/// This process's resident memory (VmRSS).
pub fn process_rss_bytes() -> Option<u64> {
    proc_kb("/proc/self/status", "VmRSS")
}

/// Free memory of CUDA device `ordinal`, or `None` when this build has no
/// CUDA support (candle's `Device::new_cuda` says so without the feature)
/// or no device opens.
pub fn cuda_free_bytes(ordinal: usize) -> Option<u64> {
    let device = candle_core::Device::new_cuda(ordinal).ok()?;
    cuda_mem_free(&device)
}

#[cfg(feature = "cuda")]
fn cuda_mem_free(device: &candle_core::Device) -> Option<u64> {
    let cuda = device.as_cuda_device().ok()?;
    let (free, _total) = cuda.cuda_stream().context().mem_get_info().ok()?;
    Some(free as u64)
}

/// Without the feature no CUDA device is ever opened.
#[cfg(not(feature = "cuda"))]
fn cuda_mem_free(_device: &candle_core::Device) -> Option<u64> {
    None
}

/// The budget of a run: `limit_gib` when above 0 (`train.memory_limit_gib`
/// or `--memory-gib`), else the device's free memory. On the CPU that is
/// MemAvailable plus this process's own resident memory, which the plan
/// counts as its runtime term.
pub fn budget(device: PlanDevice, limit_gib: f64) -> Budget {
    if limit_gib > 0.0 {
        return Budget {
            bytes: Some((limit_gib * GIB) as u64),
            source: format!("train.memory_limit_gib = {limit_gib}"),
        };
    }
    match device {
        PlanDevice::Cpu => match cpu_available_bytes() {
            Some(free) => Budget {
                bytes: Some(free + process_rss_bytes().unwrap_or(0)),
                source: "MemAvailable + this process".into(),
            },
            None => Budget {
                bytes: None,
                source: "unknown (no /proc/meminfo): set train.memory_limit_gib".into(),
            },
        },
        PlanDevice::Cuda => match cuda_free_bytes(0) {
            Some(free) => Budget {
                bytes: Some(free),
                source: "free memory of CUDA device 0".into(),
            },
            None => Budget {
                bytes: None,
                source: "unknown (no CUDA device in this build or machine): pass --memory-gib"
                    .into(),
            },
        },
    }
}
