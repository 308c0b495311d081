//! `her bench gpu-parity`: the trainer's portable path on a CUDA device
//! against the fused CPU path, in f32 and in bf16: the loss, the token
//! log-probs and every LoRA gradient of one step, on the tiny Qwen3, a tiny
//! Qwen2 and the model given, both base modes, checkpointing off and on,
//! the head in blocks as the GPU keeps it. scripts/gpu-check runs it on a
//! GPU machine; it fails when a case is out of bounds. Without a CUDA
//! device it compares the CPU's portable path instead, and says so.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use her_train::model::{BaseMode, HEAD_BLOCK_ROWS};
use her_train::parity::{self, Case, Device, Distance, Setup};

use crate::app::AppContext;
use crate::cli::BenchGpuParityArgs;

pub fn run(app: &AppContext, args: &BenchGpuParityArgs) -> anyhow::Result<()> {
    let model = match &args.model {
        Some(p) => std::path::absolute(p)?,
        None => app.model_path(),
    };
    her_engine::local::check_model_file(&model)?;
    let device = match her_train::device::train_device(&args.device) {
        Ok(device) => device,
        Err(why) => {
            println!("her bench gpu-parity: {why}");
            println!("  comparing the CPU's portable path instead (what CI checks)\n");
            her_train::device::train_device("cpu").map_err(anyhow::Error::msg)?
        }
    };
    let work = std::env::temp_dir()
        .join("her-studio")
        .join(format!("gpu-parity-{}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let result = compare_all(&work, &model, &device);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn compare_all(work: &Path, model: &Path, device: &Device) -> anyhow::Result<()> {
    let models = fixtures(work, model)?;
    println!(
        "  {:<48} {:<20} {:>10} {:>10} {:>10} {:>10}  verdict",
        "case", "against cpu fused f32", "Δloss", "Δlogp", "worst Δg", "‖Δg‖/‖g‖"
    );
    let mut failed = Vec::new();
    for (name, path, size) in &models {
        for case in cases(name, path, *size) {
            let reference = parity::outcome(&case, &Setup::fused_cpu(), false)
                .with_context(|| format!("{}: the CPU reference", case.what))?;
            for (setup, bounds) in parity::device_setups(device) {
                let on_device = Case {
                    // The head in blocks, as the GPU loader keeps it.
                    head_block_rows: Some(HEAD_BLOCK_ROWS),
                    ..case.clone()
                };
                let other = parity::outcome(&on_device, &setup, false)
                    .with_context(|| format!("{}: {}", case.what, setup.label()))?;
                let d = Distance::between(&reference, &other);
                let failures = d.failures(&bounds);
                println!(
                    "  {:<48} {:<20} {:>10.2e} {:>10.2e} {:>10.2e} {:>10.2e}  {}",
                    case.what,
                    setup.label(),
                    d.loss_bounded(),
                    d.logprobs_bounded(),
                    d.worst_grad(),
                    d.grad_relative_l2(),
                    if failures.is_empty() { "ok" } else { "FAILED" }
                );
                if !failures.is_empty() {
                    failed.push(format!(
                        "{} {}: {}",
                        case.what,
                        setup.label(),
                        failures.join("; ")
                    ));
                }
            }
        }
    }
    println!(
        "\n  bounds (relative to max(1, magnitude); crates/her-train/src/parity.rs says why):\n    f32: {}\n    bf16: {}",
        parity::F32_BOUNDS.describe(),
        parity::BF16_BOUNDS.describe()
    );
    if !failed.is_empty() {
        bail!(
            "{} case(s) out of bounds:\n  {}",
            failed.len(),
            failed.join("\n  ")
        );
    }
    println!("  every case within bounds");
    Ok(())
}

/// A model compared: its name, GGUF and batch size (rows, tokens).
type Compared = (String, PathBuf, (usize, usize));

fn fixtures(dir: &Path, model: &Path) -> anyhow::Result<Vec<Compared>> {
    let qwen3 = dir.join("tiny-qwen3.gguf");
    her_gguf::write_tiny_qwen3(&qwen3, 1)?;
    let qwen2 = dir.join("tiny-qwen2.gguf");
    her_gguf::fixture::write_tiny_qwen2(&qwen2, 1)?;
    let name = model
        .file_stem()
        .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    Ok(vec![
        ("tiny qwen3".into(), qwen3, (2, 12)),
        ("tiny qwen2".into(), qwen2, (2, 12)),
        (name, model.to_path_buf(), (2, 16)),
    ])
}

fn cases(name: &str, model: &Path, size: (usize, usize)) -> Vec<Case> {
    let mut out = Vec::new();
    for mode in [BaseMode::Quantized, BaseMode::Dequantized] {
        for checkpointing in [false, true] {
            let what = format!(
                "{name} {} ckpt {}",
                match mode {
                    BaseMode::Quantized => "quantized",
                    BaseMode::Dequantized => "dequantized",
                },
                if checkpointing { "on" } else { "off" }
            );
            out.push(Case {
                mode,
                checkpointing,
                dropout: 0.1,
                ..Case::new(what, model, size)
            });
        }
    }
    out
}
