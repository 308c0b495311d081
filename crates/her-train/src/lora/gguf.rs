//! LoRA adapters as GGUF, in the layout llama.cpp loads:
//! `general.type=adapter`, `adapter.type=lora`, `adapter.lora.alpha`, and
//! per adapted weight `blk.N.<target>.weight.lora_a` (r, in) and `.lora_b`
//! (out, r) as F32 (GGUF `ne` order: [in, r] and [r, out]).

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use super::{LoraParam, LoraSpec, Target};
use crate::error::TrainError;
use her_gguf::{GgufValue, GgufWriter};

/// Write `params` as a llama.cpp LoRA adapter for a base model of `arch`,
/// atomically (temp file, fsync, rename).
pub fn write_lora_gguf(
    path: &Path,
    arch: &str,
    spec: &LoraSpec,
    params: &[LoraParam],
) -> Result<(), TrainError> {
    spec.validate()?;
    let bad = |detail: String| TrainError::LoraFile {
        path: path.to_path_buf(),
        detail,
    };
    if params.is_empty() {
        return Err(bad("there are no LoRA parameters to write".to_owned()));
    }
    let mut w = GgufWriter::new();
    w.add_string("general.architecture", arch)
        .add_string("general.type", "adapter")
        .add_string("general.name", "her-studio LoRA")
        .add_string("adapter.type", "lora")
        .add_f32("adapter.lora.alpha", spec.alpha as f32);
    let mut sorted: Vec<&LoraParam> = params.iter().collect();
    sorted.sort_by_key(|p| (p.layer, p.target));
    for p in sorted {
        let name = format!("blk.{}.{}.weight", p.layer, p.target.gguf_name());
        let (r, n_in) = p.a.dims2()?;
        let (n_out, rb) = p.b.dims2()?;
        if r != spec.rank || rb != spec.rank {
            return Err(bad(format!(
                "'{name}' has A {:?} and B {:?}, but the rank is '{}'",
                p.a.dims(),
                p.b.dims(),
                spec.rank
            )));
        }
        let a = p.a.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        let b = p.b.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        // A diverged adapter is never written (the file would be NaN in llama.cpp).
        if !a.iter().chain(&b).all(|v| v.is_finite()) {
            return Err(bad(format!(
                "'{name}' holds NaN or infinite values (the weights diverged): nothing was written"
            )));
        }
        w.add_tensor_f32(&format!("{name}.lora_a"), &[n_in as u64, r as u64], a);
        w.add_tensor_f32(&format!("{name}.lora_b"), &[r as u64, n_out as u64], b);
    }
    w.write(path).map_err(|e| bad(e.to_string()))
}

/// A LoRA adapter read from GGUF.
pub struct LoraFile {
    pub arch: String,
    /// `adapter.lora.alpha`; llama.cpp treats a missing alpha as alpha = r.
    pub alpha: f64,
    pub rank: usize,
    /// Sorted by (layer, target).
    pub tensors: Vec<LoraFileTensor>,
}

pub struct LoraFileTensor {
    pub layer: usize,
    pub target: Target,
    /// (r, in)
    pub a: Tensor,
    /// (out, r)
    pub b: Tensor,
}

impl LoraFile {
    /// The spec this file implies (no dropout: a file does not record it).
    pub fn spec(&self) -> LoraSpec {
        let mut targets: Vec<Target> = self.tensors.iter().map(|t| t.target).collect();
        targets.sort();
        targets.dedup();
        LoraSpec {
            rank: self.rank,
            alpha: self.alpha,
            dropout: 0.0,
            targets,
        }
    }
}

/// Read a llama.cpp LoRA GGUF (F32 or any type candle can dequantize).
pub fn read_lora_gguf(path: &Path) -> Result<LoraFile, TrainError> {
    let bad = |detail: String| TrainError::LoraFile {
        path: path.to_path_buf(),
        detail,
    };
    let mut gguf = crate::model::Gguf::open(path)?;
    let header = gguf.header.clone();
    let text = |key: &str| header.get_str(key).map(str::to_owned);
    if let Some(kind) = text("general.type").filter(|k| k != "adapter") {
        return Err(bad(format!("'general.type' is '{kind}', not 'adapter'")));
    }
    if let Some(kind) = text("adapter.type").filter(|k| k != "lora") {
        return Err(bad(format!("'adapter.type' is '{kind}', not 'lora'")));
    }
    let arch = text("general.architecture")
        .ok_or_else(|| bad("'general.architecture' is missing".to_owned()))?;
    let alpha = match header.get("adapter.lora.alpha") {
        None => None,
        Some(GgufValue::F32(x)) => Some(f64::from(*x)),
        Some(GgufValue::F64(x)) => Some(*x),
        Some(v) => return Err(bad(format!("'adapter.lora.alpha' is not a float: '{v}'"))),
    };

    // 1. Pair up blk.N.<target>.weight.lora_{a,b}.
    let mut pairs: BTreeMap<(usize, Target), [Option<Tensor>; 2]> = BTreeMap::new();
    let mut infos: Vec<&her_gguf::TensorInfo> = header.tensors().iter().collect();
    infos.sort_by(|a, b| a.name.cmp(&b.name));
    for info in infos {
        let name = &info.name;
        let (layer, target, slot) = parse_tensor_name(name).ok_or_else(|| {
            bad(format!(
                "tensor '{name}' is not a LoRA tensor of a block projection"
            ))
        })?;
        let t = gguf
            .qtensor(info)?
            .dequantize(&Device::Cpu)
            .map_err(|e| bad(format!("cannot read tensor '{name}': {e}")))?;
        pairs.entry((layer, target)).or_default()[slot] = Some(t);
    }
    // 2. Check shapes and one common rank.
    let mut tensors = Vec::new();
    let mut rank = None;
    for ((layer, target), [a, b]) in pairs {
        let name = format!("blk.{layer}.{}.weight", target.gguf_name());
        let (Some(a), Some(b)) = (a, b) else {
            return Err(bad(format!("'{name}' needs both lora_a and lora_b")));
        };
        let (r, _) = a.dims2()?;
        let (_, rb) = b.dims2()?;
        if rb != r || *rank.get_or_insert(r) != r {
            return Err(bad(format!(
                "'{name}' has lora_a {:?} and lora_b {:?}; every pair must share one rank",
                a.dims(),
                b.dims()
            )));
        }
        tensors.push(LoraFileTensor {
            layer,
            target,
            a,
            b,
        });
    }
    let rank = rank.ok_or_else(|| bad("it has no LoRA tensors".to_owned()))?;
    Ok(LoraFile {
        arch,
        alpha: alpha.unwrap_or(rank as f64),
        rank,
        tensors,
    })
}

