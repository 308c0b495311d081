//! Checking model and adapter files before llama.cpp sees them, and loading.
//!
//! llama.cpp reports most load failures only in its log and returns null, so
//! the header is inspected first to give the user an actionable message.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use sha2::{Digest, Sha256};

use her_core::hashing::hex;

use super::{LocalEngineOptions, llama};
use crate::{ChatTemplateFamily, EngineError, ModelInfo};
use her_gguf::GgufFile;

/// Decoder-only text architectures her-studio runs and trains (the llama
/// family first; others load in llama.cpp the same way).
pub const SUPPORTED_ARCHITECTURES: &[&str] = &[
    "llama", "qwen2", "qwen3", "qwen2moe", "qwen3moe", "mistral", "mistral3", "gemma", "gemma2",
    "gemma3", "phi3", "granite", "olmo2", "smollm3",
];

pub struct Loaded {
    pub model: LlamaModel,
    pub info: ModelInfo,
}

/// Checks that `path` is a complete GGUF model of a supported architecture.
pub fn check_model_file(path: &Path) -> Result<GgufFile, EngineError> {
    // Something that is there but not a file (a FIFO, a device) is refused
    // by `inspect` with what it is; only a missing path is "missing".
    if !path.exists() {
        return Err(EngineError::ModelMissing {
            path: path.to_path_buf(),
        });
    }
    let file = her_gguf::inspect(path)?;
    if file.get_str("general.type") == Some("adapter") {
        return Err(EngineError::BadModelFile(format!(
            "'{}' is a LoRA adapter, not a model; load it with --adapter or /adapter",
            path.display()
        )));
    }
    let architecture = file.architecture().unwrap_or("").to_string();
    if !SUPPORTED_ARCHITECTURES.contains(&architecture.as_str()) {
        return Err(EngineError::UnsupportedArchitecture {
            path: path.to_path_buf(),
            architecture: if architecture.is_empty() {
                "(none)".into()
            } else {
                architecture
            },
            supported: SUPPORTED_ARCHITECTURES.join(", "),
        });
    }
    Ok(file)
}

/// Checks that `path` is a LoRA adapter GGUF made for `architecture`.
pub fn check_adapter_file(path: &Path, architecture: &str) -> Result<(), EngineError> {
    let bad = |reason: String| EngineError::Adapter {
        path: path.to_path_buf(),
        reason,
    };
    if !path.exists() {
        return Err(bad("file does not exist".into()));
    }
    let file = her_gguf::inspect(path).map_err(|e| bad(e.to_string()))?;
    if file.get_str("general.type") != Some("adapter")
        || file.get_str("adapter.type") != Some("lora")
    {
        return Err(bad(
            "not a LoRA adapter GGUF (general.type must be 'adapter', adapter.type 'lora')".into(),
        ));
    }
    match file.architecture() {
        Some(arch) if arch == architecture => Ok(()),
        other => Err(bad(format!(
            "made for architecture '{}', but the model is '{architecture}'",
            other.unwrap_or("(none)")
        ))),
    }
}

pub fn load_model(options: &LocalEngineOptions) -> Result<Loaded, EngineError> {
    let path = &options.model_path;
    let file = check_model_file(path)?;
    let backend = llama::backend()?;
    let gpu = llama::supports_gpu_offload();
    if options.n_gpu_layers > 0 && !gpu {
        // The default asks for every layer, so this is the normal case of a CPU build.
        tracing::info!(
            "model.n_gpu_layers = {} but this build has no GPU backend; running on the CPU (build with --features cuda)",
            options.n_gpu_layers
        );
    }
    let params = LlamaModelParams::default()
        .with_n_gpu_layers(options.n_gpu_layers)
        .with_use_mmap(options.use_mmap);
    let model =
        LlamaModel::load_from_file(backend, path, &params).map_err(|e| EngineError::ModelLoad {
            path: path.clone(),
            reason: if gpu && options.n_gpu_layers > 0 {
                format!(
                    "{e} (with model.n_gpu_layers = {}: if the GPU ran out of memory, lower it; `her doctor` shows the GPU's free memory)",
                    options.n_gpu_layers
                )
            } else {
                e.to_string()
            },
        })?;
    let n_layer = model.n_layer();
    let offloaded = offloaded_layers(options, n_layer);
    let info = ModelInfo {
        path: path.clone(),
        name: file
            .get_str("general.name")
            .map(str::to_string)
            .unwrap_or_else(|| file_stem(path)),
        fingerprint: fingerprint(path).map_err(|e| EngineError::ModelLoad {
            path: path.clone(),
            reason: e.to_string(),
        })?,
        architecture: file.architecture().unwrap_or_default().to_string(),
        file_type: file.file_type_name().unwrap_or("unknown").to_string(),
        file_size: file.file_size(),
        n_params: model.n_params(),
        n_layer,
        n_embd: model.n_embd().max(0) as u32,
        n_head: model.n_head(),
        n_head_kv: model.n_head_kv(),
        n_vocab: model.n_vocab().max(0) as u32,
        n_ctx_train: model.n_ctx_train(),
        n_ctx: options.n_ctx,
        chat_template: ChatTemplateFamily::detect(file.get_str("tokenizer.chat_template")),
        devices: llama::devices(),
        n_gpu_layers_requested: options.n_gpu_layers,
        n_gpu_layers_offloaded: offloaded,
        flash_attention: options.flash_attention.enabled(),
        threads: options.effective_threads(),
    };
    tracing::info!(model = %info.name, arch = %info.architecture, n_ctx = info.n_ctx, "model loaded");
    Ok(Loaded { model, info })
}

/// Layers that run on a GPU: none without a GPU backend. llama.cpp counts
/// the output layer too, hence n_layer + 1.
fn offloaded_layers(options: &LocalEngineOptions, n_layer: u32) -> u32 {
    if llama::supports_gpu_offload() {
        options.n_gpu_layers.min(n_layer + 1)
    } else {
        0
    }
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A fast identity for multi-GB files: sha256 of the size and the first and
/// last MiB. Not a content hash; adapters (small) use [`sha256_file`].
pub fn fingerprint(path: &Path) -> std::io::Result<String> {
    const SPAN: u64 = 1 << 20;
    let (mut file, size) = her_core::fsutil::read::open_regular(path)?;
    let mut hasher = Sha256::new();
    hasher.update(size.to_le_bytes());
    let mut buf = vec![0u8; SPAN.min(size) as usize];
    file.read_exact(&mut buf)?;
    hasher.update(&buf);
    if size > SPAN {
        let tail = SPAN.min(size - SPAN);
        file.seek(SeekFrom::Start(size - tail))?;
        buf.resize(tail as usize, 0);
        file.read_exact(&mut buf)?;
        hasher.update(&buf);
    }
    Ok(hex(&hasher.finalize()))
}

/// sha256 of a whole file, as lowercase hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let (mut file, _) = her_core::fsutil::read::open_regular(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

/// Adapters are cached by canonical path so `./a.gguf` and `a.gguf` are one.
pub fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}
