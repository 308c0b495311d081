//! `her train plan` and `--plan` on every train command: the memory plan,
//! printed; nothing loads but the GGUF's header.

use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::app::AppContext;
use crate::cli::PlanArgs;
use her_train::plan::{
    NAMED_SHAPES, PlanReport, PlanShape, device, run_report, run_settings, runtime_bytes,
};
use her_train::settings::TrainConfig;

/// `her train sft|dpo|kto|rl --plan`: the plan of the run these settings
/// would start, as its refusal would print it.
pub fn run_plan(app: &AppContext, kind: &str) -> anyhow::Result<ExitCode> {
    let model = app.model_path();
    her_engine::local::check_model_file(&model)?;
    println!("{}", run_report(kind, &model, &app.config().train)?);
    Ok(ExitCode::SUCCESS)
}

/// `her train plan`: [train] with the flags' overrides, on a GGUF's header
/// or a named shape.
pub fn plan(app: &AppContext, args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let train = overridden(&app.config().train, args)?;
    her_train::train_loop::trainer::lora_spec(&train)?;
    let settings = run_settings("sft", &train)?;
    let shape = match &args.shape {
        Some(name) => PlanShape::named(name, args.bpw).with_context(|| {
            format!(
                "--shape '{name}' --bpw {}: the shapes are {} and bits per weight must be positive",
                args.bpw,
                NAMED_SHAPES.join(", ")
            )
        })?,
        None => {
            let model = args.model.clone().unwrap_or_else(|| app.model_path());
            her_engine::local::check_model_file(&model)?;
            PlanShape::from_gguf(&model)?
        }
    };
    let runtime = runtime_bytes(settings.device);
    let budget = device::budget(settings.device, train.memory_limit_gib);
    println!("{}", PlanReport::new(shape, settings, runtime, budget));
    Ok(ExitCode::SUCCESS)
}

/// `[train]` with the flags that were given.
fn overridden(train: &TrainConfig, args: &PlanArgs) -> anyhow::Result<TrainConfig> {
    let mut t = train.clone();
    if let Some(device) = &args.device {
        if !matches!(device.as_str(), "cpu" | "cuda") {
            bail!("--device '{device}': use cpu or cuda");
        }
        t.device.clone_from(device);
    }
    if let Some(base) = &args.base {
        if !matches!(base.as_str(), "quantized" | "dequantized") {
            bail!("--base '{base}': use quantized or dequantized");
        }
        t.base.clone_from(base);
    }
    if let Some(gib) = args.memory_gib {
        if !(gib.is_finite() && gib >= 0.0) {
            bail!("--memory-gib '{gib}': use a number of GiB ≥ 0 (0 = the device's free memory)");
        }
        t.memory_limit_gib = gib;
    }
    for (flag, value, field) in [
        ("--batch", args.batch, &mut t.batch_size),
        ("--seq", args.seq, &mut t.max_seq_len),
        ("--rank", args.rank, &mut t.rank),
    ] {
        if let Some(v) = value {
            if v == 0 {
                bail!("{flag} must be at least 1");
            }
            *field = v;
        }
    }
    if let Some(targets) = &args.targets {
        t.targets.clone_from(targets);
    }
    if let Some(on) = args.checkpointing {
        t.activation_checkpointing = on;
    }
    // Unset: train.dtype ("auto" plans bf16 on cuda, f32 on the CPU).
    if let Some(dtype) = &args.dtype {
        if !matches!(dtype.as_str(), "f32" | "bf16") {
            bail!("--dtype '{dtype}': use f32 or bf16");
        }
        t.dtype.clone_from(dtype);
    }
    Ok(t)
}
