//! The sizes a plan needs: from a GGUF's header (no tensor is read), or a
//! named shape with an assumed bits-per-weight.

use std::path::Path;

use her_gguf::GgmlType;

use crate::error::TrainError;
use crate::model::{Arch, ModelShape};

/// A model as the plan sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanShape {
    /// The file name or the named shape.
    pub name: String,
    pub arch: Arch,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub n_vocab: usize,
    /// Bytes of every tensor as stored (exact for a GGUF, assumed for a
    /// named shape).
    pub stored_bytes: u64,
    /// Elements of every tensor.
    pub elements: u64,
    /// Elements of the largest decoder-block matrix (the ffn projections
    /// on every model we train): the largest tile one dequantization makes.
    pub largest_matrix: u64,
    /// Header bytes (metadata, tokenizer vocabulary): the tokenizer built
    /// from them holds about as much.
    pub metadata_bytes: u64,
    /// Where the weight bytes come from, for the table.
    pub weights_note: String,
}

/// The shapes `her train plan --shape` knows (Hugging Face configs).
pub const NAMED_SHAPES: [&str; 4] = ["qwen3-1.7b", "qwen3-8b", "qwen3-32b", "smollm2"];

impl PlanShape {
    /// Reads the header of `path` (bounded, through her-gguf) and sums the
    /// tensor infos: the stored bytes are exact.
    pub fn from_gguf(path: &Path) -> Result<Self, TrainError> {
        let header = her_gguf::inspect(path).map_err(crate::model::gguf_error)?;
        let m = ModelShape::from_gguf(&header)?;
        let tensors = header.tensors();
        let largest_matrix = tensors
            .iter()
            .filter(|t| t.name.starts_with("blk.") && t.dims.len() == 2)
            .map(|t| t.n_elements())
            .max()
            .unwrap_or(0);
        let quant = type_summary(tensors.iter().map(|t| t.ggml_type));
        Ok(Self {
            name: path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into(),
            ),
            arch: m.arch,
            n_layer: m.n_layer,
            n_embd: m.n_embd,
            n_head: m.n_head,
            n_head_kv: m.n_head_kv,
            head_dim: m.head_dim,
            n_ff: m.n_ff,
            n_vocab: m.n_vocab,
            stored_bytes: tensors.iter().map(|t| t.n_bytes).sum(),
            elements: tensors.iter().map(|t| t.n_elements()).sum(),
            largest_matrix,
            metadata_bytes: header.data_offset(),
            weights_note: format!("GGUF tensors as stored ({quant})"),
        })
    }

    /// A named shape (see [`NAMED_SHAPES`]) whose matrices take `bpw` bits
    /// per weight (Q4_K_M ≈ 4.85) and whose norms are f32.
    pub fn named(name: &str, bpw: f64) -> Option<Self> {
        // (arch, layers, embd, heads, kv heads, head dim, ffn, vocab, tied)
        let (arch, l, e, nh, nkv, d, f, v, tied) = match name {
            "qwen3-1.7b" => (Arch::Qwen3, 28, 2048, 16, 8, 128, 6144, 151_936, true),
            "qwen3-8b" => (Arch::Qwen3, 36, 4096, 32, 8, 128, 12288, 151_936, false),
            "qwen3-32b" => (Arch::Qwen3, 64, 5120, 64, 8, 128, 25600, 151_936, false),
            "smollm2" => (Arch::Llama, 30, 576, 9, 3, 64, 1536, 49_152, true),
            _ => return None,
        };
        if !(bpw.is_finite() && bpw > 0.0) {
            return None;
        }
        let (q, kv) = (nh * d, nkv * d);
        let block = e * q + 2 * e * kv + q * e + 3 * e * f;
        let matrices = l * block + v * e * if tied { 1 } else { 2 };
        // attn and ffn norms (+ q/k norms on qwen3), and the output norm.
        let qk = if arch == Arch::Qwen3 { 2 * d } else { 0 };
        let norms = l * (2 * e + qk) + e;
        let (matrices, norms) = (matrices as u64, norms as u64);
        Some(Self {
            name: name.to_owned(),
            arch,
            n_layer: l,
            n_embd: e,
            n_head: nh,
            n_head_kv: nkv,
            head_dim: d,
            n_ff: f,
            n_vocab: v,
            stored_bytes: (matrices as f64 * bpw / 8.0).round() as u64 + norms * 4,
            elements: matrices + norms,
            largest_matrix: (e * f) as u64,
            // A 150k-entry BPE vocabulary and its merges: a few MB.
            metadata_bytes: if v > 100_000 { 8 << 20 } else { 3 << 20 },
            weights_note: format!("{bpw} bits per weight (assumed)"),
        })
    }

    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    /// (in, out) of a projection.
    pub fn projection(&self, target: crate::lora::Target) -> (usize, usize) {
        use crate::lora::Target;
        let (e, q, kv, f) = (self.n_embd, self.q_dim(), self.kv_dim(), self.n_ff);
        match target {
            Target::Q => (e, q),
            Target::K | Target::V => (e, kv),
            Target::O => (q, e),
            Target::Gate | Target::Up => (e, f),
            Target::Down => (f, e),
        }
    }
}

/// "Q4_K 169, F32 61": the tensor types by count, most used first.
fn type_summary(types: impl Iterator<Item = GgmlType>) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for t in types {
        let name = t.to_string();
        match counts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, c)) => *c += 1,
            None => counts.push((name, 1)),
        }
    }
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    counts
        .iter()
        .map(|(n, c)| format!("{n} ×{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}
