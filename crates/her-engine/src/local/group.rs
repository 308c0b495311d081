//! Group generation: several replies to one prompt decoded together, as
//! vLLM and TRL write GRPO rollouts.
//!
//! The prompt is evaluated once on sequence 0 (reusing the KV prefix cache
//! like `generate`), its cells are shared with sequences 1..G, and every
//! step decodes one token per live sequence in a single batch. On a small
//! model decoding is bound by reading the weights (and an unmerged LoRA's
//! products), so G tokens per read cost little more than one.

use std::time::Instant;

use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use super::sampler;
use super::session::{Session, tokens_sha256};
use crate::detok::Utf8Stream;
use crate::stop::StopMatcher;
use crate::{
    EngineError, FinishReason, Finished, GenerationStats, GroupReply, GroupRequest, Provenance,
};

/// One sequence of the group while it is decoded.
struct Member {
    seed: u32,
    seq: i32,
    chain: LlamaSampler,
    utf8: Utf8Stream,
    stops: StopMatcher,
    text: String,
    tokens: Vec<i32>,
    /// Set once the member has stopped.
    reason: Option<FinishReason>,
    stop_string: Option<String>,
    /// Where its next logits are in the last batch's outputs.
    output: i32,
    first_token_at: Option<Instant>,
    finished_at: Option<Instant>,
}

/// What a member does after its token was sampled.
enum Next {
    /// Feed this token back at the next step.
    Feed(LlamaToken),
    Stop(FinishReason),
}

impl Member {
    fn new(seed: u32, seq: i32, chain: LlamaSampler, stop: &[String]) -> Self {
        Self {
            seed,
            seq,
            chain,
            utf8: Utf8Stream::new(),
            stops: StopMatcher::new(stop),
            text: String::new(),
            tokens: Vec::new(),
            reason: None,
            stop_string: None,
            // The first token comes from the prompt's last logits, the last output.
            output: -1,
            first_token_at: None,
            finished_at: None,
        }
    }

    fn live(&self) -> bool {
        self.reason.is_none()
    }

    /// The same checks, in the same order, as `Session::generate`'s loop.
    fn take(&mut self, session: &Session<'_>, budget: usize) -> Next {
        let token = self.chain.sample(&session.ctx, self.output);
        self.first_token_at.get_or_insert_with(Instant::now);
        let vocab = session.model.vocab();
        if vocab.is_eog(token) {
            return Next::Stop(FinishReason::EndOfGeneration);
        }
        self.tokens.push(token.0);
        let piece = vocab.token_to_piece(token, true, None);
        let scan = self.stops.push(&self.utf8.push(&piece));
        self.text.push_str(&scan.emit);
        if scan.stopped_on.is_some() {
            self.stop_string = scan.stopped_on;
            return Next::Stop(FinishReason::StopString);
        }
        if self.tokens.len() >= budget {
            return Next::Stop(FinishReason::MaxTokens);
        }
        Next::Feed(token)
    }

    fn stop(&mut self, reason: FinishReason) {
        self.reason = Some(reason);
        self.finished_at = Some(Instant::now());
    }

    /// Releases text held back for an unfinished character or stop string,
    /// exactly as `generate` does at its end.
    fn release_tail(&mut self) {
        if self.reason == Some(FinishReason::StopString) {
            return;
        }
        let tail = self.stops.push(&self.utf8.finish());
        self.text.push_str(&tail.emit);
        if tail.stopped_on.is_none() {
            self.text.push_str(&self.stops.finish());
        }
    }
}

/// Prompt facts shared by every member's final event.
struct PromptFacts {
    tokens: usize,
    evaluated: usize,
    prompt_ms: f64,
    sha256: String,
    tokens_sha256: String,
}

