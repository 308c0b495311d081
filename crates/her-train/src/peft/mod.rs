//! PEFT's adapter layout: `adapter_model.safetensors` with
//! `base_model.model.model.layers.N.<module>.lora_A.weight` (r, in) and
//! `lora_B.weight` (out, r), and `adapter_config.json`, so an adapter
//! trained here loads with `PeftModel.from_pretrained` on the HF model —
//! with llama's q/k rows in Hugging Face's order ([`rows`]) — and a PEFT
//! folder trained elsewhere imports as a LoRA GGUF ([`import`]).

mod adapter_config;
pub mod base_name;
pub mod import;
pub mod rows;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use serde::Serialize;

use crate::lora::{LoraParam, LoraSpec};
use crate::model::ModelShape;
use rows::{RowOrder, permuted_heads, reorder_rows};

#[derive(Debug, thiserror::Error)]
pub enum PeftError {
    #[error("cannot write '{}': {reason}", path.display())]
    Write { path: PathBuf, reason: String },
    /// A file that cannot be used, and why (with the fix).
    #[error("'{}': {detail}", path.display())]
    Bad { path: PathBuf, detail: String },
    #[error("'{}' already exists: pass --force to replace it, or choose another --out", path.display())]
    Exists { path: PathBuf },
    /// The base model's GGUF header (the error names the file).
    #[error(transparent)]
    Gguf(#[from] her_gguf::GgufError),
    #[error(transparent)]
    Read(#[from] her_core::fsutil::read::ReadError),
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

/// Writes the run's LoRA as a PEFT folder for the model of `base_gguf`:
/// q/k `lora_B` rows in Hugging Face's order, `base_model_name_or_path`
/// from `hf_base_model` or the GGUF ([`base_name::hf_base_model`]), and
/// where it came from in the safetensors metadata ([`provenance`]).
pub fn export(
    dir: &Path,
    base_gguf: &Path,
    hf_base_model: &str,
    shape: &ModelShape,
    spec: &LoraSpec,
    params: &[LoraParam],
) -> Result<(), PeftError> {
    let info = her_gguf::inspect(base_gguf)?;
    let tensors = hf_tensors(shape, params).map_err(|detail| PeftError::Bad {
        path: base_gguf.to_path_buf(),
        detail,
    })?;
    let modules: Vec<String> = spec
        .targets
        .iter()
        .map(|t| t.peft_name().to_string())
        .collect();
    let config = PeftConfig::new(
        &base_name::hf_base_model(hf_base_model, &info, base_gguf),
        spec.rank,
        spec.alpha,
        spec.dropout,
        &modules,
    );
    write(dir, &config, &tensors, &provenance(base_gguf, shape))
}

/// The LoRA factors as PEFT holds them: `lora_B` of q and k reordered into
/// Hugging Face's rows where the GGUF permutes them; everything else as is.
pub fn hf_tensors(shape: &ModelShape, params: &[LoraParam]) -> Result<Vec<PeftTensor>, String> {
    params
        .iter()
        .map(|p| {
            let b = p.b.as_tensor();
            let b = match permuted_heads(shape.arch, p.target, shape.n_head, shape.n_head_kv) {
                Some(heads) => reorder_rows(b, heads, RowOrder::Hf)
                    .map_err(|e| format!("layer {} {}: {e}", p.layer, p.target))?,
                None => b.clone(),
            };
            Ok(PeftTensor {
                layer: p.layer,
                module: p.target.peft_name().to_string(),
                a: p.a.as_tensor().clone(),
                b,
            })
        })
        .collect()
}

/// Our own fields, kept in the safetensors `__metadata__` (PEFT ignores it;
/// an unknown key in adapter_config.json makes PEFT warn on every load and
/// advise an upgrade): the GGUF the adapter was trained on and the q/k row
/// order of its `lora_B`.
pub fn provenance(base_gguf: &Path, shape: &ModelShape) -> BTreeMap<String, String> {
    let file = base_gguf
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut meta = BTreeMap::new();
    // What PEFT itself writes; some readers look for it.
    meta.insert("format".to_owned(), "pt".to_owned());
    meta.insert("her_studio.base_gguf".to_owned(), file);
    if let Ok(fingerprint) = her_engine::local::fingerprint(base_gguf) {
        meta.insert("her_studio.base_gguf_fingerprint".to_owned(), fingerprint);
    }
    meta.insert(
        "her_studio.architecture".to_owned(),
        shape.arch.as_str().to_owned(),
    );
    let rows = if rows::qk_rows_permuted(shape.arch) {
        "hf (q/k lora_B un-permuted from the GGUF's order)"
    } else {
        "hf (the GGUF keeps them)"
    };
    meta.insert("her_studio.qk_rows".to_owned(), rows.to_owned());
    meta
}

/// Writes `adapter_model.safetensors` (with `metadata` as its
/// `__metadata__`) and `adapter_config.json` into `dir`, each through a
/// temporary file and a rename.
pub fn write(
    dir: &Path,
    config: &PeftConfig,
    tensors: &[PeftTensor],
    metadata: &BTreeMap<String, String>,
) -> Result<(), PeftError> {
    let fail = |path: &Path, reason: String| PeftError::Write {
        path: path.to_path_buf(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, e.to_string()))?;
    let mut named: BTreeMap<String, &Tensor> = BTreeMap::new();
    for t in tensors {
        named.insert(peft_key(t.layer, &t.module, "A"), &t.a);
        named.insert(peft_key(t.layer, &t.module, "B"), &t.b);
    }
    let weights = dir.join("adapter_model.safetensors");
    let bytes =
        safetensors::tensor::serialize(named, None).map_err(|e| fail(&weights, e.to_string()))?;
    let bytes = with_metadata(&bytes, metadata).map_err(|e| fail(&weights, e))?;
    her_core::fsutil::write_atomic(&weights, &bytes, true)
        .map_err(|e| fail(&weights, e.to_string()))?;
    let json = serde_json::to_vec_pretty(config).map_err(|e| fail(dir, e.to_string()))?;
    let path = dir.join("adapter_config.json");
    her_core::fsutil::write_atomic(&path, &json, true).map_err(|e| fail(&path, e.to_string()))
}

/// Puts `metadata` into a serialized safetensors file as its
/// `__metadata__`, keys in order: the crate writes a HashMap, whose order
/// changes from run to run, and the same adapter must give the same bytes.
fn with_metadata(bytes: &[u8], metadata: &BTreeMap<String, String>) -> Result<Vec<u8>, String> {
    let malformed = || "the serialized safetensors header is malformed".to_string();
    let len_bytes: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(malformed)?;
    let len = usize::try_from(u64::from_le_bytes(len_bytes)).map_err(|_| malformed())?;
    let header = bytes.get(8..8 + len).ok_or_else(malformed)?;
    let header = std::str::from_utf8(header)
        .map_err(|_| malformed())?
        .trim_end();
    let entries = header.strip_prefix('{').ok_or_else(malformed)?;
    let meta = serde_json::to_string(metadata).map_err(|e| e.to_string())?;
    let separator = if entries.trim_start().starts_with('}') {
        ""
    } else {
        ","
    };
    let mut joined = format!("{{\"__metadata__\":{meta}{separator}{entries}").into_bytes();
    // The data must start at a multiple of 8 bytes, as the crate pads it.
    joined.resize(joined.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + joined.len() + bytes.len() - 8 - len);
    out.extend_from_slice(&(joined.len() as u64).to_le_bytes());
    out.extend_from_slice(&joined);
    out.extend_from_slice(&bytes[8 + len..]);
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn metadata_is_written_in_key_order_and_the_file_still_reads() {
        let a = Tensor::ones((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let named = BTreeMap::from([("w".to_string(), &a)]);
        let plain = safetensors::tensor::serialize(named, None).unwrap();
        let metadata: BTreeMap<String, String> = (0..20)
            .map(|i| (format!("k{i:02}"), format!("v{i}")))
            .collect();
        let bytes = with_metadata(&plain, &metadata).unwrap();
        let (_, read) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let got = read.metadata().clone().unwrap();
        assert_eq!(got.len(), 20);
        assert_eq!(got["k07"], "v7");
        let text = String::from_utf8_lossy(&bytes[8..200]).into_owned();
        assert!(
            text.starts_with("{\"__metadata__\":{\"k00\":\"v0\",\"k01\""),
            "{text}"
        );
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let w = file.tensor("w").unwrap();
        assert_eq!(w.shape(), &[2, 3]);
        assert_eq!(w.data(), plain[plain.len() - 24..].to_vec().as_slice());
        assert_eq!((bytes.len() - 8 - 24) % 8, 0);
    }

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
        write(dir.path(), &config, &tensors, &BTreeMap::new()).unwrap();
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
