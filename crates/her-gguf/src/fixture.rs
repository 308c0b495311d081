//! Tiny random-weight Qwen3 model and a matching LoRA adapter, as GGUF files
//! llama.cpp can load. For tests only: the text they produce is noise.

use std::path::Path;

use crate::GgufError;
use crate::rng::FixtureDraws;
use crate::tokenizer_bpe::{SpecialTokenIds, tiny_bpe_vocab};
use crate::write::GgufWriter;
use her_core::rng::SplitMix64;

/// Hyper-parameters and token ids of the tiny model.
#[derive(Debug, Clone, PartialEq)]
pub struct TinyModelSpec {
    pub architecture: &'static str,
    pub n_layer: u32,
    pub n_embd: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
    /// key_length = value_length; deliberately != n_embd / n_head.
    pub head_dim: u32,
    pub n_ff: u32,
    pub n_ctx_train: u32,
    pub rope_freq_base: f32,
    pub rms_eps: f32,
    pub n_vocab: u32,
    pub bos_id: u32,
    pub eos_id: u32,
    pub pad_id: u32,
    pub special: SpecialTokenIds,
    pub seed: u64,
}

/// Projections a LoRA adapts, with their (in, out) sizes: returned by
/// [`TinyModelSpec::lora_targets`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinearShape {
    /// e.g. "blk.0.attn_q.weight"
    pub name: String,
    pub n_in: u64,
    pub n_out: u64,
}

impl TinyModelSpec {
    /// The fixed tiny shape; `n_vocab` and ids come from the built-in vocab.
    pub fn tiny_qwen3(seed: u64) -> Self {
        let special = tiny_bpe_vocab().special;
        Self::with_vocab(seed, special.think_close + 1, special)
    }

    fn with_vocab(seed: u64, n_vocab: u32, special: SpecialTokenIds) -> Self {
        TinyModelSpec {
            architecture: "qwen3",
            n_layer: 2,
            n_embd: 64,
            n_head: 4,
            n_head_kv: 2,
            head_dim: 32,
            n_ff: 128,
            n_ctx_train: 4096,
            rope_freq_base: 1e6,
            rms_eps: 1e-6,
            n_vocab,
            bos_id: special.endoftext,
            eos_id: special.im_end,
            pad_id: special.endoftext,
            special,
            seed,
        }
    }

    /// The 7 adapted projections of every block, in (in, out) terms; GGUF
    /// `ne` of the base weight is `[n_in, n_out]`.
    pub fn lora_targets(&self) -> Vec<LinearShape> {
        let e = u64::from(self.n_embd);
        let q = u64::from(self.n_head * self.head_dim);
        let kv = u64::from(self.n_head_kv * self.head_dim);
        let ff = u64::from(self.n_ff);
        let per_block = [
            ("attn_q", e, q),
            ("attn_k", e, kv),
            ("attn_v", e, kv),
            ("attn_output", q, e),
            ("ffn_gate", e, ff),
            ("ffn_up", e, ff),
            ("ffn_down", ff, e),
        ];
        (0..self.n_layer)
            .flat_map(|b| {
                per_block.iter().map(move |&(n, n_in, n_out)| LinearShape {
                    name: format!("blk.{b}.{n}.weight"),
                    n_in,
                    n_out,
                })
            })
            .collect()
    }
}

fn n_elems(dims: &[u64]) -> usize {
    dims.iter().product::<u64>() as usize
}

