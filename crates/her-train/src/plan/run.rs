//! The plan of a training run (`her train sft|dpo|kto|rl`), and its
//! refusal when it does not fit.

use std::path::Path;

use crate::error::TrainError;
use crate::lora::Target;
use crate::model::BaseMode;
use crate::settings::TrainConfig;

use super::device::{budget, process_rss_bytes};
use super::fit::Verdict;
use super::formula::{CUDA_CONTEXT_BYTES, PlanDevice, PlanDtype, PlanSettings};
use super::shape::PlanShape;
use super::table::PlanReport;

/// The plan settings of a run of `kind` ("sft", "dpo", "kto", "rl") with
/// `[train]` = `s`: the rows one micro-batch puts through the model.
pub fn run_settings(kind: &str, s: &TrainConfig) -> Result<PlanSettings, TrainError> {
    let batch = s.batch_size.max(1) as usize;
    let batch = match kind {
        // The chosen and the rejected reply of every pair in one pass.
        "dpo" => 2 * batch,
        // KTO's micro-batches hold at least two replies (kto/objective.rs).
        "kto" => batch.max(2),
        _ => batch,
    };
    let targets = s
        .targets
        .iter()
        .map(|t| t.parse::<Target>())
        .collect::<Result<Vec<_>, _>>()?;
    // "cuda" and "cuda:N".
    let device = if s.device.starts_with("cuda") {
        PlanDevice::Cuda
    } else {
        PlanDevice::Cpu
    };
    Ok(PlanSettings {
        batch,
        seq: s.max_seq_len.max(1) as usize,
        rank: s.rank as usize,
        targets,
        dtype: plan_dtype(&s.dtype, device),
        checkpointing: s.activation_checkpointing,
        base: match s.base.as_str() {
            "dequantized" => BaseMode::Dequantized,
            _ => BaseMode::Quantized,
        },
        device,
        rollout_engine: kind == "rl",
    })
}

/// `train.dtype` as the run will resolve it (the plan does not open the
/// device: "auto" on CUDA is planned as bf16).
fn plan_dtype(setting: &str, device: PlanDevice) -> PlanDtype {
    match (setting, device) {
        ("bf16", _) | ("auto", PlanDevice::Cuda) => PlanDtype::Bf16,
        _ => PlanDtype::F32,
    }
}

/// What the process holds besides the training state: on the CPU its
/// resident memory now, on CUDA the context (assumed).
pub fn runtime_bytes(device: PlanDevice) -> u64 {
    match device {
        PlanDevice::Cpu => process_rss_bytes().unwrap_or(0),
        PlanDevice::Cuda => CUDA_CONTEXT_BYTES,
    }
}

/// The plan of a run of `kind` on `model` (its header only) with `s`,
/// against `train.memory_limit_gib` or the device's free memory.
pub fn run_report(kind: &str, model: &Path, s: &TrainConfig) -> Result<PlanReport, TrainError> {
    let shape = PlanShape::from_gguf(model)?;
    let settings = run_settings(kind, s)?;
    let runtime = runtime_bytes(settings.device);
    let budget = budget(settings.device, s.memory_limit_gib);
    Ok(PlanReport::new(shape, settings, runtime, budget))
}

/// Refuses a run whose plan does not fit, before anything loads.
pub fn check_run(kind: &str, model: &Path, s: &TrainConfig) -> Result<(), TrainError> {
    let report = run_report(kind, model, s)?;
    match report.verdict {
        Verdict::DoesNotFit => Err(TrainError::DoesNotFit(Box::new(report))),
        Verdict::Fits | Verdict::Unknown => Ok(()),
    }
}
