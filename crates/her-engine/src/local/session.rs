//! One llama.cpp context and the tokens held in its KV cache.
//!
//! `cached` mirrors sequence 0 of the KV cache exactly: a request evaluates
//! only the tokens after the longest common prefix with it.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc::UnboundedSender;

use std::collections::HashMap;

use llama_cpp_2::sampling::LlamaSampler;

use super::banned::{self, PhraseGuard};
use super::sampler;
use super::worker::Shared;
use crate::detok::Utf8Stream;
use crate::fit::fit_prompt;
use crate::stop::StopMatcher;
use crate::{
    Candidate, EngineError, Event, FinishReason, Finished, GenerateRequest, GenerationStats,
    LiveStats, Provenance, Started, TokenChoice, TokenLogprob,
};

/// Streamed text is sent at most this often. Every event wakes the
/// receiving thread, and on a machine whose cores all run llama.cpp's
/// workers each wake-up costs generation speed (measured: a send per token
/// cost 30% on 2 cores); 25 ms is still faster than a terminal redraws.
const FLUSH_INTERVAL: Duration = Duration::from_millis(25);
/// Live statistics are sent at most this often.
const STATS_INTERVAL: Duration = Duration::from_millis(250);

/// Coalesces streamed text into fewer events.
struct Outbox<'a> {
    events: &'a UnboundedSender<Event>,
    text: String,
    last_flush: Instant,
    last_stats: Instant,
}

impl<'a> Outbox<'a> {
    fn new(events: &'a UnboundedSender<Event>) -> Self {
        let now = Instant::now();
        Self {
            events,
            text: String::new(),
            last_flush: now,
            last_stats: now,
        }
    }

    fn push(&mut self, text: &str) {
        self.text.push_str(text);
        if self.last_flush.elapsed() >= FLUSH_INTERVAL {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if !self.text.is_empty() {
            let _ = self
                .events
                .send(Event::Text(std::mem::take(&mut self.text)));
        }
        self.last_flush = Instant::now();
    }

    fn stats(&mut self, stats: impl FnOnce() -> LiveStats) {
        if self.last_stats.elapsed() >= STATS_INTERVAL {
            self.flush();
            let _ = self.events.send(Event::Stats(stats()));
            self.last_stats = Instant::now();
        }
    }
}

/// A drawn token not shown yet (banned phrases hold text back).
struct Held {
    token: LlamaToken,
    piece: Vec<u8>,
    /// The chain's state before this token was drawn, to draw again from.
    before: LlamaSampler,
}

/// Token bytes → UTF-8 text → stop strings → coalesced events.
struct Output<'a> {
    utf8: Utf8Stream,
    stops: StopMatcher,
    outbox: Outbox<'a>,
}

impl Output<'_> {
    /// Shows one token's bytes; `Some(stop string)` when one completed.
    fn emit(&mut self, piece: &[u8]) -> Option<String> {
        let scan = self.stops.push(&self.utf8.push(piece));
        self.outbox.push(&scan.emit);
        scan.stopped_on
    }
}

/// Draws with `banned` set to −∞ first; same steps as `LlamaSampler::sample`.
fn sample_without(
    chain: &mut LlamaSampler,
    ctx: &LlamaContext,
    banned: &[LlamaToken],
) -> Result<LlamaToken, EngineError> {
    let mut cur = ctx.token_data_array();
    for token in banned {
        if let Some(d) = usize::try_from(token.0)
            .ok()
            .and_then(|i| cur.data.get_mut(i))
        {
            d.set_logit(f32::NEG_INFINITY);
        }
    }
    chain.apply(&mut cur);
    let token = cur
        .selected_token()
        .ok_or_else(|| EngineError::Decode("the sampler chain selected no token".into()))?;
    chain.accept(token);
    Ok(token)
}

pub struct Session<'m> {
    pub model: &'m LlamaModel,
    pub ctx: LlamaContext<'m>,
    pub cached: Vec<LlamaToken>,
    pub n_ctx: usize,
    pub n_batch: usize,
    /// Sequences the context can hold (`LocalEngineOptions::parallel_sequences`).
    pub n_seq_max: usize,
}

