//! What every training loop shares: the model with its LoRA, the named
//! parameters, AdamW and its schedule, the run folder, checkpoints that
//! resume exactly, and the export of both adapter formats.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, Var};

use super::checkpoint::{self, LoopState};
use super::data::Batch;
use super::lora::{LoraParam, LoraSpec, write_lora_gguf};
use super::model::{BaseMode, TrainModel};
use super::optim::{AdamW, AdamWConfig, Schedule};
use super::peft::{PeftConfig, PeftTensor};
use super::run::RunDir;
use super::sft::SftError;
use crate::config::TrainConfig;

/// Optimizer steps of a run: `train.max_steps` when set, else the epochs
/// over `steps_per_epoch`.
pub fn total_steps(s: &TrainConfig, steps_per_epoch: u64) -> u64 {
    if s.max_steps > 0 {
        u64::from(s.max_steps)
    } else {
        u64::from(s.epochs) * steps_per_epoch
    }
}

/// The hash a checkpoint is tied to: everything that shaped the run
/// (settings, model, data, starting adapter), so `--resume` refuses a
/// checkpoint made from something else.
pub fn settings_sha256(shaped_by: &impl serde::Serialize) -> String {
    crate::hashing::sha256_hex(
        serde_json::to_string(shaped_by)
            .unwrap_or_default()
            .as_bytes(),
    )
}

pub struct Trainer {
    pub model: TrainModel,
    pub spec: LoraSpec,
    pub lora: Vec<LoraParam>,
    /// `blk.N.<module>.weight.lora_a|lora_b` → the trainable tensor.
    pub params: Vec<(String, Var)>,
    pub optimizer: AdamW,
    pub schedule: Schedule,
    pub run: RunDir,
    pub device: Device,
    pub settings_sha256: String,
}

impl Trainer {
    /// Loads the base, attaches fresh LoRA factors (or the ones of
    /// `init_adapter`, to continue from an SFT adapter) and sets up AdamW.
    pub fn new(
        model_path: &Path,
        settings: &TrainConfig,
        init_adapter: Option<&Path>,
        run: RunDir,
        total_steps: u64,
        settings_sha256: String,
    ) -> Result<Self, SftError> {
        let device = super::sft::device(settings)?;
        let mode = if settings.base == "dequantized" {
            BaseMode::Dequantized
        } else {
            BaseMode::Quantized
        };
        super::memory::use_one_malloc_arena();
        let mut model = TrainModel::load(model_path, mode, &device)?;
        let spec = match init_adapter {
            Some(path) => {
                let mut spec = model.load_lora_gguf(path)?;
                spec.dropout = settings.dropout;
                spec
            }
            None => {
                let spec = super::sft::lora_spec(settings)?;
                model.attach_lora(&spec, u64::from(settings.seed))?;
                spec
            }
        };
        model.set_activation_checkpointing(settings.activation_checkpointing);
        let lora = model.lora_params();
        let params = super::sft::named_params(&lora);
        let optimizer = AdamW::new(
            params.clone(),
            AdamWConfig {
                lr: settings.learning_rate,
                weight_decay: settings.weight_decay,
                ..AdamWConfig::default()
            },
        )?;
        let schedule = Schedule {
            peak: settings.learning_rate,
            warmup_steps: u64::from(settings.warmup_steps),
            total_steps,
            floor: settings.lr_floor,
        };
        Ok(Self {
            model,
            spec,
            lora,
            params,
            optimizer,
            schedule,
            run,
            device,
            settings_sha256,
        })
    }

    /// Restores the newest checkpoint: returns the step and loss curve to
    /// continue from, or `None` when there is none.
    pub fn restore(&mut self) -> Result<Option<(u64, Vec<f64>)>, SftError> {
        let Some(dir) = checkpoint::latest(&self.run.checkpoints()) else {
            return Ok(None);
        };
        let loaded = checkpoint::load(&dir, &self.device)?;
        if loaded.state.settings_sha256 != self.settings_sha256 {
            return Err(SftError::Setup(format!(
                "'{}' was made with other settings, model or data; start a new run (or restore them)",
                dir.display()
            )));
        }
        for (name, var) in &self.params {
            let t = loaded.lora.get(name).ok_or_else(|| {
                SftError::Setup(format!("'{}' has no tensor '{name}'", dir.display()))
            })?;
            var.set(t)?;
        }
        self.optimizer
            .load_state(&loaded.optimizer, loaded.state.step)?;
        let finished = loaded.state.step >= self.schedule.total_steps;
        self.run.truncate_metrics(loaded.state.step, finished)?;
        Ok(Some((loaded.state.step, loaded.state.losses)))
    }

    /// Clips the accumulated gradients and takes one AdamW step at the
    /// schedule's rate for `step`; returns (norm before clipping, lr).
    pub fn update(
        &mut self,
        grads: &mut super::optim::Accumulator,
        step: u64,
        max_grad_norm: f64,
    ) -> Result<(f64, f64), SftError> {
        let norm = grads.clip(max_grad_norm)?;
        let lr = self.schedule.lr(step);
        self.optimizer.step(grads, lr)?;
        Ok((norm, lr))
    }

    pub fn save_checkpoint(&self, step: u64, losses: &[f64]) -> Result<PathBuf, SftError> {
        let weights: HashMap<String, Tensor> = self
            .params
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        let state = LoopState {
            step,
            losses: losses.to_vec(),
            settings_sha256: self.settings_sha256.clone(),
        };
        Ok(checkpoint::save(
            &self.run.checkpoints(),
            &weights,
            &self.optimizer.state(),
            &state,
        )?)
    }

    /// Writes `adapter.gguf` and `peft/`; returns their paths.
    pub fn export(&self, base_model: &Path) -> Result<(PathBuf, PathBuf), SftError> {
        let arch = self.model.shape.arch.as_str();
        write_lora_gguf(&self.run.adapter_gguf(), arch, &self.spec, &self.lora)?;
        let tensors: Vec<PeftTensor> = self
            .lora
            .iter()
            .map(|p| PeftTensor {
                layer: p.layer,
                module: p.target.peft_name().to_string(),
                a: p.a.as_tensor().clone(),
                b: p.b.as_tensor().clone(),
            })
            .collect();
        let modules: Vec<String> = self
            .spec
            .targets
            .iter()
            .map(|t| t.peft_name().to_string())
            .collect();
        let config = PeftConfig::new(
            &base_model.display().to_string(),
            self.spec.rank,
            self.spec.alpha,
            self.spec.dropout,
            &modules,
        );
        super::peft::write(&self.run.peft_dir(), &config, &tensors)?;
        Ok((self.run.adapter_gguf(), self.run.peft_dir()))
    }

    /// A batch as (ids, labels) tensors on the trainer's device.
    pub fn tensors(&self, batch: &Batch) -> Result<(Tensor, Tensor), SftError> {
        let ids = Tensor::from_slice(&batch.ids, (batch.rows, batch.cols), &self.device)?;
        let labels = Tensor::from_slice(&batch.labels, (batch.rows, batch.cols), &self.device)?;
        Ok((ids, labels))
    }
}