/// "blk.3.attn_q.weight.lora_a" → (3, Q, 0); lora_b → slot 1.
fn parse_tensor_name(name: &str) -> Option<(usize, Target, usize)> {
    let rest = name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (target, suffix) = rest.split_once(".weight.")?;
    let slot = match suffix {
        "lora_a" => 0,
        "lora_b" => 1,
        _ => return None,
    };
    Some((layer.parse().ok()?, Target::from_gguf_name(target)?, slot))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use candle_core::Var;

    #[test]
    fn tensor_names_parse() {
        assert_eq!(
            parse_tensor_name("blk.12.ffn_down.weight.lora_b"),
            Some((12, Target::Down, 1))
        );
        assert_eq!(
            parse_tensor_name("blk.0.attn_q.weight.lora_a"),
            Some((0, Target::Q, 0))
        );
        assert_eq!(parse_tensor_name("token_embd.weight.lora_a"), None);
        assert_eq!(parse_tensor_name("blk.0.attn_norm.weight.lora_a"), None);
    }

    #[test]
    fn write_then_read_round_trips_values_and_layout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.gguf");
        let spec = LoraSpec {
            rank: 2,
            alpha: 6.0,
            dropout: 0.1,
            targets: vec![Target::Q, Target::Down],
        };
        let dev = Device::Cpu;
        let var = |data: Vec<f32>, shape: (usize, usize)| Var::from_vec(data, shape, &dev).unwrap();
        let params = vec![
            LoraParam {
                layer: 1,
                target: Target::Down,
                a: var((0..10).map(|i| i as f32).collect(), (2, 5)),
                b: var((0..6).map(|i| -(i as f32)).collect(), (3, 2)),
            },
            LoraParam {
                layer: 0,
                target: Target::Q,
                a: var(vec![0.5; 8], (2, 4)),
                b: var(vec![0.25; 8], (4, 2)),
            },
        ];
        write_lora_gguf(&path, "qwen3", &spec, &params).unwrap();
        // The GGUF `ne` of lora_a is [in, r], as llama.cpp expects.
        let info = her_gguf::inspect(&path).unwrap();
        assert_eq!(
            info.tensor("blk.1.ffn_down.weight.lora_a").unwrap().dims,
            vec![5, 2]
        );
        assert_eq!(
            info.tensor("blk.1.ffn_down.weight.lora_b").unwrap().dims,
            vec![2, 3]
        );
        assert_eq!(info.get_str("general.type"), Some("adapter"));
        assert_eq!(info.get_f32("adapter.lora.alpha"), Some(6.0));

        let back = read_lora_gguf(&path).unwrap();
        assert_eq!(back.arch, "qwen3");
        assert_eq!((back.alpha, back.rank), (6.0, 2));
        assert_eq!(back.spec().targets, vec![Target::Q, Target::Down]);
        assert_eq!(back.tensors[0].target, Target::Q);
        let down = &back.tensors[1];
        assert_eq!(down.layer, 1);
        assert_eq!(
            down.a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            (0..10).map(|i| i as f32).collect::<Vec<_>>()
        );
        assert_eq!(down.b.dims(), &[3, 2]);
    }

    #[test]
    fn writing_rejects_a_rank_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.gguf");
        let spec = LoraSpec {
            rank: 4,
            alpha: 4.0,
            dropout: 0.0,
            targets: vec![Target::Q],
        };
        let dev = Device::Cpu;
        let p = LoraParam {
            layer: 0,
            target: Target::Q,
            a: Var::zeros((2, 4), candle_core::DType::F32, &dev).unwrap(),
            b: Var::zeros((4, 2), candle_core::DType::F32, &dev).unwrap(),
        };
        let err = write_lora_gguf(&path, "qwen3", &spec, &[p])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("blk.0.attn_q.weight") && err.contains("'4'"),
            "{err}"
        );
        assert!(!path.exists());
    }
}
