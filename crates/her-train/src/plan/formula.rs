//! The predicted peak, term by term, from what the trainer keeps (read
//! from the code; ARCHITECTURE.md's "The trainer on a GPU" describes the
//! layout the CUDA terms follow).
//!
//! Notation: L layers, e hidden, q = heads·head_dim, kv = kv heads·head_dim,
//! f ffn, V vocabulary, r rank, T the adapted targets, b rows, t tokens per
//! row, m = b·t, a = bytes per activation element. Labelled positions are
//! taken as m (an upper bound).

use crate::lora::Target;
use crate::model::{Arch, BaseMode};

use super::shape::PlanShape;

const MIB: u64 = 1 << 20;

/// Where the run computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanDevice {
    Cpu,
    Cuda,
}

impl PlanDevice {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanDevice::Cpu => "cpu",
            PlanDevice::Cuda => "cuda",
        }
    }
}

/// The activations' element type (LoRA weights, AdamW and the loss are f32
/// in both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanDtype {
    F32,
    Bf16,
}

impl PlanDtype {
    pub fn bytes(self) -> u64 {
        match self {
            PlanDtype::F32 => 4,
            PlanDtype::Bf16 => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PlanDtype::F32 => "f32",
            PlanDtype::Bf16 => "bf16",
        }
    }
}

/// The settings a plan depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanSettings {
    /// Rows per micro-batch (DPO: chosen and rejected rows of every pair).
    pub batch: usize,
    /// Tokens per row (`train.max_seq_len`).
    pub seq: usize,
    pub rank: usize,
    pub targets: Vec<Target>,
    pub dtype: PlanDtype,
    pub checkpointing: bool,
    pub base: BaseMode,
    pub device: PlanDevice,
    /// RL: llama.cpp holds the model too, for the rollouts.
    pub rollout_engine: bool,
}

/// One line of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    pub name: &'static str,
    pub bytes: u64,
    /// How it is made up, for the table.
    pub note: String,
}

/// The predicted peak of one training step.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub terms: Vec<Term>,
}

impl Plan {
    pub fn total(&self) -> u64 {
        self.terms.iter().map(|t| t.bytes).sum()
    }

    pub fn term(&self, name: &str) -> Option<u64> {
        self.terms.iter().find(|t| t.name == name).map(|t| t.bytes)
    }
}

pub const BASE: &str = "base weights";
pub const LORA: &str = "LoRA + AdamW";
pub const ACTIVATIONS: &str = "activations";
pub const TILE: &str = "largest dequantized tile";
pub const HEAD: &str = "head / loss";
pub const ENGINE: &str = "rollout engine";
pub const RUNTIME: &str = "workspace / runtime";

/// Logit elements per block of the CPU loss head (model/mod.rs
/// `LOSS_CHUNK_ELEMS`), its smallest block and its kept bytes.
const LOSS_CHUNK_ELEMS: u64 = 4 << 20;
const MIN_LOSS_CHUNK_VOCAB: u64 = 256;
const LOSS_KEEP_BYTES: u64 = 256 << 20;
/// Head rows per block on CUDA.
const HEAD_BLOCK_ROWS: u64 = crate::model::HEAD_BLOCK_ROWS as u64;
/// The CUDA context, cuBLAS workspace and loaded modules: assumed until
/// gpu-check measures it.
pub const CUDA_CONTEXT_BYTES: u64 = 768 * MIB;
/// The CUDA memory pool's fragmentation margin, a share of the rest.
const CUDA_POOL_MARGIN: f64 = 0.05;

/// Bytes the attention op keeps from forward to backward for one layer:
/// both paths are tiled (FlashAttention-2 style, model/ops/attention.rs and
/// model/portable/attention.rs) and keep only each row's log-sum-exp per
/// query head in f32, 4·b·nh·t bytes: linear in t. (The op they replaced
/// kept the causal probabilities, ≈ 4·b·nh·t²/2.)
pub fn attention_kept_bytes(b: usize, n_head: usize, t: usize) -> u64 {
    4 * b as u64 * n_head as u64 * t as u64
}

