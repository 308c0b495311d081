//! `her import adapter`: a PEFT LoRA folder trained elsewhere (TRL, Unsloth,
//! ms-swift, or our own export) → a LoRA GGUF llama.cpp and the chat load,
//! for the same base. Every setting the GGUF cannot express is refused with
//! the file and the reason; nothing is written unless all of it converts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};

use super::PeftError;
use super::adapter_config::read_config;
use super::base_name;
use super::rows::{RowOrder, permuted_heads, reorder_rows};
use crate::lora::{LoraParam, LoraSpec, Target, write_lora_gguf};
use crate::model::Arch;
use her_gguf::GgufFile;

/// adapter_config.json is a few hundred bytes; this is generous.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Rank 128 on all seven projections of a 32B model is ~4.3 GB in f32.
pub const MAX_WEIGHTS_BYTES: u64 = 8 << 30;

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// What an import wrote.
#[derive(Debug, Clone)]
pub struct ImportReport {
    pub out: PathBuf,
    pub arch: String,
    /// Adapted projections (lora_A/lora_B pairs).
    pub pairs: usize,
    pub layers: usize,
    pub targets: Vec<Target>,
    pub rank: usize,
    /// `adapter.lora.alpha` as written (rsLoRA folded in).
    pub alpha: f64,
    /// q/k `lora_B` rows were permuted into the GGUF's order.
    pub qk_reordered: bool,
    /// Things the user should know that did not stop the import.
    pub notes: Vec<String>,
}

/// Converts the PEFT folder `dir` for the model `base_gguf` into the LoRA
/// GGUF `out`; an existing `out` is replaced only with `overwrite`.
pub fn import_peft(
    dir: &Path,
    base_gguf: &Path,
    out: &Path,
    overwrite: bool,
) -> Result<ImportReport, PeftError> {
    if !dir.is_dir() {
        return Err(bad(
            dir,
            format!(
                "is not a folder: give the PEFT adapter folder (with {CONFIG_FILE} and {WEIGHTS_FILE})"
            ),
        ));
    }
    if !overwrite && out.exists() {
        return Err(PeftError::Exists {
            path: out.to_path_buf(),
        });
    }
    let config_path = dir.join(CONFIG_FILE);
    let settings = read_config(&config_path)?;
    let weights_path = dir.join(WEIGHTS_FILE);
    let factors = read_factors(dir, &weights_path)?;
    let base = Base::read(base_gguf)?;

    let mut notes = Vec::new();
    if settings.rslora {
        notes.push(format!(
            "rsLoRA: its scale lora_alpha/√r is written as alpha {:.4} (llama.cpp scales by alpha/r)",
            settings.alpha
        ));
    }
    if let (Some(named), Some(gguf_id)) =
        (&settings.base_model, base_name::gguf_repo_id(&base.info))
        && !named.eq_ignore_ascii_case(&gguf_id)
    {
        notes.push(format!(
            "the adapter names its base '{named}', the GGUF says it is '{gguf_id}'; the shapes match, so it was converted"
        ));
    }

    let mut params = Vec::with_capacity(factors.len());
    let mut targets = Vec::new();
    let mut layers = Vec::new();
    for ((layer, target), (a, b)) in factors {
        let key = |factor| super::peft_key(layer, target.peft_name(), factor);
        let (r_a, n_in) = a.dims2().map_err(|e| bad(&weights_path, e))?;
        let (n_out, r_b) = b.dims2().map_err(|e| bad(&weights_path, e))?;
        if r_a != settings.rank || r_b != settings.rank {
            return Err(bad(
                &weights_path,
                format!(
                    "'{}' is {:?} and '{}' is {:?}, but {CONFIG_FILE} says r = {}: per-module ranks are not supported",
                    key("A"),
                    a.dims(),
                    key("B"),
                    b.dims(),
                    settings.rank
                ),
            ));
        }
        base.check_shape(layer, target, n_in, n_out, &weights_path, &key("A"))?;
        let b = match permuted_heads(base.arch, target, base.n_head, base.n_head_kv) {
            Some(heads) => reorder_rows(&b, heads, RowOrder::Gguf)
                .map_err(|e| bad(&weights_path, format!("'{}': {e}", key("B"))))?,
            None => b,
        };
        let var = |t: &Tensor| Var::from_tensor(t).map_err(|e| bad(&weights_path, e));
        params.push(LoraParam {
            layer,
            target,
            a: var(&a)?,
            b: var(&b)?,
        });
        targets.push(target);
        layers.push(layer);
    }
    targets.sort();
    targets.dedup();
    layers.sort_unstable();
    layers.dedup();
    let spec = LoraSpec {
        rank: settings.rank,
        alpha: settings.alpha,
        // Dropout is a training setting; the GGUF has no place for it.
        dropout: 0.0,
        targets: targets.clone(),
    };
    spec.validate().map_err(|e| bad(&config_path, e))?;
    write_new(out, base.arch.as_str(), &spec, &params, overwrite)?;
    Ok(ImportReport {
        out: out.to_path_buf(),
        arch: base.arch.as_str().to_owned(),
        pairs: params.len(),
        layers: layers.len(),
        targets,
        rank: settings.rank,
        alpha: settings.alpha,
        qk_reordered: super::rows::qk_rows_permuted(base.arch)
            && spec
                .targets
                .iter()
                .any(|t| matches!(t, Target::Q | Target::K)),
        notes,
    })
}

