//! What every training loop shares: the model with its LoRA, the named
//! parameters, AdamW and its schedule, the run folder, checkpoints that
//! resume exactly, and the export of both adapter formats.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};

use crate::checkpoint::{self, LoopState};
use crate::data::Batch;
use crate::error::JobError;
use crate::guard::{Diverged, NonFiniteGuard, StepUpdate};
use crate::lora::{LoraParam, LoraSpec, Target, write_lora_gguf};
use crate::model::{BaseMode, Kernels, LoadOptions, OpPath, Precision, TrainModel, precision};
use crate::optim::{AdamW, AdamWConfig, Schedule};
use crate::run::RunDir;
use crate::settings::TrainConfig;

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
    her_core::hashing::sha256_hex(
        serde_json::to_string(shaped_by)
            .unwrap_or_default()
            .as_bytes(),
    )
}

pub fn lora_spec(settings: &TrainConfig) -> Result<LoraSpec, JobError> {
    let targets = settings
        .targets
        .iter()
        .map(|t| t.parse::<Target>())
        .collect::<Result<Vec<_>, _>>()?;
    let spec = LoraSpec {
        rank: settings.rank as usize,
        alpha: settings.alpha,
        dropout: settings.dropout,
        targets,
    };
    spec.validate()?;
    Ok(spec)
}

pub fn device(settings: &TrainConfig) -> Result<Device, JobError> {
    crate::device::train_device(&settings.device).map_err(JobError::Setup)
}

/// The compute dtype `train.dtype` picks for `device`, and the op set
/// `train.kernels` picks for both.
pub fn compute(settings: &TrainConfig, device: &Device) -> Result<(DType, OpPath), JobError> {
    let dtype = Precision::parse(&settings.dtype)?.resolve(device)?;
    let path = Kernels::parse(&settings.kernels)?.resolve(device, dtype)?;
    Ok((dtype, path))
}

