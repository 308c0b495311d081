//! `her doctor`: everything that decides whether `her` can run, in one report.

use std::path::Path;
use std::process::ExitCode;

use crate::app::AppContext;
use crate::config::{BackendKind, JudgeKind};
use crate::studio::StudioOrigin;
use her_engine::local::{check_model_file, devices, supports_gpu_offload};

/// The trainer's side: which CUDA devices this binary can train on, or why not.
fn print_training_device() {
    use her_train::device::{BUILT_COMPUTE_CAP, CudaStatus, cuda_status};
    const GIB: f64 = (1u64 << 30) as f64;
    match cuda_status() {
        CudaStatus::Devices(found) => {
            for d in found {
                let built = BUILT_COMPUTE_CAP.map_or_else(String::new, |cap| {
                    format!(", kernels built for compute {cap}")
                });
                println!(
                    "trainer: cuda:{} {}, {:.1} GiB ({:.1} GiB free), compute {}.{}: usable with train.device = \"cuda\"{built}, bf16 {}",
                    d.ordinal,
                    d.name,
                    d.total_bytes as f64 / GIB,
                    d.free_bytes as f64 / GIB,
                    d.compute.0,
                    d.compute.1,
                    if d.supports_bf16() {
                        "yes"
                    } else {
                        "no (needs compute 8.0)"
                    }
                );
            }
        }
        CudaStatus::Unavailable(reason) => {
            println!(
                "trainer: built with CUDA, but no CUDA device can be opened ({reason}); training runs on the CPU"
            );
        }
        CudaStatus::NotBuilt => match nvidia_smi_gpu() {
            Some(gpu) => println!(
                "trainer: GPU present ({gpu}), but this binary has no CUDA: run scripts/setup.sh (it builds with --features cuda where nvcc is installed); training runs on the CPU"
            ),
            None => println!("trainer: CPU (this binary has no CUDA, and no NVIDIA GPU was found)"),
        },
    }
}

/// The first GPU `nvidia-smi` lists (name, memory), if the tool is installed.
fn nvidia_smi_gpu() -> Option<String> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name,memory.total", "--format=csv,noheader"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    // A line of a few dozen bytes; never trust more than that.
    let text = String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(4096)]).into_owned();
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

/// Prints the report; fails (exit 1) when something would stop a chat.
pub fn run(app: &AppContext) -> ExitCode {
    let mut problems = 0usize;
    let config = app.config();

    println!("her-studio {}", env!("CARGO_PKG_VERSION"));
    println!(
        "build: cuda feature {}, cuda-train feature {}, GPU offload {}",
        if cfg!(feature = "cuda") { "on" } else { "off" },
        if cfg!(feature = "cuda-train") {
            "on"
        } else {
            "off"
        },
        if supports_gpu_offload() {
            "available"
        } else {
            "not available"
        }
    );
    println!("devices:");
    for d in devices() {
        println!(
            "  {} [{}] {} ({} MiB total, {} MiB free)",
            d.name,
            d.backend,
            d.description,
            d.memory_total >> 20,
            d.memory_free >> 20
        );
    }

    print_training_device();

    let origin = match app.origin {
        StudioOrigin::Flag => "--studio flag",
        StudioOrigin::Environment => "HER_STUDIO",
        StudioOrigin::CurrentDirectory => "current directory",
        StudioOrigin::UserDataDirectory => "user data directory",
    };
    println!("studio: {} (from the {origin})", app.studio.root.display());

    println!("config (key = value  <- layer that set it):");
    let values = toml::Value::try_from(config).ok();
    for (key, source) in &app.loaded.provenance {
        let value = values
            .as_ref()
            .and_then(|v| lookup(v, key))
            .map_or_else(|| "?".to_string(), display_value);
        println!("  {key} = {value}  <- {source}");
    }

    let model_path = app.model_path();
    println!("model: {}", model_path.display());
    match check_model_file(&model_path) {
        Ok(file) => {
            let types: Vec<String> = file
                .tensor_type_summary()
                .iter()
                .map(|(t, n)| format!("{t} x{n}"))
                .collect();
            println!(
                "  ok: GGUF v{}, {:.1} MB, architecture '{}', file type {}, {:.1} M parameters",
                file.version(),
                file.file_size() as f64 / 1e6,
                file.architecture().unwrap_or("?"),
                file.file_type_name().unwrap_or("unknown"),
                file.parameter_count() as f64 / 1e6
            );
            println!("  tensors: {}", types.join(", "));
            if let Some(ctx) = file.arch_u32("context_length") {
                println!(
                    "  trained context: {ctx} tokens; model.n_ctx = {}",
                    config.model.n_ctx
                );
            }
        }
        // With a server answering, the local model is only needed for training.
        Err(err) if config.backend.kind == BackendKind::Openai => {
            println!("  note: {err} (needed for training and local runs only)");
        }
        Err(err) => {
            problems += 1;
            println!("  PROBLEM: {err}");
        }
    }
    if config.backend.kind == BackendKind::Openai {
        println!(
            "backend: OpenAI-compatible server at {}",
            app.backend_label()
        );
        problems += server_check(app.start_backend());
    }
    if config.judge.kind == JudgeKind::Openai {
        println!("judge: OpenAI-compatible server");
        problems += server_check(app.start_judge());
    }

    println!("folders:");
    let root = &app.studio.root;
    problems += folder("characters", &config.characters_dir(root), false);
    problems += folder("sessions", &config.sessions_dir(root), true);
    problems += folder("models", &config.models_dir(root), false);
    if let Some(log) = config.log_file(root) {
        println!("  log file: {}", log.display());
    }

    if problems == 0 {
        println!("all checks passed");
        ExitCode::SUCCESS
    } else {
        println!("{problems} problem(s) found");
        ExitCode::FAILURE
    }
}