impl<'m> Session<'m> {
    /// One reply per seed of `request`, decoded as parallel sequences.
    /// `cancelled` is polled before every step; the KV cache holds just the
    /// prompt on sequence 0 afterwards.
    pub fn generate_group(
        &mut self,
        request: &GroupRequest,
        cancelled: impl Fn() -> bool,
        provenance: &Provenance,
        received: Instant,
    ) -> Result<Vec<GroupReply>, EngineError> {
        let sampling = &request.sampling;
        sampler::validate(sampling)?;
        let group = request.seeds.len();
        if group == 0 {
            return Ok(Vec::new());
        }
        if group > self.n_seq_max || group > self.n_batch {
            return Err(EngineError::TooManySequences {
                asked: group,
                max: self.n_seq_max.min(self.n_batch),
            });
        }
        let prompt = self.tokenize(&request.prompt, true);
        if prompt.is_empty() {
            return Err(EngineError::Decode("the prompt is empty".into()));
        }
        let budget = reply_budget(
            prompt.len(),
            group,
            self.n_ctx,
            sampling.max_new_tokens as usize,
        )?;

        let prompt_start = Instant::now();
        let mut last_logits_seen = false;
        let reused = self.evaluate(&prompt, prompt.len() - 1, |_, _| last_logits_seen = true)?;
        if !last_logits_seen {
            return Err(EngineError::Decode(
                "no logits for the last prompt token".into(),
            ));
        }
        let facts = PromptFacts {
            tokens: prompt.len(),
            evaluated: prompt.len() - reused,
            prompt_ms: prompt_start.elapsed().as_secs_f64() * 1e3,
            sha256: her_core::hashing::sha256_hex(request.prompt.as_bytes()),
            tokens_sha256: tokens_sha256(prompt.iter().map(|t| t.0)),
        };
        for seq in 1..group {
            self.share_prompt(seq as i32)?;
        }

        let mut members = self.members(request, &prompt)?;
        if let Err(err) = self.decode_group(&mut members, prompt.len(), budget, &cancelled) {
            // The cache is in an unknown state after a failed decode.
            self.reset();
            return Err(err);
        }
        self.drop_replies(group, prompt.len());

        Ok(members
            .into_iter()
            .map(|mut m| {
                m.release_tail();
                finish(m, &facts, provenance, received, sampling)
            })
            .collect())
    }

    /// Sequence `seq` starts as a copy of the prompt on sequence 0. In a
    /// unified cache this only tags the prompt's cells with `seq`.
    fn share_prompt(&mut self, seq: i32) -> Result<(), EngineError> {
        self.ctx
            .copy_kv_cache_seq(0, seq, None, None)
            .map_err(|e| EngineError::Decode(e.to_string()))
    }

    /// A sampler chain per seed; with penalties, each sees the prompt's tail
    /// as `generate`'s does.
    fn members(
        &self,
        request: &GroupRequest,
        prompt: &[LlamaToken],
    ) -> Result<Vec<Member>, EngineError> {
        let sampling = &request.sampling;
        request
            .seeds
            .iter()
            .enumerate()
            .map(|(seq, &seed)| {
                let mut s = sampling.clone();
                s.seed = seed;
                let mut chain = sampler::build_chain(&s, self.model)?;
                let window = sampler::prompt_history(&s).min(prompt.len());
                chain.accept_many(&prompt[prompt.len() - window..]);
                Ok(Member::new(seed, seq as i32, chain, &sampling.stop))
            })
            .collect()
    }

    /// Samples every live member from its logits, then decodes the tokens
    /// of those that go on in one batch, until all have stopped.
    fn decode_group(
        &mut self,
        members: &mut [Member],
        prompt_len: usize,
        budget: usize,
        cancelled: &impl Fn() -> bool,
    ) -> Result<(), EngineError> {
        let mut batch = LlamaBatch::new(members.len(), 1);
        // Cells in use: the shared prompt plus every token fed back so far.
        let mut used = prompt_len;
        loop {
            if cancelled() {
                for m in members.iter_mut().filter(|m| m.live()) {
                    m.stop(FinishReason::Cancelled);
                }
                return Ok(());
            }
            let mut feed = Vec::with_capacity(members.len());
            for (i, m) in members.iter_mut().enumerate().filter(|(_, m)| m.live()) {
                match m.take(self, budget) {
                    Next::Feed(token) => feed.push((i, token)),
                    Next::Stop(reason) => m.stop(reason),
                }
            }
            if feed.is_empty() {
                return Ok(());
            }
            if used + feed.len() > self.n_ctx {
                // Not reached with the budget from `reply_budget`; kept as a guard.
                for &(i, _) in &feed {
                    members[i].stop(FinishReason::ContextFull);
                }
                return Ok(());
            }
            batch.clear();
            for (output, &(i, token)) in feed.iter().enumerate() {
                let m = &mut members[i];
                // The token sampled last sits right after the ones already fed.
                let pos = (prompt_len + m.tokens.len() - 1) as i32;
                batch
                    .add(token, pos, &[m.seq], true)
                    .map_err(|e| EngineError::Decode(e.to_string()))?;
                m.output = output as i32;
            }
            if let Err(e) = self.ctx.decode(&mut batch) {
                return Err(EngineError::Decode(e.to_string()));
            }
            used += feed.len();
        }
    }

