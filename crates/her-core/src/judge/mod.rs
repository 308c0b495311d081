//! The AI judge's pure half: the pairwise prompt in HER-RM's manner, its
//! grammar, reading the verdict, combining both candidate orders, and how the
//! judge samples. Running it on a backend is the dialogue layer's job.

mod verdict;

pub use verdict::{
    HumanAgreement, JudgeCase, JudgeParseError, Judgement, Principle, agreement_with_humans,
    combine_orders, judge_prompt, max_verdict_chars, parse_judgement, verdict_grammar,
};

use crate::generation::SamplingConfig;

/// How the judge samples: greedy by default, with room for the longest
/// verdict the grammar allows and no stop strings that could cut it.
pub fn judge_sampling(base: &SamplingConfig, grammar_constrained: bool) -> SamplingConfig {
    SamplingConfig {
        temperature: 0.0,
        max_new_tokens: if grammar_constrained {
            max_verdict_chars() as u32
        } else {
            // An unconstrained judge (a real HER-RM) writes long analyses.
            base.max_new_tokens.max(4096)
        },
        stop: Vec::new(),
        repeat_penalty: 1.0,
        ..base.clone()
    }
}