/// The plan for `s` on `shape`; `runtime` is what the process holds
/// besides the training state (on the CPU its resident memory before the
/// model loads; on CUDA the context, see [`CUDA_CONTEXT_BYTES`]).
pub fn plan(shape: &PlanShape, s: &PlanSettings, runtime: u64) -> Plan {
    let a = s.dtype.bytes();
    let m = (s.batch * s.seq) as u64;
    let quantized = s.base == BaseMode::Quantized;
    let mut terms = vec![
        base_weights(shape, s),
        lora_adamw(shape, s),
        activations(shape, s, a, m),
    ];
    let chunk = (LOSS_CHUNK_ELEMS / m.max(1)).clamp(MIN_LOSS_CHUNK_VOCAB, shape.n_vocab as u64);
    let e = shape.n_embd as u64;
    let tile = match (s.device, quantized) {
        (_, false) => 0,
        // One scratch buffer that grows to the largest matrix or head
        // block ever dequantized (model/frozen.rs).
        (PlanDevice::Cpu, true) => shape.largest_matrix.max(chunk * e) * 4,
        // dequantize_f16 then the cast (bf16), or dequantize (f32): 4 bytes
        // an element either way, while the gemm runs.
        (PlanDevice::Cuda, true) => shape.largest_matrix * 4,
    };
    terms.push(Term {
        name: TILE,
        bytes: tile,
        note: match (quantized, s.device) {
            (true, PlanDevice::Cpu) => format!("{} elements in f32", fmt_count(tile / 4)),
            (true, PlanDevice::Cuda) => format!(
                "{} elements × 4 B (f16 + cast, or f32)",
                fmt_count(tile / 4)
            ),
            (false, _) => "none: the base is dequantized".into(),
        },
    });
    terms.push(head_loss(s, a, m, (e, shape.n_vocab as u64), chunk));
    if s.rollout_engine {
        terms.push(Term {
            name: ENGINE,
            bytes: shape.stored_bytes,
            note: "llama.cpp's copy of the weights".into(),
        });
    }
    let rest: u64 = terms.iter().map(|t| t.bytes).sum();
    terms.push(match s.device {
        PlanDevice::Cpu => Term {
            name: RUNTIME,
            bytes: runtime + shape.metadata_bytes,
            note: "this process now, the tokenizer".into(),
        },
        PlanDevice::Cuda => {
            let margin = (rest as f64 * CUDA_POOL_MARGIN) as u64;
            Term {
                name: RUNTIME,
                bytes: runtime + margin,
                note: "CUDA context (assumed), 5% pool margin".into(),
            }
        }
    });
    Plan { terms }
}

fn base_weights(shape: &PlanShape, s: &PlanSettings) -> Term {
    let (bytes, note) = match (s.base, s.device) {
        (BaseMode::Quantized, _) => (shape.stored_bytes, shape.weights_note.clone()),
        (BaseMode::Dequantized, PlanDevice::Cpu) => {
            (shape.elements * 4, "dequantized to f32".into())
        }
        (BaseMode::Dequantized, PlanDevice::Cuda) => (
            shape.elements * s.dtype.bytes(),
            format!("dequantized to {}", s.dtype.as_str()),
        ),
    };
    Term {
        name: BASE,
        bytes,
        note,
    }
}

/// Trainable parameters: r·(in + out) per adapted projection and layer.
pub fn lora_parameters(shape: &PlanShape, rank: usize, targets: &[Target]) -> u64 {
    let per_layer: usize = targets
        .iter()
        .map(|&t| {
            let (i, o) = shape.projection(t);
            rank * (i + o)
        })
        .sum();
    (shape.n_layer * per_layer) as u64
}

/// f32 weights, their gradients in the store and AdamW's m and v: 16 bytes
/// a parameter at the peak (the accumulator's copy comes after backward,
/// when the activations are gone).
fn lora_adamw(shape: &PlanShape, s: &PlanSettings) -> Term {
    let p = lora_parameters(shape, s.rank, &s.targets);
    Term {
        name: LORA,
        bytes: 16 * p,
        note: format!("{} parameters × 16 B", fmt_count(p)),
    }
}

