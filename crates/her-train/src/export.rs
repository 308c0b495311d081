//! Which adapter file a run stands for: its final `adapter.gguf`, or — for a
//! run still going or stopped — its newest checkpoint written out as a LoRA
//! GGUF, so `/adapter` can hot-load a run at any point.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Var};

use super::lora::{LoraParam, Target, write_lora_gguf};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("'{}' is not a LoRA GGUF, a run folder or a checkpoint folder", path.display())]
    NotAnAdapter { path: PathBuf },
    #[error("'{}' has no checkpoint yet: wait for the first one (train.checkpoint_every)", path.display())]
    NoCheckpoint { path: PathBuf },
    #[error("'{}': {reason}", path.display())]
    Bad { path: PathBuf, reason: String },
    #[error(transparent)]
    Read(#[from] her_core::fsutil::read::ReadError),
}

fn bad(path: &Path, reason: impl std::fmt::Display) -> ExportError {
    ExportError::Bad {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The LoRA GGUF to load for `path` (a .gguf file, a run, or a checkpoint).
pub fn adapter_of_run(path: &Path) -> Result<PathBuf, ExportError> {
    if path.is_file() && path.extension().is_some_and(|e| e == "gguf") {
        return Ok(path.to_path_buf());
    }
    if path.join("run.json").is_file() {
        let adapter = path.join("adapter.gguf");
        if adapter.is_file() {
            return Ok(adapter);
        }
        let checkpoint = super::checkpoint::latest(&path.join("checkpoints")).ok_or_else(|| {
            ExportError::NoCheckpoint {
                path: path.to_path_buf(),
            }
        })?;
        return checkpoint_to_gguf(&checkpoint, path);
    }
    // A checkpoint folder: runs/NAME/checkpoints/step-N.
    if let Some(run) = path.parent().and_then(Path::parent)
        && run.join("run.json").is_file()
        && path.join("state.json").is_file()
    {
        return checkpoint_to_gguf(path, run);
    }
    Err(ExportError::NotAnAdapter {
        path: path.to_path_buf(),
    })
}

/// Writes `<checkpoint>/adapter.gguf` from the checkpoint's LoRA factors and
/// the run's settings (rank, alpha, targets) and base architecture.
pub fn checkpoint_to_gguf(checkpoint: &Path, run: &Path) -> Result<PathBuf, ExportError> {
    let out = checkpoint.join("adapter.gguf");
    if out.is_file() {
        return Ok(out);
    }
    let manifest_path = run.join("run.json");
    let bytes =
        her_core::fsutil::read::bytes(&manifest_path, her_core::fsutil::read::Kind::RunRecord)?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(&manifest_path, e))?;
    let settings: crate::settings::TrainConfig =
        serde_json::from_value(manifest["settings"].clone()).map_err(|e| bad(&manifest_path, e))?;
    let model = manifest["model"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| bad(&manifest_path, "names no model"))?;
    let arch = her_gguf::inspect(&model)
        .map_err(|e| bad(&model, e))?
        .architecture()
        .map(str::to_string)
        .ok_or_else(|| bad(&model, "has no general.architecture"))?;
    let spec =
        super::train_loop::trainer::lora_spec(&settings).map_err(|e| bad(&manifest_path, e))?;
    let weights = checkpoint.join("lora.safetensors");
    let tensors =
        candle_core::safetensors::load(&weights, &Device::Cpu).map_err(|e| bad(&weights, e))?;
    let params = params_from_names(&tensors).map_err(|e| bad(&weights, e))?;
    write_lora_gguf(&out, &arch, &spec, &params).map_err(|e| bad(&out, e))?;
    Ok(out)
}

/// One projection's target and its two factors as they are found.
type Factors = (Target, Option<Var>, Option<Var>);

/// `blk.N.<gguf name>.weight.lora_a|lora_b` tensors back into params.
fn params_from_names(
    tensors: &std::collections::HashMap<String, candle_core::Tensor>,
) -> Result<Vec<LoraParam>, String> {
    let mut grouped: BTreeMap<(usize, usize), Factors> = BTreeMap::new();
    for (name, tensor) in tensors {
        let (base, factor) = name
            .rsplit_once('.')
            .ok_or_else(|| format!("unexpected tensor '{name}'"))?;
        let rest = base
            .strip_prefix("blk.")
            .and_then(|r| r.strip_suffix(".weight"))
            .ok_or_else(|| format!("unexpected tensor '{name}'"))?;
        let (layer, module) = rest
            .split_once('.')
            .ok_or_else(|| format!("unexpected tensor '{name}'"))?;
        let layer: usize = layer
            .parse()
            .map_err(|_| format!("bad layer in '{name}'"))?;
        let target =
            Target::from_gguf_name(module).ok_or_else(|| format!("unknown module in '{name}'"))?;
        let var = Var::from_tensor(tensor).map_err(|e| e.to_string())?;
        let entry = grouped
            .entry((layer, target.index()))
            .or_insert((target, None, None));
        match factor {
            "lora_a" => entry.1 = Some(var),
            "lora_b" => entry.2 = Some(var),
            other => return Err(format!("unexpected factor '{other}' in '{name}'")),
        }
    }
    grouped
        .into_iter()
        .map(|((layer, _), (target, a, b))| match (a, b) {
            (Some(a), Some(b)) => Ok(LoraParam {
                layer,
                target,
                a,
                b,
            }),
            _ => Err(format!(
                "layer {layer} {target}: lora_a or lora_b is missing"
            )),
        })
        .collect()
}