/// Number of leading tokens two sequences share.
pub fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl<'m> Session<'m> {
    pub fn tokenize(&self, text: &str, add_special: bool) -> Vec<LlamaToken> {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), add_special, true)
    }

    /// Forgets the cache, e.g. after an adapter change made it stale.
    pub fn reset(&mut self) {
        self.ctx.clear_kv_cache();
        self.cached.clear();
    }

    /// Makes the KV cache hold `tokens`, evaluating only what is not cached.
    /// Positions from `first_logit` on get logits, passed to `on_logits` as
    /// (position, logits). Returns how many tokens were reused.
    pub(super) fn evaluate(
        &mut self,
        tokens: &[LlamaToken],
        first_logit: usize,
        mut on_logits: impl FnMut(usize, &[f32]),
    ) -> Result<usize, EngineError> {
        // Positions that need logits must be evaluated even if cached.
        let reused = common_prefix(&self.cached, tokens).min(first_logit);
        if reused < self.cached.len() {
            let removed = self
                .ctx
                .clear_kv_cache_seq(Some(0), Some(reused as u32), None)
                .unwrap_or(false);
            if !removed {
                // Partial removal is not supported by every cache type: start over.
                self.reset();
                return self.evaluate(tokens, 0, on_logits).map(|_| 0);
            }
            self.cached.truncate(reused);
        }
        let mut batch = LlamaBatch::new(self.n_batch, 1);
        let mut start = reused;
        while start < tokens.len() {
            let end = (start + self.n_batch).min(tokens.len());
            batch.clear();
            for (pos, &token) in tokens.iter().enumerate().take(end).skip(start) {
                batch
                    .add(token, pos as i32, &[0], pos >= first_logit)
                    .map_err(|e| EngineError::Decode(e.to_string()))?;
            }
            if let Err(e) = self.ctx.decode(&mut batch) {
                self.reset();
                return Err(EngineError::Decode(e.to_string()));
            }
            self.cached.extend_from_slice(&tokens[start..end]);
            for pos in start.max(first_logit)..end {
                on_logits(pos, self.ctx.get_logits_ith((pos - start) as i32));
            }
            start = end;
        }
        Ok(reused)
    }

    /// Drops the KV cache from position `keep` on and decodes `last` there
    /// again, so its logits are the next draw's (a banned-phrase rewind).
    fn rewind_to(&mut self, keep: usize, last: LlamaToken) -> Result<(), EngineError> {
        let removed = self
            .ctx
            .clear_kv_cache_seq(Some(0), Some(keep as u32), None)
            .unwrap_or(false);
        if !removed {
            self.reset();
            return Err(EngineError::Decode(
                "this model's cache cannot be rewound for a banned phrase".into(),
            ));
        }
        self.cached.truncate(keep);
        let mut batch = LlamaBatch::new(1, 1);
        batch
            .add(last, keep as i32, &[0], true)
            .map_err(|e| EngineError::Decode(e.to_string()))?;
        if let Err(e) = self.ctx.decode(&mut batch) {
            self.reset();
            return Err(EngineError::Decode(e.to_string()));
        }
        self.cached.push(last);
        Ok(())
    }

    /// Runs one generation, sending events until `Finished` or `Failed`.
    pub fn generate(
        &mut self,
        request: &GenerateRequest,
        events: &UnboundedSender<Event>,
        shared: &Shared,
        epoch: u64,
        provenance: Provenance,
        received: Instant,
    ) {
        if let Err(err) = self.try_generate(request, events, shared, epoch, provenance, received) {
            let _ = events.send(Event::Failed(err));
        }
    }

    fn try_generate(
        &mut self,
        request: &GenerateRequest,
        events: &UnboundedSender<Event>,
        shared: &Shared,
        epoch: u64,
        provenance: Provenance,
        received: Instant,
    ) -> Result<(), EngineError> {
        let sampling = &request.sampling;
        sampler::validate(sampling)?;
        let cancelled =
            || shared.cancel_epoch.load(Ordering::SeqCst) != epoch || events.is_closed();

        // 1. Fit the prompt into the window, counting real tokens.
        let source = &request.prompt;
        let fit = fit_prompt(
            |skip| self.tokenize(&source.render(skip), true).len(),
            source.droppable_turns(),
            request.min_skip,
            self.n_ctx,
            sampling.max_new_tokens as usize,
        )
        .map_err(|no| EngineError::PromptTooLong {
            prompt_tokens: no.prompt_tokens,
            n_ctx: no.n_ctx,
        })?;
        let prompt_text = source.render(fit.skip);
        let prompt_sha256 = her_core::hashing::sha256_hex(prompt_text.as_bytes());
        let prompt = self.tokenize(&prompt_text, true);
        let prompt_tokens_sha256 = tokens_sha256(prompt.iter().map(|t| t.0));

        // 2. Evaluate what the cache does not hold yet.
        let prompt_start = Instant::now();
        let mut last_logits_seen = false;
        let reused = self.evaluate(&prompt, prompt.len() - 1, |_, _| last_logits_seen = true)?;
        let prompt_ms = prompt_start.elapsed().as_secs_f64() * 1e3;
        let evaluated = prompt.len() - reused;
        let _ = events.send(Event::Started(Started {
            prompt_tokens: prompt.len(),
            reused_tokens: reused,
            evaluated_tokens: evaluated,
            dropped_turns: fit.skip,
            max_new_tokens: fit.max_new_tokens,
        }));
        if !last_logits_seen {
            return Err(EngineError::Decode(
                "no logits for the last prompt token".into(),
            ));
        }

        // 3. Sample, stream, and feed each token back.
        let grammar = match &request.grammar {
            Some(gbnf) => Some(sampler::grammar(self.model, gbnf)?),
            None => None,
        };
        let mut chain = sampler::build_chain_with(sampling, self.model, grammar)?;
        let window = sampler::prompt_history(sampling).min(prompt.len());
        chain.accept_many(&prompt[prompt.len() - window..]);
        let mut out = Output {
            utf8: Utf8Stream::new(),
            stops: StopMatcher::new(&sampling.stop),
            outbox: Outbox::new(events),
        };
        let vocab = self.model.vocab();
        let mut batch = LlamaBatch::new(1, 1);
        let mut sampled: Vec<i32> = Vec::new();
        let mut first_token_at: Option<Instant> = None;
        let mut stop_string = None;
        // Banned phrases: tokens not shown yet, each with the chain as it was
        // before it was drawn, and the tokens banned at each reply position.
        let guard = PhraseGuard::new(&sampling.banned_phrases);
        let mut held: Vec<Held> = Vec::new();
        let mut bans: HashMap<usize, Vec<LlamaToken>> = HashMap::new();
        let mut rewinds = 0u32;
        let (mut decode_time, mut sample_time) = (Duration::ZERO, Duration::ZERO);
        // The token to sample after is always the last output of the last batch.
        const LAST_OUTPUT: i32 = -1;
        let reason = loop {
            if cancelled() {
                break FinishReason::Cancelled;
            }
            let position = sampled.len();
            let before = guard.as_ref().map(|_| chain.clone());
            let sampling_started = Instant::now();
            let token = match bans.get(&position) {
                Some(banned) => sample_without(&mut chain, &self.ctx, banned)?,
                None => chain.sample(&self.ctx, LAST_OUTPUT),
            };
            sample_time += sampling_started.elapsed();
            first_token_at.get_or_insert_with(Instant::now);
            if vocab.is_eog(token) {
                break FinishReason::EndOfGeneration;
            }
            sampled.push(token.0);
            let piece = vocab.token_to_piece(token, true, None);
            if let (Some(guard), Some(before)) = (&guard, before) {
                held.push(Held {
                    token,
                    piece,
                    before,
                });
                let pieces: Vec<&[u8]> = held.iter().map(|h| h.piece.as_slice()).collect();
                let text = pieces.concat();
                if let Some(start) = guard.find(&text) {
                    if rewinds < sampling.banned_phrase_retries {
                        // Back to the token where the phrase began; draw again without it.
                        let k = banned::piece_at(&pieces, start);
                        let at = position + 1 - held.len() + k;
                        held.truncate(k + 1);
                        if let Some(first) = held.pop() {
                            chain = first.before;
                            bans.entry(at).or_default().push(first.token);
                        }
                        sampled.truncate(at);
                        rewinds += 1;
                        let previous = match at.checked_sub(1) {
                            Some(i) => LlamaToken(sampled[i]),
                            None => prompt[prompt.len() - 1],
                        };
                        self.rewind_to(prompt.len() + at - 1, previous)?;
                        continue;
                    }
                    if rewinds == sampling.banned_phrase_retries {
                        rewinds += 1;
                        tracing::warn!(
                            "banned phrases: {} rewinds spent; further matches in this reply are let through",
                            sampling.banned_phrase_retries
                        );
                    }
                }
                // Show what no phrase can involve any more.
                let mut after = text.len();
                let mut shown = 0;
                while let Some(h) = held.get(shown) {
                    after -= h.piece.len();
                    if after < guard.hold_bytes() {
                        break;
                    }
                    shown += 1;
                    if let Some(stop) = out.emit(&h.piece) {
                        stop_string = Some(stop);
                        break;
                    }
                }
                held.drain(..shown);
                if stop_string.is_some() {
                    // Tokens drawn after the stop string are not part of the reply.
                    sampled.truncate(sampled.len() - held.len());
                    held.clear();
                    break FinishReason::StopString;
                }
            } else if let Some(stop) = out.emit(&piece) {
                stop_string = Some(stop);
                break FinishReason::StopString;
            }
            if sampled.len() >= fit.max_new_tokens {
                break FinishReason::MaxTokens;
            }
            if self.cached.len() + 1 > self.n_ctx {
                break FinishReason::ContextFull;
            }
            batch.clear();
            batch
                .add(token, self.cached.len() as i32, &[0], true)
                .map_err(|e| EngineError::Decode(e.to_string()))?;
            let decode_started = Instant::now();
            if let Err(e) = self.ctx.decode(&mut batch) {
                self.reset();
                return Err(EngineError::Decode(e.to_string()));
            }
            decode_time += decode_started.elapsed();
            self.cached.push(token);
            let context_used = self.cached.len();
            let generated = sampled.len();
            out.outbox.stats(|| LiveStats {
                generated_tokens: generated,
                tokens_per_second: crate::tokens_per_second(generated, first_token_at),
                context_used,
                n_ctx: self.n_ctx,
            });
        };
        let mut reason = reason;

        // 4. Release text held back for banned phrases, an unfinished
        // character or a stop string.
        for (i, h) in held.iter().enumerate() {
            if let Some(stop) = out.emit(&h.piece) {
                stop_string = Some(stop);
                reason = FinishReason::StopString;
                sampled.truncate(sampled.len() - (held.len() - i - 1));
                break;
            }
        }
        if reason != FinishReason::StopString {
            let tail = out.stops.push(&out.utf8.finish());
            let mut rest = tail.emit;
            if tail.stopped_on.is_none() {
                rest.push_str(&out.stops.finish());
            }
            out.outbox.push(&rest);
        }
        let generated = sampled.len();
        let mut outbox = out.outbox;
        outbox.flush();
        let choices = if request.candidates > 0 && reason != FinishReason::Cancelled {
            self.choices(&prompt, &sampled, request.candidates)?
        } else {
            Vec::new()
        };
        let generation_ms = first_token_at.map_or(0.0, |t| t.elapsed().as_secs_f64() * 1e3);
        let ttft = first_token_at.map_or(0.0, |t| (t - received).as_secs_f64() * 1e3);
        let _ = events.send(Event::Finished(Finished {
            choices,
            reason,
            stop_string,
            tokens: sampled,
            stats: GenerationStats {
                prompt_tokens: prompt.len(),
                evaluated_prompt_tokens: evaluated,
                generated_tokens: generated,
                time_to_first_token_ms: ttft,
                prompt_ms,
                generation_ms,
                tokens_per_second: crate::tokens_per_second(generated, first_token_at),
                context_used: self.cached.len(),
                decode_ms: decode_time.as_secs_f64() * 1e3,
                sample_ms: sample_time.as_secs_f64() * 1e3,
            },
            provenance: Provenance {
                seed: sampling.seed,
                prompt_sha256,
                prompt_tokens_sha256,
                dropped_turns: fit.skip,
                ..provenance
            },
        }));
        Ok(())
    }

    /// Each of `sampled` (generated after `prompt`) with the `k` most likely
    /// tokens at its position: one batched pass over the reply, the same
    /// computation as [`Self::score`], so the figures agree with it. The
    /// cache ends holding the same tokens as before, recomputed.
    fn choices(
        &mut self,
        prompt: &[LlamaToken],
        sampled: &[i32],
        k: usize,
    ) -> Result<Vec<TokenChoice>, EngineError> {
        let Some(first) = prompt.len().checked_sub(1) else {
            return Ok(Vec::new());
        };
        let all: Vec<LlamaToken> = prompt
            .iter()
            .copied()
            .chain(sampled.iter().map(|&t| LlamaToken(t)))
            .collect();
        let vocab = self.model.vocab();
        let bytes = |t: i32| vocab.token_to_piece(LlamaToken(t), true, None);
        let mut out = Vec::with_capacity(sampled.len());
        self.evaluate(&all, first, |pos, logits| {
            // Logits at `pos` are the distribution of the token at `pos + 1`.
            let Some(&drawn) = sampled.get(pos - first) else {
                return;
            };
            let dist = Distribution::of(logits);
            out.push(TokenChoice {
                token: drawn,
                bytes: bytes(drawn),
                probability: dist.probability(logits, drawn as usize),
                candidates: dist
                    .top(logits, k)
                    .into_iter()
                    .map(|(token, probability)| Candidate {
                        token: token as i32,
                        bytes: bytes(token as i32),
                        probability,
                    })
                    .collect(),
            });
        })?;
        Ok(out)
    }

    /// Log-probabilities of each completion token after the prompt.
    pub fn score(
        &mut self,
        prompt: &str,
        completion: &str,
    ) -> Result<Vec<TokenLogprob>, EngineError> {
        let prompt_tokens = self.tokenize(prompt, true);
        let completion_tokens = self.tokenize(completion, false);
        if prompt_tokens.is_empty() || completion_tokens.is_empty() {
            return Ok(Vec::new());
        }
        let all: Vec<LlamaToken> = prompt_tokens
            .iter()
            .chain(&completion_tokens)
            .copied()
            .collect();
        if all.len() > self.n_ctx {
            return Err(EngineError::PromptTooLong {
                prompt_tokens: all.len(),
                n_ctx: self.n_ctx,
            });
        }
        let first = prompt_tokens.len() - 1;
        let mut out = Vec::with_capacity(completion_tokens.len());
        let vocab = self.model.vocab();
        self.evaluate(&all, first, |pos, logits| {
            // Logits at `pos` predict the token at `pos + 1`.
            if let Some(&next) = all.get(pos + 1) {
                let piece =
                    String::from_utf8_lossy(&vocab.token_to_piece(next, true, None)).into_owned();
                out.push(TokenLogprob {
                    token: next.0,
                    piece,
                    logprob: log_softmax_at(logits, next.0 as usize),
                });
            }
        })?;
        Ok(out)
    }
}

