//! The AI judge run on any backend (a local GGUF such as a quantized HER-RM,
//! or a server), in both candidate orders so position bias cancels.

use crate::{Backend, EngineError, GenerateRequest};
use her_core::generation::SamplingConfig;
use her_core::judge::{
    JudgeCase, JudgeParseError, Judgement, combine_orders, judge_prompt, parse_judgement,
    verdict_grammar,
};
use her_core::prefs::Verdict;

#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    #[error("the judge model failed: {0}")]
    Engine(EngineError),
    #[error("the judge's answer ({order} order) could not be read: {cause}")]
    Unreadable {
        order: &'static str,
        cause: JudgeParseError,
    },
}

// By hand, not `#[from]`: the message already shows the cause, so it must
// not also be the `source()` (an error chain would print it twice).
impl From<EngineError> for JudgeError {
    fn from(cause: EngineError) -> Self {
        Self::Engine(cause)
    }
}

/// Both judgements and what they add up to.
#[derive(Debug, Clone, PartialEq)]
pub struct PairVerdict {
    /// Candidates as given.
    pub forward: Judgement,
    /// Candidates swapped, as the judge answered (cand_1 = the given cand_2).
    pub reverse: Judgement,
    /// In the given order; a disagreement between the orders is a tie.
    pub combined: Verdict,
}

/// Judges `case` in both orders on `backend`.
pub async fn judge_pair(
    backend: &dyn Backend,
    case: &JudgeCase<'_>,
    sampling: &SamplingConfig,
) -> Result<PairVerdict, JudgeError> {
    let swapped = JudgeCase {
        cand_1: case.cand_2,
        cand_2: case.cand_1,
        ..*case
    };
    let forward = judge_once(backend, case, sampling, "given").await?;
    let reverse = judge_once(backend, &swapped, sampling, "swapped").await?;
    let combined = combine_orders(forward.better, reverse.better);
    Ok(PairVerdict {
        forward,
        reverse,
        combined,
    })
}

async fn judge_once(
    backend: &dyn Backend,
    case: &JudgeCase<'_>,
    sampling: &SamplingConfig,
    order: &'static str,
) -> Result<Judgement, JudgeError> {
    let mut request = GenerateRequest::new(judge_prompt(case), sampling.clone());
    request.grammar = Some(verdict_grammar());
    let outcome = super::stream_reply(backend, request, |_| {}).await?;
    parse_judgement(&outcome.reply).map_err(|cause| JudgeError::Unreadable { order, cause })
}
