//! How the story counts tokens for its budgets (lore, memory): with the chat
//! model's own vocabulary when it is on this machine, otherwise with a fixed
//! estimate. The caller decides which (her-core reads no model files).

use std::fmt;
use std::sync::Arc;

use crate::prompt::estimate_tokens;

type Count = dyn Fn(&str) -> usize + Send + Sync;

/// Counts the tokens of a piece of prompt text.
#[derive(Clone, Default)]
pub struct TokenCounter {
    /// `None`: the estimate of [`estimate_tokens`].
    exact: Option<Arc<Count>>,
}

impl TokenCounter {
    /// About four characters a token: what a remote backend gets, whose
    /// vocabulary we cannot read.
    pub fn estimate() -> Self {
        TokenCounter { exact: None }
    }

    /// The model's tokenizer, as `count` applies it.
    pub fn exact(count: impl Fn(&str) -> usize + Send + Sync + 'static) -> Self {
        TokenCounter {
            exact: Some(Arc::new(count)),
        }
    }

    pub fn count(&self, text: &str) -> usize {
        match &self.exact {
            Some(count) => count(text),
            None => estimate_tokens(text),
        }
    }

    /// Whether counts come from the model's vocabulary.
    pub fn is_exact(&self) -> bool {
        self.exact.is_some()
    }

    /// How counts are made, for `/lore` and `her prompt`.
    pub fn describe(&self) -> &'static str {
        if self.is_exact() {
            "counted with the chat model's vocabulary"
        } else {
            "estimated at four characters a token (the chat model's vocabulary is not on this machine)"
        }
    }
}

impl fmt::Debug for TokenCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.is_exact() { "exact" } else { "estimate" };
        write!(f, "TokenCounter({kind})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_is_four_characters_a_token_and_exact_counts_are_the_callers() {
        let estimate = TokenCounter::default();
        assert!(!estimate.is_exact());
        assert_eq!(estimate.count("abcdefghi"), 3);
        let words = TokenCounter::exact(|t| t.split_whitespace().count());
        assert!(words.is_exact());
        assert_eq!(words.count("one two three"), 3);
        assert_eq!(format!("{words:?}"), "TokenCounter(exact)");
    }
}