/// Write the tiny random Qwen3 model (all F32, tied output) to `path`.
///
/// Scales keep sampling lively (checked with a numpy forward pass: mean max
/// probability ~0.07, entropy ~5.2 of 6.5 nats): embeddings ~ N(0, 0.2),
/// projections ~ N(0, 1/sqrt(in)), norm weights 1 ± 0.02. Smaller projections
/// (e.g. std 0.02) let the tied embedding dominate and the model then almost
/// always repeats the last input token.
pub fn write_tiny_qwen3(path: &Path, seed: u64) -> Result<TinyModelSpec, GgufError> {
    let vocab = tiny_bpe_vocab();
    let n_vocab = u32::try_from(vocab.len()).map_err(|_| GgufError::InvalidWrite {
        path: path.to_path_buf(),
        detail: format!("vocab size '{}' does not fit in u32", vocab.len()),
    })?;
    let spec = TinyModelSpec::with_vocab(seed, n_vocab, vocab.special);
    let arch = spec.architecture;

    let mut w = GgufWriter::new();
    w.add_string("general.architecture", arch)
        .add_string("general.name", "her-studio tiny qwen3 (random weights)")
        .add_u32("general.file_type", 0)
        .add_u32(&format!("{arch}.block_count"), spec.n_layer)
        .add_u32(&format!("{arch}.context_length"), spec.n_ctx_train)
        .add_u32(&format!("{arch}.embedding_length"), spec.n_embd)
        .add_u32(&format!("{arch}.feed_forward_length"), spec.n_ff)
        .add_u32(&format!("{arch}.attention.head_count"), spec.n_head)
        .add_u32(&format!("{arch}.attention.head_count_kv"), spec.n_head_kv)
        .add_u32(&format!("{arch}.attention.key_length"), spec.head_dim)
        .add_u32(&format!("{arch}.attention.value_length"), spec.head_dim)
        .add_f32(&format!("{arch}.rope.freq_base"), spec.rope_freq_base)
        .add_f32(
            &format!("{arch}.attention.layer_norm_rms_epsilon"),
            spec.rms_eps,
        )
        .add_string("tokenizer.ggml.model", "gpt2")
        .add_string("tokenizer.ggml.pre", "qwen2")
        .add_string_array("tokenizer.ggml.tokens", vocab.tokens)
        .add_i32_array("tokenizer.ggml.token_type", vocab.token_types)
        .add_string_array("tokenizer.ggml.merges", vocab.merges)
        .add_u32("tokenizer.ggml.bos_token_id", spec.bos_id)
        .add_u32("tokenizer.ggml.eos_token_id", spec.eos_id)
        .add_u32("tokenizer.ggml.padding_token_id", spec.pad_id)
        .add_bool("tokenizer.ggml.add_bos_token", false);

    let mut rng = SplitMix64::new(seed);
    let e = u64::from(spec.n_embd);
    let hd = u64::from(spec.head_dim);
    let norm = |w: &mut GgufWriter, name: &str, n: u64, rng: &mut SplitMix64| {
        w.add_tensor_f32(name, &[n], rng.normal_vec(n as usize, 1.0, 0.02));
    };
    let embd_dims = [e, u64::from(spec.n_vocab)];
    w.add_tensor_f32(
        "token_embd.weight",
        &embd_dims,
        rng.normal_vec(n_elems(&embd_dims), 0.0, 0.2),
    );
    let targets = spec.lora_targets();
    for b in 0..u64::from(spec.n_layer) {
        norm(&mut w, &format!("blk.{b}.attn_norm.weight"), e, &mut rng);
        norm(&mut w, &format!("blk.{b}.attn_q_norm.weight"), hd, &mut rng);
        norm(&mut w, &format!("blk.{b}.attn_k_norm.weight"), hd, &mut rng);
        norm(&mut w, &format!("blk.{b}.ffn_norm.weight"), e, &mut rng);
        let prefix = format!("blk.{b}.");
        for t in targets.iter().filter(|t| t.name.starts_with(&prefix)) {
            let dims = [t.n_in, t.n_out];
            let std = 1.0 / (t.n_in as f32).sqrt();
            w.add_tensor_f32(&t.name, &dims, rng.normal_vec(n_elems(&dims), 0.0, std));
        }
    }
    norm(&mut w, "output_norm.weight", e, &mut rng);
    w.write(path)?;
    Ok(spec)
}

/// Write a LoRA adapter for the model described by `spec`: `lora_a` with
/// `ne = [in, rank]` and `lora_b` with `ne = [rank, out]` for the 7
/// projections of every block.
///
/// Both A and B are random and non-zero (unlike a fresh PEFT init): A ~
/// N(0, 1/sqrt(in)) and B scaled so that (alpha/rank)·B·A·x has entries of
/// about 0.5 — half the base W·x (~1) — whatever rank and alpha.
pub fn write_tiny_lora(
    path: &Path,
    spec: &TinyModelSpec,
    rank: u32,
    alpha: f32,
    seed: u64,
) -> Result<(), GgufError> {
    let invalid = |detail: String| GgufError::InvalidWrite {
        path: path.to_path_buf(),
        detail,
    };
    if rank == 0 || rank > 4096 {
        return Err(invalid(format!("LoRA rank '{rank}' must be 1..=4096")));
    }
    if !(alpha.is_finite() && alpha > 0.0) {
        return Err(invalid(format!("LoRA alpha '{alpha}' must be positive")));
    }
    let mut w = GgufWriter::new();
    w.add_string("general.architecture", spec.architecture)
        .add_string("general.type", "adapter")
        .add_string("general.name", "her-studio tiny qwen3 LoRA (random)")
        .add_string("adapter.type", "lora")
        .add_f32("adapter.lora.alpha", alpha);

    let mut rng = SplitMix64::new(seed);
    let r = u64::from(rank);
    let std_b = 0.5 * (rank as f32).sqrt() / alpha;
    for t in spec.lora_targets() {
        let a_dims = [t.n_in, r];
        let b_dims = [r, t.n_out];
        let std_a = 1.0 / (t.n_in as f32).sqrt();
        w.add_tensor_f32(
            &format!("{}.lora_a", t.name),
            &a_dims,
            rng.normal_vec(n_elems(&a_dims), 0.0, std_a),
        );
        w.add_tensor_f32(
            &format!("{}.lora_b", t.name),
            &b_dims,
            rng.normal_vec(n_elems(&b_dims), 0.0, std_b),
        );
    }
    w.write(path)
}