    /// Removes sequences 1..group and sequence 0's reply, leaving the prompt
    /// on sequence 0 (what `cached` says); resets the cache if that fails.
    fn drop_replies(&mut self, group: usize, prompt_len: usize) {
        let mut ok = true;
        for seq in 1..group {
            ok &= matches!(
                self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None),
                Ok(true)
            );
        }
        ok &= matches!(
            self.ctx
                .clear_kv_cache_seq(Some(0), Some(prompt_len as u32), None),
            Ok(true)
        );
        if !ok || self.cached.len() != prompt_len {
            tracing::warn!("could not trim the KV cache after a group; starting over");
            self.reset();
        }
    }
}

/// Tokens each member may write: what was asked, or less when the window
/// cannot hold the prompt plus `group` replies of that length.
fn reply_budget(
    prompt: usize,
    group: usize,
    n_ctx: usize,
    max_new: usize,
) -> Result<usize, EngineError> {
    let room = n_ctx.saturating_sub(prompt) / group;
    if room == 0 {
        return Err(EngineError::PromptTooLong {
            prompt_tokens: prompt,
            n_ctx,
        });
    }
    Ok(max_new.min(room))
}

fn finish(
    m: Member,
    facts: &PromptFacts,
    provenance: &Provenance,
    received: Instant,
    sampling: &her_core::generation::SamplingConfig,
) -> GroupReply {
    let generated = m.tokens.len();
    let generation_s = match (m.first_token_at, m.finished_at) {
        (Some(first), Some(end)) => (end - first).as_secs_f64(),
        _ => 0.0,
    };
    let ttft = m
        .first_token_at
        .map_or(0.0, |t| (t - received).as_secs_f64() * 1e3);
    let mut member_sampling = sampling.clone();
    member_sampling.seed = m.seed;
    // A token that ended the reply by itself was not fed back into the cache.
    let last_not_fed = matches!(
        m.reason,
        Some(FinishReason::StopString | FinishReason::MaxTokens | FinishReason::ContextFull)
    );
    let fed = generated.saturating_sub(usize::from(last_not_fed));
    GroupReply {
        text: m.text,
        finished: Finished {
            choices: Vec::new(),
            reason: m.reason.unwrap_or(FinishReason::Cancelled),
            stop_string: m.stop_string,
            tokens: m.tokens,
            stats: GenerationStats {
                prompt_tokens: facts.tokens,
                evaluated_prompt_tokens: facts.evaluated,
                generated_tokens: generated,
                time_to_first_token_ms: ttft,
                prompt_ms: facts.prompt_ms,
                generation_ms: generation_s * 1e3,
                tokens_per_second: if generation_s > 0.0 {
                    generated as f64 / generation_s
                } else {
                    0.0
                },
                context_used: facts.tokens + fed,
                // A group's decodes carry every sequence: not split per reply.
                ..GenerationStats::default()
            },
            provenance: Provenance {
                seed: m.seed,
                prompt_sha256: facts.sha256.clone(),
                prompt_tokens_sha256: facts.tokens_sha256.clone(),
                dropped_turns: 0,
                sampling: Some(member_sampling),
                unapplied: Vec::new(),
                ..provenance.clone()
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_shares_the_room_after_the_prompt() {
        assert_eq!(reply_budget(100, 4, 1000, 64).ok(), Some(64));
        assert_eq!(reply_budget(100, 4, 300, 64).ok(), Some(50));
        assert!(matches!(
            reply_budget(300, 4, 300, 64),
            Err(EngineError::PromptTooLong { .. })
        ));
        assert!(matches!(
            reply_budget(298, 4, 300, 64),
            Err(EngineError::PromptTooLong { .. })
        ));
    }
}
