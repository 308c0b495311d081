//! PEFT's adapter layout: `adapter_model.safetensors` with
//! `base_model.model.model.layers.N.<module>.lora_A.weight` (r, in) and
//! `lora_B.weight` (out, r), and `adapter_config.json`, so an adapter
//! trained here loads with `PeftModel.from_pretrained` on the HF model.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum PeftError {
    #[error("cannot write '{}': {reason}", path.display())]
    Write { path: PathBuf, reason: String },
}

/// One adapted projection: its layer, its PEFT module name
/// (`self_attn.q_proj`, `mlp.down_proj`, …) and the two factors.
pub struct PeftTensor {
    pub layer: usize,
    pub module: String,
    /// (r, in).
    pub a: Tensor,
    /// (out, r).
    pub b: Tensor,
}

/// The fields PEFT's `LoraConfig` reads, with the values our adapters mean.
#[derive(Debug, Clone, Serialize)]
pub struct PeftConfig {
    pub peft_type: &'static str,
    pub task_type: &'static str,
    pub base_model_name_or_path: String,
    pub r: usize,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    /// Short names as PEFT matches them: `q_proj`, `down_proj`, …
    pub target_modules: Vec<String>,
    pub bias: &'static str,
    pub fan_in_fan_out: bool,
    pub inference_mode: bool,
    pub init_lora_weights: bool,
    pub use_rslora: bool,
    pub use_dora: bool,
    pub modules_to_save: Option<Vec<String>>,
    pub layers_to_transform: Option<Vec<usize>>,
}

impl PeftConfig {
    pub fn new(base_model: &str, r: usize, alpha: f64, dropout: f64, modules: &[String]) -> Self {
        let mut targets: Vec<String> = modules
            .iter()
            .map(|m| m.rsplit('.').next().unwrap_or(m).to_string())
            .collect();
        targets.sort();
        targets.dedup();
        Self {
            peft_type: "LORA",
            task_type: "CAUSAL_LM",
            base_model_name_or_path: base_model.to_string(),
            r,
            lora_alpha: alpha,
            lora_dropout: dropout,
            target_modules: targets,
            bias: "none",
            fan_in_fan_out: false,
            inference_mode: true,
            init_lora_weights: true,
            use_rslora: false,
            use_dora: false,
            modules_to_save: None,
            layers_to_transform: None,
        }
    }
}

/// The safetensors key of a factor ("A" or "B").
pub fn peft_key(layer: usize, module: &str, factor: &str) -> String {
    format!("base_model.model.model.layers.{layer}.{module}.lora_{factor}.weight")
}

/// Writes `adapter_model.safetensors` and `adapter_config.json` into `dir`
/// (each through a temporary file and a rename).
pub fn write(dir: &Path, config: &PeftConfig, tensors: &[PeftTensor]) -> Result<(), PeftError> {
    let fail = |path: &Path, reason: String| PeftError::Write {
        path: path.to_path_buf(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, e.to_string()))?;
    let mut named: HashMap<String, Tensor> = HashMap::new();
    for t in tensors {
        named.insert(peft_key(t.layer, &t.module, "A"), t.a.clone());
        named.insert(peft_key(t.layer, &t.module, "B"), t.b.clone());
    }
    let weights = dir.join("adapter_model.safetensors");
    let tmp = dir.join(".adapter_model.safetensors.partial");
    candle_core::safetensors::save(&named, &tmp).map_err(|e| fail(&tmp, e.to_string()))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, &weights))
        .map_err(|e| fail(&weights, e.to_string()))?;
    let json = serde_json::to_vec_pretty(config).map_err(|e| fail(dir, e.to_string()))?;
    let path = dir.join("adapter_config.json");
    crate::fsutil::write_atomic(&path, &json, true).map_err(|e| fail(&path, e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn keys_and_config_follow_peft() {
        let dir = tempfile::tempdir().unwrap();
        let a = Tensor::zeros((4, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::zeros((16, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        let tensors = vec![PeftTensor {
            layer: 3,
            module: "self_attn.q_proj".into(),
            a,
            b,
        }];
        let config = PeftConfig::new(
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            4,
            8.0,
            0.05,
            &["self_attn.q_proj".into(), "mlp.down_proj".into()],
        );
        write(dir.path(), &config, &tensors).unwrap();
        let loaded = candle_core::safetensors::load(
            dir.path().join("adapter_model.safetensors"),
            &Device::Cpu,
        )
        .unwrap();
        let a = &loaded["base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight"];
        assert_eq!(a.dims(), &[4, 8]);
        let b = &loaded["base_model.model.model.layers.3.self_attn.q_proj.lora_B.weight"];
        assert_eq!(b.dims(), &[16, 4]);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("adapter_config.json")).unwrap())
                .unwrap();
        assert_eq!(json["peft_type"], "LORA");
        assert_eq!(
            json["target_modules"],
            serde_json::json!(["down_proj", "q_proj"])
        );
        assert_eq!(json["r"], 4);
    }
}