/// The tiny byte-level BPE vocabulary as a GGUF tokenizer (gpt2 model,
/// ChatML specials), for fixtures llama.cpp can load.
pub fn add_tiny_tokenizer(w: &mut GgufWriter) {
    let vocab = tiny_bpe_vocab();
    w.add_string("tokenizer.ggml.model", "gpt2")
        .add_string("tokenizer.ggml.pre", "qwen2")
        .add_string_array("tokenizer.ggml.tokens", vocab.tokens)
        .add_i32_array("tokenizer.ggml.token_type", vocab.token_types)
        .add_string_array("tokenizer.ggml.merges", vocab.merges)
        .add_u32("tokenizer.ggml.bos_token_id", vocab.special.endoftext)
        .add_u32("tokenizer.ggml.eos_token_id", vocab.special.im_end)
        .add_bool("tokenizer.ggml.add_bos_token", false);
}

/// A tiny random Qwen2 (q/k/v biases, untied output head, head_dim =
/// n_embd / n_head as llama.cpp's qwen2 requires) over the tiny BPE vocab,
/// as an unwritten GgufWriter so a test can add to it. Scales as the
/// Qwen3 fixture's.
pub fn tiny_qwen2_writer(seed: u64) -> GgufWriter {
    let vocab = tiny_bpe_vocab();
    let n_vocab = vocab.tokens.len() as u64;
    let (e, nh, nkv, hd, ff) = (64u64, 4u64, 2u64, 16u64, 128u64);
    let mut rng = SplitMix64::new(seed);
    let mut normal = |n: u64, mean: f32, std: f32| -> Vec<f32> {
        (0..n).map(|_| mean + std * rng.normal() as f32).collect()
    };
    let mut w = GgufWriter::new();
    w.add_string("general.architecture", "qwen2")
        .add_string("general.name", "her-studio tiny qwen2 (random weights)")
        .add_u32("general.file_type", 0)
        .add_u32("qwen2.block_count", 2)
        .add_u32("qwen2.context_length", 4096)
        .add_u32("qwen2.embedding_length", e as u32)
        .add_u32("qwen2.feed_forward_length", ff as u32)
        .add_u32("qwen2.attention.head_count", nh as u32)
        .add_u32("qwen2.attention.head_count_kv", nkv as u32)
        .add_f32("qwen2.rope.freq_base", 1e6)
        .add_f32("qwen2.attention.layer_norm_rms_epsilon", 1e-6);
    add_tiny_tokenizer(&mut w);
    w.add_tensor_f32(
        "token_embd.weight",
        &[e, n_vocab],
        normal(e * n_vocab, 0.0, 0.2),
    );
    for b in 0..2 {
        let p = format!("blk.{b}");
        w.add_tensor_f32(&format!("{p}.attn_norm.weight"), &[e], normal(e, 1.0, 0.02));
        w.add_tensor_f32(&format!("{p}.ffn_norm.weight"), &[e], normal(e, 1.0, 0.02));
        for (name, n_in, n_out, bias) in [
            ("attn_q", e, nh * hd, true),
            ("attn_k", e, nkv * hd, true),
            ("attn_v", e, nkv * hd, true),
            ("attn_output", nh * hd, e, false),
            ("ffn_gate", e, ff, false),
            ("ffn_up", e, ff, false),
            ("ffn_down", ff, e, false),
        ] {
            let std = 1.0 / (n_in as f32).sqrt();
            w.add_tensor_f32(
                &format!("{p}.{name}.weight"),
                &[n_in, n_out],
                normal(n_in * n_out, 0.0, std),
            );
            if bias {
                w.add_tensor_f32(
                    &format!("{p}.{name}.bias"),
                    &[n_out],
                    normal(n_out, 0.0, 0.3),
                );
            }
        }
    }
    w.add_tensor_f32("output_norm.weight", &[e], normal(e, 1.0, 0.02));
    w.add_tensor_f32(
        "output.weight",
        &[e, n_vocab],
        normal(e * n_vocab, 0.0, 0.2),
    );
    w
}

/// Write [`tiny_qwen2_writer`]'s model to `path`.
pub fn write_tiny_qwen2(path: &Path, seed: u64) -> Result<(), GgufError> {
    tiny_qwen2_writer(seed).write(path)
}
