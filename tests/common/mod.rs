//! Shared test fixtures: the generated tiny Qwen3 model and LoRA adapter,
//! written once per test binary under target/, and the real SmolLM2 model
//! that the README's test command fetches.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub mod tmux;

use her_studio::config::SamplingConfig;
use her_studio::engine::{LocalEngine, LocalEngineOptions};
use her_studio::gguf::{TinyModelSpec, write_tiny_lora, write_tiny_qwen3};

pub const TINY_SEED: u64 = 1234;

pub struct Tiny {
    pub model: PathBuf,
    pub lora: PathBuf,
    pub spec: TinyModelSpec,
}

pub fn fixture_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("her-fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The tiny random-weight Qwen3 and its LoRA, generated on first use.
pub fn tiny() -> &'static Tiny {
    static TINY: OnceLock<Tiny> = OnceLock::new();
    TINY.get_or_init(|| {
        let dir = fixture_dir();
        // Per-binary file names: test binaries run concurrently.
        let tag = std::process::id();
        let model = dir.join(format!("tiny-qwen3-{tag}.gguf"));
        let lora = dir.join(format!("tiny-qwen3-lora-{tag}.gguf"));
        let spec = write_tiny_qwen3(&model, TINY_SEED).unwrap();
        write_tiny_lora(&lora, &spec, 4, 8.0, TINY_SEED + 1).unwrap();
        Tiny { model, lora, spec }
    })
}

/// The real SmolLM2-135M-Instruct Q4_1 model, fetched by `scripts/test`.
pub fn smollm2() -> PathBuf {
    let path = repo_root().join("assets/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.is_file(),
        "'{}' is missing: run the README test command (scripts/test), which fetches it",
        path.display()
    );
    path
}

/// The `her` binary under test: this build's, or `TEST_HER_BIN` (to run
/// the end-to-end checks against another build, e.g. the code before a fix).
pub fn her_bin() -> PathBuf {
    std::env::var_os("TEST_HER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_her")))
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Engine options for tests: small context, two threads.
pub fn options(model: &Path) -> LocalEngineOptions {
    let mut o = LocalEngineOptions::new(model);
    o.n_ctx = 4096;
    o.n_batch = 256;
    o.threads = 2;
    o
}

pub fn start(model: &Path) -> LocalEngine {
    LocalEngine::start(options(model)).unwrap()
}

/// Default sampling with a given seed and length, no stop strings.
pub fn sampling(seed: u32, max_new_tokens: u32) -> SamplingConfig {
    let mut s = her_studio::config::Config::default().sampling;
    s.seed = seed;
    s.max_new_tokens = max_new_tokens;
    s.stop = Vec::new();
    s
}

pub const CHATML_PROMPT: &str = "<|im_start|>system\nYou are Elizabeth.<|im_end|>\n<|im_start|>user\nHello there.<|im_end|>\n<|im_start|>assistant\n<system_thinking>";

/// A tiny random Qwen2 (q/k/v biases, untied output head, head_dim =
/// n_embd / n_head as llama.cpp's qwen2 requires) over the tiny BPE vocab,
/// as an unwritten GgufWriter so a test can add to it. Scales as the
/// Qwen3 fixture's.
pub fn tiny_qwen2_writer(seed: u64) -> her_studio::gguf::GgufWriter {
    use her_studio::train::lora::rng::SplitMix64;
    let vocab = her_studio::gguf::tiny_bpe_vocab();
    let n_vocab = vocab.tokens.len() as u64;
    let (e, nh, nkv, hd, ff) = (64u64, 4u64, 2u64, 16u64, 128u64);
    let mut rng = SplitMix64::new(seed);
    let mut normal = |n: u64, mean: f32, std: f32| -> Vec<f32> {
        (0..n).map(|_| mean + std * rng.normal() as f32).collect()
    };
    let mut w = her_studio::gguf::GgufWriter::new();
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
        .add_f32("qwen2.attention.layer_norm_rms_epsilon", 1e-6)
        .add_string("tokenizer.ggml.model", "gpt2")
        .add_string("tokenizer.ggml.pre", "qwen2")
        .add_string_array("tokenizer.ggml.tokens", vocab.tokens)
        .add_i32_array("tokenizer.ggml.token_type", vocab.token_types)
        .add_string_array("tokenizer.ggml.merges", vocab.merges)
        .add_u32("tokenizer.ggml.bos_token_id", vocab.special.endoftext)
        .add_u32("tokenizer.ggml.eos_token_id", vocab.special.im_end)
        .add_bool("tokenizer.ggml.add_bos_token", false);
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
