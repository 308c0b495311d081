//! The `[lore]` and `[memory]` sections: how a session's story is assembled.

use serde::{Deserialize, Serialize};

/// Lorebooks (World Info): the books every session uses and the scan
/// settings (SillyTavern's global World Info settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoreConfig {
    /// Books of `characters/lore/` attached to every session, by name.
    pub books: Vec<String>,
    /// Messages searched for keys.
    pub scan_depth: u32,
    /// 1..=100: percent of the context; above 100: tokens.
    pub budget: u32,
    /// Most tokens whatever the percentage (0 = no cap).
    pub budget_cap: u32,
    pub recursive: bool,
    /// Scan passes at most (0 = unlimited).
    pub max_recursion_steps: u32,
    pub case_sensitive: bool,
    pub match_whole_words: bool,
    /// Messages are scanned as "Name: text".
    pub include_names: bool,
}

impl Default for LoreConfig {
    fn default() -> Self {
        Self {
            books: Vec::new(),
            scan_depth: 2,
            budget: 25,
            budget_cap: 0,
            recursive: true,
            max_recursion_steps: 0,
            case_sensitive: false,
            match_whole_words: true,
            include_names: true,
        }
    }
}

/// Long-term memory: pinned memories and the rolling summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    /// Tokens the memory paragraph may take in the prompt.
    pub budget_tokens: u32,
    /// Write a summary when a prompt fills this share of the context
    /// (0 = only when turns are dropped).
    pub summary_threshold: f64,
    /// Newest messages never summarised (they are in the prompt anyway).
    pub keep_recent: u32,
    /// Longest summary the model may write, in tokens.
    pub summary_max_tokens: u32,
    /// Who writes the summary: the chat model, or the `[judge]` backend
    /// (a bigger local GGUF or a server) so the chat's context and speed
    /// are left alone.
    #[serde(default)]
    pub summarizer: Summarizer,
}

/// `memory.summarizer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Summarizer {
    #[default]
    Chat,
    Judge,
}

impl Summarizer {
    pub const NAMES: [&'static str; 2] = ["chat", "judge"];
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            budget_tokens: 512,
            summary_threshold: 0.75,
            keep_recent: 4,
            summary_max_tokens: 256,
            summarizer: Summarizer::Chat,
        }
    }
}
