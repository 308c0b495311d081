//! Shared test fixtures: the generated tiny Qwen3 model and LoRA adapter,
//! written once per test binary under target/, and the real SmolLM2 model
//! that the README's test command fetches.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

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
