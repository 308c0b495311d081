//! A `tokenizers` Tokenizer built from the GGUF's own vocabulary, so the
//! trainer sees the same token ids llama.cpp does (checked against
//! llama.cpp in crates/her-train/tests/train_tokenizer.rs). Byte-level BPE (`gpt2` models:
//! Qwen2/3, SmolLM2) is supported; a `tokenizer.json` can be used instead.

use std::path::{Path, PathBuf};

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use her_gguf::{GgufArray, GgufFile, inspect};

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(transparent)]
    Gguf(#[from] her_gguf::GgufError),
    #[error("'{}': {what}", path.display())]
    Unsupported { path: PathBuf, what: String },
    #[error("'{}': key '{key}' is missing or has the wrong type", path.display())]
    MissingKey { path: PathBuf, key: &'static str },
    #[error("'{}': cannot build the tokenizer: {reason}", path.display())]
    Build { path: PathBuf, reason: String },
    #[error("cannot tokenize: {0}")]
    Encode(String),
}

/// llama.cpp's `tokenizer.ggml.pre` split rules, as regexes applied in turn.
fn pre_split_regexes(pre: &str) -> Option<&'static [&'static str]> {
    const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
    Some(match pre {
        "qwen2" | "default" => &[
            r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ],
        // SmolLM2: digits one by one, then GPT-2's rule.
        "smollm" => &[r"\p{N}", GPT2],
        "gpt2" => &[GPT2],
        _ => return None,
    })
}

/// The tokenizer of a GGUF model.
pub fn from_gguf(path: &Path) -> Result<Tokenizer, TokenizerError> {
    let file = inspect(path)?;
    build(&file)
}

/// A `tokenizer.json` (Hugging Face format).
pub fn from_json(path: &Path) -> Result<Tokenizer, TokenizerError> {
    Tokenizer::from_file(path).map_err(|e| TokenizerError::Build {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn build(file: &GgufFile) -> Result<Tokenizer, TokenizerError> {
    let path = file.path().to_path_buf();
    let missing = |key| TokenizerError::MissingKey {
        path: path.clone(),
        key,
    };
    let model = file
        .get_str("tokenizer.ggml.model")
        .ok_or_else(|| missing("tokenizer.ggml.model"))?;
    if model != "gpt2" {
        return Err(TokenizerError::Unsupported {
            path,
            what: format!(
                "tokenizer model '{model}' is not supported for training (byte-level BPE 'gpt2' is); \
                 pass a tokenizer.json instead"
            ),
        });
    }
    let pre = file.get_str("tokenizer.ggml.pre").unwrap_or("default");
    let regexes = pre_split_regexes(pre).ok_or_else(|| TokenizerError::Unsupported {
        path: path.clone(),
        what: format!("pre-tokenizer '{pre}' is not supported (qwen2, smollm, gpt2 are)"),
    })?;
    let tokens = file
        .get_str_array("tokenizer.ggml.tokens")
        .ok_or_else(|| missing("tokenizer.ggml.tokens"))?;
    let merges = file
        .get_str_array("tokenizer.ggml.merges")
        .ok_or_else(|| missing("tokenizer.ggml.merges"))?;
    let types = match file.get_array("tokenizer.ggml.token_type") {
        Some(GgufArray::I32(t)) => t.clone(),
        _ => vec![1; tokens.len()],
    };

    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let merges: Vec<(String, String)> = merges
        .iter()
        .filter_map(|m| m.split_once(' '))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| TokenizerError::Build {
            path: path.clone(),
            reason: e.to_string(),
        })?;

    let mut steps: Vec<PreTokenizerWrapper> = Vec::new();
    for regex in regexes {
        let split = Split::new(
            SplitPattern::Regex((*regex).to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| TokenizerError::Build {
            path: path.clone(),
            reason: format!("pre-tokenizer regex: {e}"),
        })?;
        steps.push(split.into());
    }
    // Bytes to the printable alphabet the vocabulary is written in.
    steps.push(ByteLevel::new(false, false, false).into());

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(Sequence::new(steps)));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    // Control (3) and user-defined (4) tokens are matched whole in text, as
    // llama.cpp does when it parses special tokens (ChatML markers, HER tags).
    let added: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, t)| matches!(**t, 3 | 4))
        .map(|(text, t)| AddedToken::from(text.clone(), *t == 3).normalized(false))
        .collect();
    tokenizer
        .add_special_tokens(added)
        .map_err(|e| TokenizerError::Build {
            path,
            reason: format!("special tokens: {e}"),
        })?;
    Ok(tokenizer)
}

/// Token ids of `text`, special tokens parsed, no BOS added.
pub fn encode(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>, TokenizerError> {
    tokenizer
        .encode(text, false)
        .map(|e| e.get_ids().to_vec())
        .map_err(|e| TokenizerError::Encode(e.to_string()))
}