/// What one layer keeps from forward to backward (model/block.rs): the
/// block input, norm outputs, o_proj and down outputs and the residual sum
/// (6·e), the q and k/v paths (3 tensors each; qwen3 adds the q/k norm
/// outputs, qwen2 the pre-bias outputs), gate, up and silu·up (3·f), the
/// attention state and each LoRA branch's f32 (m × r) product.
pub fn layer_kept_bytes(shape: &PlanShape, s: &PlanSettings) -> u64 {
    let a = s.dtype.bytes();
    let m = (s.batch * s.seq) as u64;
    let (c_q, c_kv) = match shape.arch {
        Arch::Llama => (3, 3),
        Arch::Qwen3 => (4, 4),
        Arch::Qwen2 => (4, 5),
    };
    let (e, q, kv, f) = (
        shape.n_embd as u64,
        shape.q_dim() as u64,
        shape.kv_dim() as u64,
        shape.n_ff as u64,
    );
    a * m * (6 * e + c_q * q + c_kv * kv + 3 * f)
        + attention_kept_bytes(s.batch, shape.n_head, s.seq)
        + 4 * s.targets.len() as u64 * m * s.rank as u64
}

fn activations(shape: &PlanShape, s: &PlanSettings, a: u64, m: u64) -> Term {
    let layer = layer_kept_bytes(shape, s);
    let (e, q, kv, f, l) = (
        shape.n_embd as u64,
        shape.q_dim() as u64,
        shape.kv_dim() as u64,
        shape.n_ff as u64,
        shape.n_layer as u64,
    );
    // Gradients in flight at the layer backward is in, and the fused
    // attention's per-head dq/dk/dv buffers.
    let d = shape.head_dim as u64;
    let backward = a * m * (2 * f + 2 * e + q + 2 * kv)
        + 4 * s.batch as u64 * shape.n_head as u64 * 3 * s.seq as u64 * d;
    let attention = attention_kept_bytes(s.batch, shape.n_head, s.seq);
    let (bytes, note) = if s.checkpointing {
        (
            l * a * m * e + layer + backward,
            format!(
                "{l} block inputs + 1 layer recomputed (attention {})",
                fmt_bytes(attention)
            ),
        )
    } else {
        (
            l * layer + backward,
            format!(
                "{l} layers × {} (attention {} each)",
                fmt_bytes(layer),
                fmt_bytes(attention)
            ),
        )
    };
    Term {
        name: ACTIVATIONS,
        bytes,
        note,
    }
}

fn head_loss(s: &PlanSettings, a: u64, m: u64, (e, vocab): (u64, u64), chunk: u64) -> Term {
    let (bytes, note) = match s.device {
        // model/head.rs: one block of logits, the packed hidden states and
        // their gradient, and (without checkpointing) up to 256 MiB of
        // (softmax − onehot) blocks kept for backward.
        PlanDevice::Cpu => {
            let block = m * chunk * 4;
            let kept = if s.checkpointing {
                0
            } else {
                // Whole blocks, while they fit the budget.
                (LOSS_KEEP_BYTES / block.max(1) * block).min(m * vocab * 4)
            };
            (
                m * chunk * 4 + 2 * m * e * 4 + kept,
                format!(
                    "blocks of {chunk} vocabulary rows, {} kept",
                    fmt_bytes(kept)
                ),
            )
        }
        // The CUDA head (model/load.rs, frozen_rows): 8192 head rows at a
        // time, dequantized (f16 + cast), their logits in f32.
        PlanDevice::Cuda => (
            HEAD_BLOCK_ROWS * e * 4 + m * HEAD_BLOCK_ROWS * (a + 8) + 2 * m * e * a,
            format!("blocks of {HEAD_BLOCK_ROWS} vocabulary rows"),
        ),
    };
    Term {
        name: HEAD,
        bytes,
        note,
    }
}

/// "1.93 GiB", "376 MiB".
pub fn fmt_bytes(bytes: u64) -> String {
    let gib = bytes as f64 / (1u64 << 30) as f64;
    if gib >= 1.0 {
        format!("{gib:.2} GiB")
    } else {
        format!("{:.0} MiB", bytes as f64 / MIB as f64)
    }
}

/// "4.9 M", "61 k".
pub fn fmt_count(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.0} k", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} M", n as f64 / 1e6),
        _ => format!("{:.2} G", n as f64 / 1e9),
    }
}
