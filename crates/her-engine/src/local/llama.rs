//! Process-wide llama.cpp set-up: one backend per process, logs into tracing.

use std::sync::OnceLock;

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::{LogOptions, send_logs_to_tracing};

use crate::{DeviceInfo, EngineError};

static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();

/// The llama.cpp backend, initialised on first use. llama.cpp allows one
/// initialisation per process, and several engines (tests, bench) share it.
pub fn backend() -> Result<&'static LlamaBackend, EngineError> {
    BACKEND
        .get_or_init(|| {
            // Before init: llama.cpp prints to stderr by default, and the TUI owns the terminal.
            send_logs_to_tracing(LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|reason| EngineError::ModelLoad {
            path: Default::default(),
            reason: format!("llama.cpp backend failed to start: {reason}"),
        })
}

/// The compute devices llama.cpp sees (CPU always; CUDA with the `cuda` feature).
pub fn devices() -> Vec<DeviceInfo> {
    llama_cpp_2::list_llama_ggml_backend_devices()
        .into_iter()
        .map(|d| DeviceInfo {
            name: d.name,
            description: d.description,
            backend: d.backend,
            memory_total: d.memory_total,
            memory_free: d.memory_free,
        })
        .collect()
}

/// Whether this build can offload layers to a GPU.
pub fn supports_gpu_offload() -> bool {
    backend().map(|b| b.supports_gpu_offload()).unwrap_or(false)
}
