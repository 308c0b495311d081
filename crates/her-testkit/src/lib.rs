//! Fixtures shared by the integration tests of every crate: the generated
//! tiny Qwen3 model and LoRA adapter, the real SmolLM2 model that the
//! README's test command fetches, and engine settings sized for tests.
//!
//! Use it only from `tests/` folders, never from a `#[cfg(test)]` module:
//! integration tests link the same library artifacts as this crate does, a
//! unit-test build would be a second copy whose types do not match.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use her_core::generation::SamplingConfig;
use her_engine::{LocalEngine, LocalEngineOptions};
use her_gguf::{TinyModelSpec, write_tiny_lora, write_tiny_qwen3};

pub const TINY_SEED: u64 = 1234;

pub struct Tiny {
    pub model: PathBuf,
    pub lora: PathBuf,
    pub spec: TinyModelSpec,
}

/// `her-fixtures` under a test binary's scratch folder (its
/// `CARGO_TARGET_TMPDIR`, which only integration tests are given).
pub fn fixture_dir(target_tmp: &Path) -> PathBuf {
    let dir = target_tmp.join("her-fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The tiny random-weight Qwen3 and its LoRA, generated on first use.
pub fn tiny_in(target_tmp: &Path) -> &'static Tiny {
    static TINY: OnceLock<Tiny> = OnceLock::new();
    TINY.get_or_init(|| {
        let dir = fixture_dir(target_tmp);
        // Per-binary file names: test binaries run concurrently.
        let tag = std::process::id();
        let model = dir.join(format!("tiny-qwen3-{tag}.gguf"));
        let lora = dir.join(format!("tiny-qwen3-lora-{tag}.gguf"));
        let spec = write_tiny_qwen3(&model, TINY_SEED).unwrap();
        write_tiny_lora(&lora, &spec, 4, 8.0, TINY_SEED + 1).unwrap();
        Tiny { model, lora, spec }
    })
}

/// The repository root (the studio folder).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
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
    SamplingConfig {
        seed,
        max_new_tokens,
        stop: Vec::new(),
        ..SamplingConfig::default()
    }
}

pub const CHATML_PROMPT: &str = "<|im_start|>system\nYou are Elizabeth.<|im_end|>\n<|im_start|>user\nHello there.<|im_end|>\n<|im_start|>assistant\n<system_thinking>";