/// Floats come from f32 settings: show them as f32 (0.7, not 0.699999988).
/// A URL is shown without its credentials (`backend.base_url` may hold
/// `user:password@`).
fn display_value(value: &toml::Value) -> String {
    match value {
        toml::Value::Float(f) => format!("{}", *f as f32),
        toml::Value::String(s) if s.contains("://") => {
            toml::Value::String(her_engine::remote::redact(s)).to_string()
        }
        other => other.to_string(),
    }
}

fn lookup<'a>(value: &'a toml::Value, dotted: &str) -> Option<&'a toml::Value> {
    dotted.split('.').try_fold(value, |v, part| v.get(part))
}

/// Reports one folder; returns 1 when it is unusable.
fn folder(label: &str, path: &Path, must_write: bool) -> usize {
    if !path.is_dir() {
        // Sessions are created on first save; a missing one is only a note.
        let severity = if must_write { "note" } else { "PROBLEM" };
        println!("  {label}: {} — {severity}: does not exist", path.display());
        return usize::from(!must_write);
    }
    let entries = std::fs::read_dir(path).map(|d| d.count());
    let readable = entries.is_ok();
    let writable = probe_write(path);
    let ok = readable && (writable || !must_write);
    println!(
        "  {label}: {} — {}{}{}",
        path.display(),
        if readable { "readable" } else { "NOT readable" },
        if writable {
            ", writable"
        } else {
            ", not writable"
        },
        entries
            .map(|n| format!(", {n} entries"))
            .unwrap_or_default()
    );
    usize::from(!ok)
}

fn probe_write(dir: &Path) -> bool {
    let probe = dir.join(format!(".her-doctor-{}", std::process::id()));
    let ok = std::fs::write(&probe, b"").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

/// Connects to a server backend and says what it serves; 1 on failure.
fn server_check(backend: Result<Box<dyn her_engine::Backend>, her_engine::EngineError>) -> usize {
    match backend {
        Ok(backend) => {
            let info = backend.model_info();
            println!(
                "  ok: serves '{}' ({}), context {} tokens",
                info.name, info.file_type, info.n_ctx
            );
            0
        }
        Err(err) => {
            println!("  PROBLEM: {err}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_credentials() {
        let url = toml::Value::String("http://alice:hunter2@gpu-box:8000/v1".into());
        assert_eq!(display_value(&url), "\"http://gpu-box:8000/v1\"");
        let plain = toml::Value::String("sessions".into());
        assert_eq!(display_value(&plain), "\"sessions\"");
    }
}