/// softmax(logits) in f64, as its maximum and normaliser: probabilities
/// without allocating the whole distribution.
struct Distribution {
    max: f64,
    sum: f64,
}

impl Distribution {
    fn of(logits: &[f32]) -> Self {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let sum = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
        Distribution { max, sum }
    }

    fn probability(&self, logits: &[f32], index: usize) -> f64 {
        logits
            .get(index)
            .map_or(0.0, |&l| (l as f64 - self.max).exp() / self.sum)
    }

    /// The `k` most likely token ids with their probabilities, most likely
    /// first (ties by id, so the order is stable).
    fn top(&self, logits: &[f32], k: usize) -> Vec<(usize, f64)> {
        let mut ids: Vec<usize> = (0..logits.len()).collect();
        let by_logit = |a: &usize, b: &usize| logits[*b].total_cmp(&logits[*a]).then(a.cmp(b));
        let k = k.min(ids.len());
        if k == 0 {
            return Vec::new();
        }
        ids.select_nth_unstable_by(k - 1, by_logit);
        ids.truncate(k);
        ids.sort_by(by_logit);
        ids.into_iter()
            .map(|i| (i, self.probability(logits, i)))
            .collect()
    }
}

/// log p(index) under softmax(logits), computed in f64 for stability.
pub fn log_softmax_at(logits: &[f32], index: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    logits
        .get(index)
        .map_or(f64::NEG_INFINITY, |&l| l as f64 - max - sum.ln())
}

/// sha256 of token ids as little-endian i32s: identifies exactly what the
/// model read, whatever tokenizer quirks the text went through.
pub fn tokens_sha256(tokens: impl Iterator<Item = i32>) -> String {
    let bytes: Vec<u8> = tokens.flat_map(i32::to_le_bytes).collect();
    her_core::hashing::sha256_hex(&bytes)
}
