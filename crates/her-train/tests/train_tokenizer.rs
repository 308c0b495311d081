//! The trainer's tokenizer, built from the GGUF's vocabulary, gives exactly
//! llama.cpp's token ids: ChatML markers, HER tags, non-ASCII text, emoji,
//! digits, odd whitespace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use her_engine::local::Vocab;
use her_train::tokenizer::{encode, from_gguf};

const CORPUS: &[&str] = &[
    "<|im_start|>system\nYou are Elizabeth Bennet.<|im_end|>\n<|im_start|>user\nMr. Darcy: Do you dance?<|im_end|>\n<|im_start|>assistant\n",
    "<system_thinking>She is wary; tease him.</system_thinking>Elizabeth Bennet: <role_thinking>Him again.</role_thinking><role_action>curtsies</role_action>Not tonight, sir.",
    "Très bien — naïve café, São Paulo, Zürich, Ærøskøbing.",
    "夏目漱石『こころ』 — 先生と私。 Москва, Ελληνικά, עברית, العربية",
    "Emoji: 🌿🎭👩‍👩‍👧 and flags 🇫🇷 and ☕️.",
    "Numbers 1234567 3.14159 1,000,000 and 2026-11-25T22:35:39Z.",
    "  leading spaces,\ttabs,\n\n\nnewlines\r\n and trailing   ",
    "It's, we'll, I'd, they're, you've, I'M, DON'T — 'quoted' \"double\"",
    "<|im_end|><|im_start|><role_action></role_action><system_thinking>",
    "",
];

fn check(model: &std::path::Path) {
    let ours = from_gguf(model).unwrap();
    let llama = Vocab::load(model).unwrap();
    for text in CORPUS {
        let expected: Vec<u32> = llama.tokenize(text).into_iter().map(|t| t as u32).collect();
        assert_eq!(encode(&ours, text).unwrap(), expected, "text {text:?}");
    }
}

#[test]
fn tiny_qwen3_ids_equal_llama_cpp() {
    check(&common::tiny().model);
}

#[test]
fn smollm2_ids_equal_llama_cpp() {
    check(&common::smollm2());
}