pub(super) fn bad(path: &Path, detail: impl std::fmt::Display) -> PeftError {
    PeftError::Bad {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    }
}

/// Reads at most `limit` bytes of `path` through the bounded reader (a FIFO
/// or device is refused, a larger file refused before it is read).
pub(super) fn read_capped(path: &Path, limit: u64, missing: &str) -> Result<Vec<u8>, PeftError> {
    use her_core::fsutil::read::{Kind, bytes_within};
    bytes_within(path, Kind::Adapter, limit).map_err(|e| match e.is_not_found() {
        true => bad(path, format!("is missing: {missing}")),
        false => PeftError::Read(e),
    })
}

/// One projection's (lora_A, lora_B), keyed by (layer, target).
type Factors = BTreeMap<(usize, Target), (Tensor, Tensor)>;

/// adapter_model.safetensors as f32 factors, every key accounted for.
fn read_factors(dir: &Path, path: &Path) -> Result<Factors, PeftError> {
    let missing = if dir.join("adapter_model.bin").is_file() {
        "only adapter_model.bin (a pickle) is there, which is not read: save the adapter with safe_serialization=True"
    } else {
        "a PEFT adapter folder has one next to adapter_config.json"
    };
    let bytes = read_capped(path, MAX_WEIGHTS_BYTES, missing)?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| bad(path, format!("is not a readable safetensors file: {e}")))?;
    let mut halves: BTreeMap<(usize, Target), [Option<Tensor>; 2]> = BTreeMap::new();
    let mut keys: Vec<&String> = tensors.keys().collect();
    keys.sort();
    for key in keys {
        let (layer, target, slot) = parse_key(key).map_err(|detail| bad(path, detail))?;
        let t = &tensors[key];
        if !matches!(
            t.dtype(),
            DType::F32 | DType::F16 | DType::BF16 | DType::F64
        ) {
            return Err(bad(
                path,
                format!(
                    "'{key}' is {:?}; only f32, f16, bf16 and f64 factors are read",
                    t.dtype()
                ),
            ));
        }
        if t.rank() != 2 {
            return Err(bad(
                path,
                format!("'{key}' has shape {:?}, not a matrix", t.dims()),
            ));
        }
        let t = t.to_dtype(DType::F32).map_err(|e| bad(path, e))?;
        halves.entry((layer, target)).or_default()[slot] = Some(t);
    }
    if halves.is_empty() {
        return Err(bad(path, "holds no LoRA tensors"));
    }
    halves
        .into_iter()
        .map(|((layer, target), [a, b])| match (a, b) {
            (Some(a), Some(b)) => Ok(((layer, target), (a, b))),
            _ => Err(bad(
                path,
                format!(
                    "layer {layer} {} needs both lora_A and lora_B",
                    target.peft_name()
                ),
            )),
        })
        .collect()
}

/// `base_model.model.model.layers.N.<module>.lora_{A,B}.weight` →
/// (N, target, 0 for A / 1 for B); anything else is explained.
fn parse_key(key: &str) -> Result<(usize, Target, usize), String> {
    let unsupported = |what: &str| {
        Err(format!(
            "'{key}' is {what}, which a llama.cpp LoRA GGUF cannot hold"
        ))
    };
    if key.contains("lora_magnitude_vector") {
        return unsupported("a DoRA magnitude vector");
    }
    if key.contains("lora_embedding_") || key.contains("embed_tokens") {
        return unsupported("a LoRA on the token embeddings");
    }
    if key.contains("lm_head") {
        return unsupported("a LoRA on the output head");
    }
    if key.ends_with(".bias") {
        return unsupported("a bias");
    }
    factor_of_key(key).ok_or_else(|| {
        format!(
            "has the tensor '{key}', which is not a LoRA factor of a decoder layer's q/k/v/o_proj or gate/up/down_proj (expected base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight and the like)"
        )
    })
}

/// `base_model.model.model.layers.N.<module>.lora_{A,B}.weight`, or `None`.
fn factor_of_key(key: &str) -> Option<(usize, Target, usize)> {
    let rest = key
        .strip_prefix("base_model.model.model.layers.")?
        .strip_suffix(".weight")?;
    let (layer, rest) = rest.split_once('.')?;
    let (module, factor) = rest.rsplit_once('.')?;
    let slot = match factor {
        "lora_A" => 0,
        "lora_B" => 1,
        _ => return None,
    };
    let target = Target::ALL.into_iter().find(|t| t.peft_name() == module)?;
    Some((layer.parse().ok()?, target, slot))
}