/// Names of the trainable tensors, as in the adapter GGUF.
pub fn named_params(params: &[LoraParam]) -> Vec<(String, Var)> {
    let mut out = Vec::with_capacity(params.len() * 2);
    for p in params {
        let base = format!("blk.{}.{}.weight", p.layer, p.target.gguf_name());
        out.push((format!("{base}.lora_a"), p.a.clone()));
        out.push((format!("{base}.lora_b"), p.b.clone()));
    }
    out
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
    max_grad_norm: f64,
    nonfinite: NonFiniteGuard,
    /// `train.hf_base_model`: the PEFT export's base id when set.
    pub hf_base_model: String,
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
    ) -> Result<Self, JobError> {
        let device = device(settings)?;
        let mode = if settings.base == "dequantized" {
            BaseMode::Dequantized
        } else {
            BaseMode::Quantized
        };
        crate::memory::use_one_malloc_arena();
        let (dtype, path) = compute(settings, &device)?;
        let options = LoadOptions {
            dtype,
            ..LoadOptions::new(&device)
        };
        let mut model = TrainModel::load_with(model_path, mode, &options)?;
        model.set_op_path(path);
        tracing::info!(
            device = %settings.device,
            dtype = precision::dtype_name(dtype),
            kernels = ?path,
            "trainer compute"
        );
        let spec = match init_adapter {
            Some(path) => {
                let mut spec = model.load_lora_gguf(path)?;
                spec.dropout = settings.dropout;
                spec
            }
            None => {
                let spec = lora_spec(settings)?;
                model.attach_lora(&spec, u64::from(settings.seed))?;
                spec
            }
        };
        model.set_activation_checkpointing(settings.activation_checkpointing);
        let lora = model.lora_params();
        let params = named_params(&lora);
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
            max_grad_norm: settings.max_grad_norm,
            nonfinite: NonFiniteGuard::new(settings.max_nonfinite_steps),
            hf_base_model: settings.hf_base_model.clone(),
        })
    }

    /// Restores the newest checkpoint: returns the step and loss curve to
    /// continue from, or `None` when there is none.
    pub fn restore(&mut self) -> Result<Option<(u64, Vec<f64>)>, JobError> {
        let Some(dir) = checkpoint::latest(&self.run.checkpoints()) else {
            return Ok(None);
        };
        let loaded = checkpoint::load(&dir, &self.device)?;
        if loaded.state.settings_sha256 != self.settings_sha256 {
            return Err(JobError::Setup(format!(
                "'{}' was made with other settings, model or data; start a new run (or restore them)",
                dir.display()
            )));
        }
        self.set_weights(&loaded.lora, &dir)?;
        let updates = loaded.state.optimizer_steps.unwrap_or(loaded.state.step);
        self.optimizer.load_state(&loaded.optimizer, updates)?;
        let finished = loaded.state.step >= self.schedule.total_steps;
        self.run.truncate_metrics(loaded.state.step, finished)?;
        Ok(Some((loaded.state.step, loaded.state.losses)))
    }

    /// Puts the LoRA weights of the checkpoint at `step` of this run into
    /// the model (not the optimizer): to export an earlier, better state.
    pub fn load_weights(&self, step: u64) -> Result<(), JobError> {
        let dir = checkpoint::dir(&self.run.checkpoints(), step);
        let loaded = checkpoint::load(&dir, &self.device)?;
        self.set_weights(&loaded.lora, &dir)
    }

    fn set_weights(&self, lora: &HashMap<String, Tensor>, dir: &Path) -> Result<(), JobError> {
        for (name, var) in &self.params {
            let t = lora.get(name).ok_or_else(|| {
                JobError::Setup(format!("'{}' has no tensor '{name}'", dir.display()))
            })?;
            var.set(t)?;
        }
        Ok(())
    }

    /// Clips the accumulated gradients and takes one AdamW step at the
    /// schedule's rate for `lr_step`, unless `loss` or the gradient norm is
    /// NaN or infinite: then nothing changes (weights, moments, AdamW's
    /// step count), a `skipped` line naming `step` (the loop's 1-based
    /// step) goes to metrics.jsonl, and `train.max_nonfinite_steps` such
    /// steps in a row end the run with [`Diverged`].
    pub fn update(
        &mut self,
        grads: &mut crate::optim::Accumulator,
        lr_step: u64,
        step: u64,
        loss: f64,
    ) -> Result<StepUpdate, JobError> {
        let grad_norm = grads.norm()?;
        let lr = self.schedule.lr(lr_step);
        if loss.is_finite() && grad_norm.is_finite() {
            self.nonfinite.finite();
            grads.clip_to(self.max_grad_norm, grad_norm)?;
            self.optimizer.step(grads, lr)?;
            return Ok(StepUpdate {
                grad_norm,
                lr,
                applied: true,
            });
        }
        let (in_a_row, stop) = self.nonfinite.skipped();
        let what = if loss.is_finite() {
            "gradient norm"
        } else {
            "loss"
        };
        tracing::warn!(
            step,
            loss,
            grad_norm,
            in_a_row,
            "non-finite {what}: step skipped"
        );
        self.run.log(&serde_json::json!({
            "kind": "skipped", "step": step, "reason": format!("non-finite {what}"),
            "loss": loss, "grad_norm": grad_norm, "in_a_row": in_a_row,
        }))?;
        if stop {
            return Err(Diverged {
                step,
                in_a_row,
                limit: self.nonfinite.limit(),
                last_good: checkpoint::latest(&self.run.checkpoints()),
            }
            .into());
        }
        Ok(StepUpdate {
            grad_norm,
            lr,
            applied: false,
        })
    }

    /// Copies of the LoRA values as they are now, in `params` order (a
    /// reference policy to come back to with [`Trainer::with_lora`]).
    pub fn snapshot(&self) -> Result<Vec<Tensor>, JobError> {
        Ok(self
            .params
            .iter()
            .map(|(_, v)| v.as_tensor().copy())
            .collect::<Result<_, _>>()?)
    }

    /// Runs `f` with the LoRA set to `values` (from [`Trainer::snapshot`]);
    /// the current values are put back afterwards, also when `f` fails.
    pub fn with_lora<T, E: From<JobError>>(
        &self,
        values: &[Tensor],
        f: impl FnOnce(&Self) -> Result<T, E>,
    ) -> Result<T, E> {
        let saved = self.snapshot()?;
        let set = |values: &[Tensor]| -> Result<(), JobError> {
            for ((_, var), t) in self.params.iter().zip(values) {
                var.set(t)?;
            }
            Ok(())
        };
        set(values)?;
        let result = f(self);
        set(&saved)?;
        result
    }

    pub fn save_checkpoint(&self, step: u64, losses: &[f64]) -> Result<PathBuf, JobError> {
        let weights: HashMap<String, Tensor> = self
            .params
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        let state = LoopState {
            step,
            losses: losses.to_vec(),
            settings_sha256: self.settings_sha256.clone(),
            optimizer_steps: Some(self.optimizer.steps),
        };
        Ok(checkpoint::save(
            &self.run.checkpoints(),
            &weights,
            &self.optimizer.state(),
            &state,
        )?)
    }

    /// Writes `adapter.gguf` (GGUF rows) and `peft/` (Hugging Face rows,
    /// see [`crate::peft::rows`]); returns their paths. Nothing is written
    /// from non-finite weights.
    pub fn export(&self, base_model: &Path) -> Result<(PathBuf, PathBuf), JobError> {
        let named = self.params.iter().map(|(n, v)| (n.as_str(), v.as_tensor()));
        crate::guard::ensure_finite(&self.run.adapter_gguf(), named)?;
        let arch = self.model.shape.arch.as_str();
        write_lora_gguf(&self.run.adapter_gguf(), arch, &self.spec, &self.lora)?;
        crate::peft::export(
            &self.run.peft_dir(),
            base_model,
            &self.hf_base_model,
            &self.model.shape,
            &self.spec,
            &self.lora,
        )?;
        Ok((self.run.adapter_gguf(), self.run.peft_dir()))
    }

    /// A batch as (ids, labels) tensors on the trainer's device.
    pub fn tensors(&self, batch: &Batch) -> Result<(Tensor, Tensor), JobError> {
        let ids = Tensor::from_slice(&batch.ids, (batch.rows, batch.cols), &self.device)?;
        let labels = Tensor::from_slice(&batch.labels, (batch.rows, batch.cols), &self.device)?;
        Ok((ids, labels))
    }
}
