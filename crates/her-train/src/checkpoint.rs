//! Checkpoints: the LoRA weights, the optimizer moments and the loop's
//! position, written as one folder that appears whole or not at all
//! (written under a temporary name, synced, then renamed).

use her_core::fsutil::IoError;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("'{}': {reason}", path.display())]
    Bad { path: PathBuf, reason: String },
    #[error(transparent)]
    NonFinite(#[from] super::guard::NonFiniteWrite),
    #[error(transparent)]
    Read(#[from] her_core::fsutil::read::ReadError),
}

/// Where the loop stands; with the seed, enough to continue exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopState {
    /// Optimizer steps done.
    pub step: u64,
    /// Losses of every step so far (the run's curve continues from here);
    /// NaN for a skipped, non-finite step (`null` in the file).
    #[serde(with = "curve")]
    pub losses: Vec<f64>,
    /// sha256 of the run's settings: resuming with other settings is refused.
    pub settings_sha256: String,
    /// AdamW updates taken (its bias correction counts them): fewer than
    /// `step` when steps were skipped, more when RL updates several times
    /// per step. Missing in checkpoints written before it was recorded.
    #[serde(default)]
    pub optimizer_steps: Option<u64>,
}

/// JSON has no NaN: a skipped step's loss is written as `null` and read
/// back as NaN.
mod curve {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(losses: &[f64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(losses.iter().map(|l| l.is_finite().then_some(*l)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        let losses = Vec::<Option<f64>>::deserialize(d)?;
        Ok(losses.into_iter().map(|l| l.unwrap_or(f64::NAN)).collect())
    }
}

const WEIGHTS: &str = "lora.safetensors";
const OPTIMIZER: &str = "optimizer.safetensors";
const STATE: &str = "state.json";

fn bad(path: &Path, reason: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Bad {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The folder of the checkpoint at `step`.
pub fn dir(checkpoints: &Path, step: u64) -> PathBuf {
    checkpoints.join(format!("step-{step:06}"))
}

/// Writes `checkpoints/step-NNNNNN/` atomically and returns its path;
/// refuses (writing nothing) when a tensor holds NaN or infinite values.
pub fn save(
    checkpoints: &Path,
    lora: &HashMap<String, Tensor>,
    optimizer: &HashMap<String, Tensor>,
    state: &LoopState,
) -> Result<PathBuf, CheckpointError> {
    let done = dir(checkpoints, state.step);
    let name = done
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut named: Vec<(&String, &Tensor)> = lora.iter().chain(optimizer).collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    super::guard::ensure_finite(&done, named.into_iter().map(|(n, t)| (n.as_str(), t)))?;
    std::fs::create_dir_all(checkpoints).map_err(IoError::at("create", checkpoints))?;
    let tmp = checkpoints.join(format!(".{name}.partial"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(IoError::at("remove", &tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(IoError::at("create", &tmp))?;
    candle_core::safetensors::save(lora, tmp.join(WEIGHTS)).map_err(|e| bad(&tmp, e))?;
    candle_core::safetensors::save(optimizer, tmp.join(OPTIMIZER)).map_err(|e| bad(&tmp, e))?;
    let json = serde_json::to_vec_pretty(state).map_err(|e| bad(&tmp, e))?;
    std::fs::write(tmp.join(STATE), json).map_err(IoError::at("write", &tmp))?;
    for file in [WEIGHTS, OPTIMIZER, STATE] {
        sync(&tmp.join(file))?;
    }
    if done.exists() {
        std::fs::remove_dir_all(&done).map_err(IoError::at("replace", &done))?;
    }
    std::fs::rename(&tmp, &done).map_err(IoError::at("rename", &tmp))?;
    sync(checkpoints)?;
    Ok(done)
}

fn sync(path: &Path) -> Result<(), CheckpointError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(IoError::at("sync", path))?;
    Ok(())
}

/// The newest complete checkpoint under `checkpoints`, if any (partial
/// folders of a run killed while saving are ignored).
pub fn latest(checkpoints: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(checkpoints).ok()?;
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("step-"))
                && p.join(STATE).is_file()
        })
        .max()
}

/// What a checkpoint folder holds.
pub struct Loaded {
    pub lora: HashMap<String, Tensor>,
    pub optimizer: HashMap<String, Tensor>,
    pub state: LoopState,
}

pub fn load(dir: &Path, device: &Device) -> Result<Loaded, CheckpointError> {
    let text =
        her_core::fsutil::read::text(&dir.join(STATE), her_core::fsutil::read::Kind::RunRecord)?;
    let state: LoopState = serde_json::from_str(&text).map_err(|e| bad(&dir.join(STATE), e))?;
    let lora = candle_core::safetensors::load(dir.join(WEIGHTS), device)
        .map_err(|e| bad(&dir.join(WEIGHTS), e))?;
    let optimizer = candle_core::safetensors::load(dir.join(OPTIMIZER), device)
        .map_err(|e| bad(&dir.join(OPTIMIZER), e))?;
    Ok(Loaded {
        lora,
        optimizer,
        state,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn saves_whole_folders_and_finds_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let cps = dir.path().join("checkpoints");
        let t = |v: f32| Tensor::from_slice(&[v, v + 1.0], 2, &Device::Cpu).unwrap();
        let lora: HashMap<String, Tensor> = [("a".to_string(), t(1.0))].into();
        let opt: HashMap<String, Tensor> = [("a.exp_avg".to_string(), t(2.0))].into();
        for step in [2, 10] {
            let mut losses = vec![1.5; step as usize];
            // A skipped step's NaN survives the JSON round trip.
            losses[1] = f64::NAN;
            let state = LoopState {
                step,
                losses,
                settings_sha256: "s".into(),
                optimizer_steps: Some(step - 1),
            };
            save(&cps, &lora, &opt, &state).unwrap();
        }
        // A run killed while saving leaves a partial folder: never picked.
        std::fs::create_dir_all(cps.join(".step-000011.partial")).unwrap();
        std::fs::create_dir_all(cps.join("step-000012")).unwrap();
        let newest = latest(&cps).unwrap();
        assert!(newest.ends_with("step-000010"));
        let loaded = load(&newest, &Device::Cpu).unwrap();
        assert_eq!(loaded.state.step, 10);
        assert_eq!(loaded.state.optimizer_steps, Some(9));
        assert!(loaded.state.losses[1].is_nan() && loaded.state.losses[2] == 1.5);
        assert_eq!(loaded.lora["a"].to_vec1::<f32>().unwrap(), vec![1.0, 2.0]);
        assert_eq!(
            loaded.optimizer["a.exp_avg"].to_vec1::<f32>().unwrap(),
            vec![2.0, 3.0]
        );
        // Non-finite weights or moments are never written.
        let nan: HashMap<String, Tensor> = [("a".to_string(), t(f32::NAN))].into();
        let state = LoopState {
            step: 20,
            losses: Vec::new(),
            settings_sha256: "s".into(),
            optimizer_steps: None,
        };
        let err = save(&cps, &nan, &opt, &state).unwrap_err().to_string();
        assert!(err.contains("step-000020") && err.contains("'a'"), "{err}");
        assert!(!cps.join("step-000020").exists() && !cps.join(".step-000020.partial").exists());
        let inf: HashMap<String, Tensor> = [("a.exp_avg".to_string(), t(f32::INFINITY))].into();
        assert!(save(&cps, &lora, &inf, &state).is_err());
        assert!(latest(&cps).unwrap().ends_with("step-000010"));
    }
}