/// The base GGUF's header: architecture, heads and projection shapes.
struct Base {
    path: PathBuf,
    info: GgufFile,
    arch: Arch,
    n_head: usize,
    n_head_kv: usize,
    n_layer: usize,
}

impl Base {
    fn read(path: &Path) -> Result<Self, PeftError> {
        let info = her_gguf::inspect(path)?;
        let arch_name = info
            .architecture()
            .ok_or_else(|| bad(path, "has no 'general.architecture'"))?;
        let arch = Arch::parse(arch_name).ok_or_else(|| {
            bad(
                path,
                format!("is a '{arch_name}' model: PEFT adapters import for llama, qwen2 and qwen3 (whose q/k row order is known)"),
            )
        })?;
        let count = |suffix: &str| info.arch_u32(suffix).map(|n| n as usize).filter(|&n| n > 0);
        let n_head = count("attention.head_count")
            .ok_or_else(|| bad(path, format!("has no '{arch_name}.attention.head_count'")))?;
        let n_head_kv = count("attention.head_count_kv").unwrap_or(n_head);
        let n_layer = count("block_count")
            .ok_or_else(|| bad(path, format!("has no '{arch_name}.block_count'")))?;
        Ok(Self {
            path: path.to_path_buf(),
            info,
            arch,
            n_head,
            n_head_kv,
            n_layer,
        })
    }

    /// The adapter's (in, out) must be the base weight's.
    fn check_shape(
        &self,
        layer: usize,
        target: Target,
        n_in: usize,
        n_out: usize,
        weights: &Path,
        key: &str,
    ) -> Result<(), PeftError> {
        let name = format!("blk.{layer}.{}.weight", target.gguf_name());
        let another = "the adapter was trained for another model: pass its base GGUF with --model";
        let Some(t) = self.info.tensor(&name) else {
            return Err(bad(
                weights,
                format!(
                    "'{key}' adapts layer {layer}, but '{}' has no '{name}' ({} layers): {another}",
                    self.path.display(),
                    self.n_layer
                ),
            ));
        };
        // GGUF `ne` is [in, out].
        let base = (
            t.dims.first().copied().unwrap_or(0),
            t.dims.get(1).copied().unwrap_or(0),
        );
        if base != (n_in as u64, n_out as u64) {
            return Err(bad(
                weights,
                format!(
                    "'{key}' maps {n_in} inputs to {n_out} outputs, but '{name}' of '{}' maps {} to {}: {another}",
                    self.path.display(),
                    base.0,
                    base.1
                ),
            ));
        }
        Ok(())
    }
}

/// Writes the GGUF through a temporary file; without `overwrite` the final
/// step is a hard link, which fails rather than replace a file that
/// appeared meanwhile.
fn write_new(
    out: &Path,
    arch: &str,
    spec: &LoraSpec,
    params: &[LoraParam],
    overwrite: bool,
) -> Result<(), PeftError> {
    let fail = |reason: String| PeftError::Write {
        path: out.to_path_buf(),
        reason,
    };
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    }
    if overwrite {
        return write_lora_gguf(out, arch, spec, params).map_err(|e| fail(e.to_string()));
    }
    let name = out
        .file_name()
        .ok_or_else(|| fail("the path names no file".to_owned()))?;
    let tmp = out.with_file_name(format!(
        ".{}.import-{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = write_lora_gguf(&tmp, arch, spec, params)
        .map_err(|e| fail(e.to_string()))
        .and_then(|()| {
            std::fs::hard_link(&tmp, out).map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => PeftError::Exists {
                    path: out.to_path_buf(),
                },
                _ => fail(e.to_string()),
            })
        });
    let _ = std::fs::remove_file(&tmp);
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn peft_keys_parse_and_others_are_explained() {
        assert_eq!(
            parse_key("base_model.model.model.layers.12.mlp.down_proj.lora_B.weight").unwrap(),
            (12, Target::Down, 1)
        );
        assert_eq!(
            parse_key("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight").unwrap(),
            (0, Target::Q, 0)
        );
        for (key, says) in [
            (
                "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector",
                "DoRA",
            ),
            (
                "base_model.model.model.embed_tokens.lora_embedding_A",
                "embeddings",
            ),
            ("base_model.model.lm_head.lora_A.weight", "output head"),
            (
                "base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias",
                "bias",
            ),
            (
                "base_model.model.model.layers.0.self_attn.qkv_proj.lora_A.weight",
                "not a LoRA factor",
            ),
            (
                "model.layers.0.self_attn.q_proj.lora_A.weight",
                "not a LoRA factor",
            ),
        ] {
            let err = parse_key(key).unwrap_err();
            assert!(err.contains(says) && err.contains(key), "{err}");
        }
    }
}
