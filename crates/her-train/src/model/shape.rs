//! Model hyper-parameters read from GGUF metadata (`{arch}.*` keys).

use std::path::Path;

use her_gguf::{GgufFile, GgufValue};

use super::load::candle_dims;
use super::ops::RopeStyle;
use crate::error::TrainError;

/// The llama-family architectures the trainer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// SmolLM2, Llama: NORM rope, no biases.
    Llama,
    /// q/k/v biases, NEOX rope.
    Qwen2,
    /// Per-head q/k RMSNorm before rope, head_dim from key_length, NEOX rope.
    Qwen3,
}

impl Arch {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "llama" => Some(Arch::Llama),
            "qwen2" => Some(Arch::Qwen2),
            "qwen3" => Some(Arch::Qwen3),
            _ => None,
        }
    }

    /// The GGUF `general.architecture` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
        }
    }

    /// llama.cpp's rope type for the arch (llama-arch.cpp `llama_model_rope_type`).
    pub fn rope_style(self) -> RopeStyle {
        match self {
            Arch::Llama => RopeStyle::Norm,
            Arch::Qwen2 | Arch::Qwen3 => RopeStyle::Neox,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelShape {
    pub arch: Arch,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub n_vocab: usize,
    pub rope_theta: f64,
    pub rms_eps: f64,
    /// No `output.weight`: the LM head is the token embedding.
    pub tied_output: bool,
    pub rope_style: RopeStyle,
    /// Per-head RMSNorm on q and k (qwen3).
    pub qk_norm: bool,
    /// Biases on the q/k/v projections (qwen2).
    pub qkv_bias: bool,
    pub n_ctx_train: usize,
    /// Multiplier of q·k before the softmax (`{arch}.attention.scale`,
    /// else 1/√head_dim, as llama.cpp).
    pub attn_scale: f64,
}

impl ModelShape {
    pub(crate) fn from_gguf(header: &GgufFile) -> Result<Self, TrainError> {
        let path = header.path();
        let meta = Meta { path, header };
        let arch_name = meta.text("general.architecture")?;
        let arch = Arch::parse(&arch_name).ok_or_else(|| TrainError::UnsupportedArch {
            path: path.to_path_buf(),
            arch: arch_name.clone(),
        })?;
        let key = |suffix: &str| format!("{arch_name}.{suffix}");
        let n_embd = meta.usize(&key("embedding_length"))?;
        let n_head = meta.usize(&key("attention.head_count"))?;
        let n_head_kv = meta.usize_or(&key("attention.head_count_kv"), n_head)?;
        if n_head == 0 || n_head_kv == 0 || n_head % n_head_kv != 0 {
            return Err(meta.bad(
                &key("attention.head_count_kv"),
                n_head_kv.to_string(),
                format!("must divide head_count '{n_head}'"),
            ));
        }
        // qwen3's head_dim is independent of n_embd / n_head.
        let head_dim = meta.usize_or(&key("attention.key_length"), n_embd / n_head)?;
        let value_dim = meta.usize_or(&key("attention.value_length"), head_dim)?;
        if value_dim != head_dim || head_dim % 2 != 0 {
            return Err(meta.bad(
                &key("attention.value_length"),
                value_dim.to_string(),
                format!("must equal an even key_length '{head_dim}'"),
            ));
        }
        let n_rot = meta.usize_or(&key("rope.dimension_count"), head_dim)?;
        if n_rot != head_dim {
            return Err(meta.bad(
                &key("rope.dimension_count"),
                n_rot.to_string(),
                format!("partial rope is not supported (head_dim '{head_dim}')"),
            ));
        }
        if let Some(v) = header.get(&key("rope.scaling.type")) {
            let kind = v.as_str().unwrap_or("?");
            if kind != "none" {
                return Err(meta.bad(
                    &key("rope.scaling.type"),
                    kind.to_owned(),
                    "rope scaling is not supported".to_owned(),
                ));
            }
        }
        if let Some(v) = header.get(&key("expert_count")) {
            let n = meta.usize(&key("expert_count")).unwrap_or(0);
            if n > 0 {
                return Err(meta.bad(
                    &key("expert_count"),
                    v.to_string(),
                    "mixture-of-experts models are not supported".to_owned(),
                ));
            }
        }
        let embd = header
            .tensor("token_embd.weight")
            .ok_or_else(|| TrainError::MissingTensor {
                path: path.to_path_buf(),
                tensor: "token_embd.weight".to_owned(),
            })?;
        let n_vocab = candle_dims(embd).first().copied().unwrap_or(0);
        Ok(ModelShape {
            arch,
            n_layer: meta.usize(&key("block_count"))?,
            n_embd,
            n_head,
            n_head_kv,
            head_dim,
            n_ff: meta.usize(&key("feed_forward_length"))?,
            n_vocab,
            rope_theta: meta.f64_or(&key("rope.freq_base"), 10_000.0)?,
            rms_eps: meta.f64_or(&key("attention.layer_norm_rms_epsilon"), 1e-5)?,
            tied_output: header.tensor("output.weight").is_none(),
            rope_style: arch.rope_style(),
            qk_norm: arch == Arch::Qwen3,
            qkv_bias: header.tensor("blk.0.attn_q.bias").is_some(),
            n_ctx_train: meta.usize_or(&key("context_length"), 0)?,
            attn_scale: match header.get(&key("attention.scale")) {
                // llama.cpp reads 0 as "not set".
                Some(GgufValue::F32(x)) if *x == 0.0 => 1.0 / (head_dim as f64).sqrt(),
                _ => meta.f64_or(&key("attention.scale"), 1.0 / (head_dim as f64).sqrt())?,
            },
        })
    }
}

/// Typed metadata look-ups whose errors name the file and key.
struct Meta<'a> {
    path: &'a Path,
    header: &'a GgufFile,
}

impl Meta<'_> {
    fn bad(&self, key: &str, value: String, detail: String) -> TrainError {
        TrainError::BadMetadata {
            path: self.path.to_path_buf(),
            key: key.to_owned(),
            value,
            detail,
        }
    }

    fn get(&self, key: &str) -> Result<&GgufValue, TrainError> {
        self.header
            .get(key)
            .ok_or_else(|| TrainError::MissingMetadata {
                path: self.path.to_path_buf(),
                key: key.to_owned(),
            })
    }

    fn text(&self, key: &str) -> Result<String, TrainError> {
        let v = self.get(key)?;
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| self.bad(key, v.to_string(), "expected a string".to_owned()))
    }

    fn usize(&self, key: &str) -> Result<usize, TrainError> {
        let v = self.get(key)?;
        v.as_i128()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| self.bad(key, v.to_string(), "expected a positive integer".to_owned()))
    }

    fn usize_or(&self, key: &str, default: usize) -> Result<usize, TrainError> {
        match self.header.get(key) {
            None => Ok(default),
            Some(_) => self.usize(key),
        }
    }

    fn f64_or(&self, key: &str, default: f64) -> Result<f64, TrainError> {
        let Some(v) = self.header.get(key) else {
            return Ok(default);
        };
        let x = match v {
            GgufValue::F32(x) => f64::from(*x),
            GgufValue::F64(x) => *x,
            _ => return Err(self.bad(key, v.to_string(), "expected a float".to_owned())),
        };
        if x.is_finite() && x > 0.0 {
            Ok(x)
        } else {
            Err(self.bad(key, x.to_string(), "expected a positive number".to_owned()))
        }
    }
}
