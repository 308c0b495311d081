//! The token budget for activated entries.

use serde::{Deserialize, Serialize};

/// How much of the prompt lorebook entries may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Budget {
    /// Percent of the context left for the prompt (SillyTavern's
    /// `world_info_budget`, 1–100).
    PercentOfContext(u32),
    /// A fixed number of tokens.
    Tokens(u32),
}

impl Default for Budget {
    fn default() -> Self {
        Budget::PercentOfContext(25)
    }
}

/// SillyTavern's rule: `round(percent × context / 100)`, at least 1, then
/// at most the cap when one is set.
pub fn budget_tokens(budget: Budget, cap: u32, max_context: usize) -> usize {
    let tokens = match budget {
        Budget::PercentOfContext(percent) => {
            (f64::from(percent.min(100)) * max_context as f64 / 100.0).round() as usize
        }
        Budget::Tokens(n) => n as usize,
    }
    .max(1);
    if cap > 0 {
        tokens.min(cap as usize)
    } else {
        tokens
    }
}

/// Tokens spent so far, with SillyTavern's overflow rule: an entry whose
/// tokens would bring the total to the budget or past it is dropped whole,
/// and after that only entries that ignore the budget get in.
#[derive(Debug, Clone, Copy)]
pub struct Spend {
    pub budget: usize,
    pub used: usize,
    pub overflowed: bool,
}

impl Spend {
    pub fn new(budget: usize) -> Spend {
        Spend {
            budget,
            used: 0,
            overflowed: false,
        }
    }

    pub fn left(&self) -> usize {
        self.budget.saturating_sub(self.used)
    }

    /// Takes `tokens` if they fit (or the entry ignores the budget);
    /// false marks the overflow.
    pub fn take(&mut self, tokens: usize, ignore_budget: bool) -> bool {
        if !ignore_budget && self.used + tokens >= self.budget {
            self.overflowed = true;
            return false;
        }
        self.used += tokens;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_rounds_and_the_cap_limits() {
        assert_eq!(budget_tokens(Budget::PercentOfContext(25), 0, 8190), 2048);
        assert_eq!(
            budget_tokens(Budget::PercentOfContext(25), 1000, 8190),
            1000
        );
        assert_eq!(budget_tokens(Budget::PercentOfContext(1), 0, 10), 1);
        assert_eq!(budget_tokens(Budget::Tokens(0), 0, 10), 1);
        assert_eq!(budget_tokens(Budget::Tokens(300), 0, 10), 300);
    }

    #[test]
    fn reaching_the_budget_exactly_overflows() {
        let mut s = Spend::new(10);
        assert!(s.take(4, false));
        assert!(!s.take(6, false), "4 + 6 >= 10");
        assert!(s.overflowed);
        assert!(s.take(50, true), "ignoring the budget always fits");
        assert_eq!((s.used, s.left()), (54, 0));
    }
}
