//! The model's tokenizer alone, for counting tokens without an engine.

use std::path::Path;

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;

use super::{check_model_file, llama};
use crate::EngineError;

/// A model loaded with its vocabulary only (fast, no weights in memory).
pub struct Vocab {
    model: LlamaModel,
}

impl Vocab {
    pub fn load(path: &Path) -> Result<Self, EngineError> {
        check_model_file(path)?;
        let params = LlamaModelParams::default().with_vocab_only(true);
        let model = LlamaModel::load_from_file(llama::backend()?, path, &params).map_err(|e| {
            EngineError::ModelLoad {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }
        })?;
        Ok(Self { model })
    }

    /// Token ids as a prompt would see them (special tokens parsed).
    pub fn tokenize(&self, text: &str) -> Vec<i32> {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), false, true)
            .into_iter()
            .map(|t| t.0)
            .collect()
    }

    pub fn count(&self, text: &str) -> usize {
        self.tokenize(text).len()
    }

    /// Lore and memory budgets counted with this vocabulary (shared with
    /// whoever counts prompt sections with it).
    pub fn counter(self: std::sync::Arc<Self>) -> her_core::story::TokenCounter {
        her_core::story::TokenCounter::exact(move |text| self.count(text))
    }
}
