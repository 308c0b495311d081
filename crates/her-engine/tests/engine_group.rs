//! Group generation (`LocalEngine::generate_group`, what RL rollouts use) on
//! the generated tiny Qwen3 model: well-formed replies, determinism, parity
//! with single-sequence generation, independent seeds, stop strings,
//! cancellation, bad input, and the KV cache left right for the chat.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{CHATML_PROMPT, sampling, tiny};
use her_core::generation::SamplingConfig;
use her_engine::{
    Backend, EngineError, FinishReason, Finished, GenerateRequest, GroupReply, LocalEngine,
    LocalEngineOptions,
};
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;

const SEEDS: [u32; 4] = [11, 12, 13, 14];

/// RL's rollout sampling: temperature 1, no truncation, no penalties.
fn rollout_sampling(max_new_tokens: u32) -> SamplingConfig {
    let mut s = sampling(0, max_new_tokens);
    s.temperature = 1.0;
    s.top_k = 0;
    s.top_p = 1.0;
    s.min_p = 0.0;
    s
}

fn group_options(model: &Path, group: u32, max_new_tokens: u32) -> LocalEngineOptions {
    common::options(model).for_groups(group, max_new_tokens)
}

fn group_engine(group: u32, max_new_tokens: u32) -> LocalEngine {
    LocalEngine::start(group_options(&tiny().model, group, max_new_tokens)).unwrap()
}

/// Room for groups of four in a window of exactly `n_ctx` tokens.
fn four_member_engine(n_ctx: u32) -> LocalEngine {
    let mut options = common::options(&tiny().model);
    options.n_ctx = n_ctx;
    options.parallel_sequences = 4;
    LocalEngine::start(options).unwrap()
}

fn group(
    engine: &LocalEngine,
    s: &SamplingConfig,
    seeds: &[u32],
) -> Result<Vec<GroupReply>, EngineError> {
    engine
        .generate_group(CHATML_PROMPT.to_string(), s.clone(), seeds.to_vec())
        .wait()
}

fn single(engine: &LocalEngine, s: &SamplingConfig, seed: u32) -> (String, Finished) {
    let mut s = s.clone();
    s.seed = seed;
    engine
        .generate(GenerateRequest::new(CHATML_PROMPT.to_string(), s))
        .collect_blocking()
        .unwrap()
}

/// Token pieces from llama.cpp directly.
fn token_bytes(ids: &[i32]) -> Vec<Vec<u8>> {
    let backend = her_engine::local::backend().unwrap();
    let model =
        LlamaModel::load_from_file(backend, &tiny().model, &LlamaModelParams::default()).unwrap();
    ids.iter()
        .map(|&id| model.vocab().token_to_piece(LlamaToken(id), true, None))
        .collect()
}

#[test]
fn every_member_is_a_well_formed_reply_of_its_own_seed() {
    let max_new = 48;
    let engine = group_engine(4, max_new);
    let s = rollout_sampling(max_new);
    let replies = group(&engine, &s, &SEEDS).unwrap();
    assert_eq!(replies.len(), SEEDS.len());
    let prompt_ids = engine.tokenize(CHATML_PROMPT.to_string()).wait().unwrap();
    for (r, &seed) in replies.iter().zip(&SEEDS) {
        let f = &r.finished;
        let all: Vec<u8> = token_bytes(&f.tokens).concat();
        assert_eq!(r.text, String::from_utf8_lossy(&all), "seed {seed}");
        assert!(f.tokens.len() <= max_new as usize, "seed {seed}");
        match f.reason {
            FinishReason::MaxTokens => assert_eq!(f.tokens.len(), max_new as usize),
            FinishReason::EndOfGeneration => {}
            other => panic!("seed {seed}: unexpected finish {other:?}"),
        }
        assert_eq!(f.stop_string, None);
        assert_eq!(f.stats.generated_tokens, f.tokens.len());
        assert_eq!(f.stats.prompt_tokens, prompt_ids.len());
        assert_eq!(f.provenance.seed, seed);
        assert_eq!(f.provenance.sampling.as_ref().map(|s| s.seed), Some(seed));
        assert_eq!(
            f.provenance.prompt_tokens_sha256,
            her_engine::local::tokens_sha256(prompt_ids.iter().copied())
        );
    }
    // No seeds, no replies.
    assert!(group(&engine, &s, &[]).unwrap().is_empty());
}

#[test]
fn the_same_group_twice_gives_the_same_replies_in_any_engine() {
    let s = rollout_sampling(40);
    let engine = group_engine(4, 40);
    let a = group(&engine, &s, &SEEDS).unwrap();
    // The prompt now comes from the KV cache.
    let b = group(&engine, &s, &SEEDS).unwrap();
    let c = group(&group_engine(4, 40), &s, &SEEDS).unwrap();
    let texts = |g: &[GroupReply]| -> Vec<(String, Vec<i32>, FinishReason)> {
        g.iter()
            .map(|r| (r.text.clone(), r.finished.tokens.clone(), r.finished.reason))
            .collect()
    };
    assert_eq!(texts(&a), texts(&b));
    assert_eq!(texts(&a), texts(&c));
    assert_eq!(b[0].finished.stats.evaluated_prompt_tokens, 1);
}

#[test]
fn members_of_one_group_sample_independently() {
    let s = rollout_sampling(32);
    let replies = group(&group_engine(4, 32), &s, &SEEDS).unwrap();
    let mut distinct: Vec<&Vec<i32>> = replies.iter().map(|r| &r.finished.tokens).collect();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() >= 2, "all four seeds wrote the same reply");
}

#[test]
fn a_group_of_one_is_the_single_sequence_reply() {
    let s = rollout_sampling(64);
    // In the chat's own context and in a context made for groups of four.
    for engine in [common::start(&tiny().model), group_engine(4, 64)] {
        for seed in [3, 4] {
            let (text, done) = single(&common::start(&tiny().model), &s, seed);
            let g = group(&engine, &s, &[seed]).unwrap();
            assert_eq!(g[0].finished.tokens, done.tokens, "seed {seed}");
            assert_eq!(g[0].text, text);
            assert_eq!(g[0].finished.reason, done.reason);
        }
    }
}

/// The tiny model's weights are F32, whose matrix products llama.cpp
/// computes with other kernels for a batch of rows than for one (measured:
/// logits differ by ~1e-6, now and then ~1e-3), so a member sampled at
/// temperature 1 can leave its single-sequence twin after a few tokens.
/// Greedy decoding is stable under such noise: every member writes the
/// single-sequence greedy reply (all 64 tokens when measured; asserted for
/// the first 16).
#[test]
fn greedy_members_match_the_single_sequence_greedy_reply() {
    let mut s = rollout_sampling(64);
    s.temperature = 0.0;
    let replies = group(&group_engine(4, 64), &s, &SEEDS).unwrap();
    let (_, done) = single(&common::start(&tiny().model), &s, 0);
    assert!(
        done.tokens.len() >= 16,
        "the greedy reply is too short to compare"
    );
    for r in &replies {
        assert_eq!(r.finished.tokens[..16], done.tokens[..16]);
        assert_eq!(r.finished.tokens, replies[0].finished.tokens);
    }
}

/// On the real Q4_1 model the batched logits are bitwise those of single
/// decoding (quantized products are per row), so each member is exactly the
/// reply `generate` writes with its seed: RL's batched rollouts are the
/// replies the one-by-one rollouts were.
#[test]
fn on_smollm2_each_member_is_exactly_the_single_sequence_reply_of_its_seed() {
    let model = common::smollm2();
    let s = rollout_sampling(32);
    let engine = LocalEngine::start(common::options(&model).for_groups(4, 32)).unwrap();
    let replies = engine
        .generate_group(CHATML_PROMPT.to_string(), s.clone(), SEEDS.to_vec())
        .wait()
        .unwrap();
    drop(engine);
    let plain = common::start(&model);
    for (r, &seed) in replies.iter().zip(&SEEDS) {
        let (text, done) = single(&plain, &s, seed);
        assert_eq!(r.finished.tokens, done.tokens, "seed {seed}");
        assert_eq!(r.text, text, "seed {seed}");
        assert_eq!(r.finished.reason, done.reason, "seed {seed}");
    }
}

#[test]
fn stop_strings_end_each_member_on_its_own() {
    let engine = group_engine(4, 80);
    let s = rollout_sampling(80);
    let free = group(&engine, &s, &SEEDS).unwrap();
    // A stop string from inside member 0's reply, past its start.
    let text = &free[0].text;
    let start = text
        .char_indices()
        .map(|(i, _)| i)
        .find(|&i| i >= text.len() / 2)
        .unwrap();
    let stop: String = text[start..].chars().take(3).collect();
    let mut stopped = s.clone();
    stopped.stop = vec![stop.clone()];
    let replies = group(&engine, &stopped, &SEEDS).unwrap();
    for (r, f) in replies.iter().zip(&free) {
        match f.text.find(&stop) {
            Some(at) => {
                assert_eq!(r.finished.reason, FinishReason::StopString);
                assert_eq!(r.finished.stop_string.as_deref(), Some(stop.as_str()));
                assert_eq!(r.text, f.text[..at]);
            }
            None => {
                assert_eq!(r.text, f.text);
                assert_eq!(r.finished.reason, f.finished.reason);
            }
        }
    }
    assert_eq!(replies[0].finished.reason, FinishReason::StopString);
}

#[test]
fn cancel_stops_a_group_and_the_engine_serves_the_next_one() {
    // Room for ~16,000 tokens per member: far more than the wait below.
    let engine = four_member_engine(65_536);
    let s = rollout_sampling(100_000);
    let running = engine.generate_group(CHATML_PROMPT.to_string(), s.clone(), SEEDS.to_vec());
    std::thread::sleep(Duration::from_millis(200));
    engine.cancel();
    let replies = running.wait().unwrap();
    assert!(
        replies
            .iter()
            .any(|r| r.finished.reason == FinishReason::Cancelled),
        "{:?}",
        replies
            .iter()
            .map(|r| r.finished.reason)
            .collect::<Vec<_>>()
    );
    for r in &replies {
        assert!(r.finished.tokens.len() < 16_000);
        let all: Vec<u8> = token_bytes(&r.finished.tokens).concat();
        assert_eq!(r.text, String::from_utf8_lossy(&all));
    }
    // The next group runs in full and as in a fresh engine: the cache was
    // left holding the prompt only.
    let short = rollout_sampling(24);
    let next = group(&engine, &short, &SEEDS).unwrap();
    let fresh = group(&group_engine(4, 24), &short, &SEEDS).unwrap();
    for (a, b) in next.iter().zip(&fresh) {
        assert_ne!(a.finished.reason, FinishReason::Cancelled);
        assert_eq!(a.finished.tokens, b.finished.tokens);
    }
}

#[test]
fn a_cancel_before_the_group_starts_ends_every_member_at_once() {
    let engine = group_engine(4, 16);
    let s = rollout_sampling(16);
    // Keep the engine busy so the group is still queued when cancel comes.
    let busy = engine.generate(GenerateRequest::new(CHATML_PROMPT.to_string(), s.clone()));
    let queued = engine.generate_group(CHATML_PROMPT.to_string(), s.clone(), SEEDS.to_vec());
    engine.cancel();
    drop(busy);
    let replies = queued.wait().unwrap();
    for r in &replies {
        assert_eq!(r.finished.reason, FinishReason::Cancelled);
        assert!(r.finished.tokens.is_empty());
        assert_eq!(r.text, "");
    }
}

#[test]
fn bad_groups_are_clear_errors_and_the_engine_keeps_working() {
    let engine = group_engine(4, 16);
    let s = rollout_sampling(16);
    // More members than the context has sequences.
    let five = group(&engine, &s, &[1, 2, 3, 4, 5]).unwrap_err();
    assert!(
        matches!(five, EngineError::TooManySequences { asked: 5, max: 4 }),
        "{five}"
    );
    // A prompt longer than the whole window.
    let long = "word ".repeat(20_000);
    let err = engine
        .generate_group(long, s.clone(), SEEDS.to_vec())
        .wait()
        .unwrap_err();
    assert!(matches!(err, EngineError::PromptTooLong { .. }), "{err}");
    // Invalid sampling.
    let mut bad = s.clone();
    bad.max_new_tokens = 0;
    let err = group(&engine, &bad, &SEEDS).unwrap_err();
    assert!(matches!(err, EngineError::InvalidSampling(_)), "{err}");
    // Still serves groups and single replies.
    assert_eq!(group(&engine, &s, &SEEDS).unwrap().len(), 4);
    let (_, done) = single(&engine, &s, 1);
    assert_ne!(done.reason, FinishReason::Cancelled);
}

#[test]
fn after_a_group_the_chat_reuses_the_prompt_and_replies_as_a_fresh_engine() {
    let s = rollout_sampling(32);
    let engine = group_engine(4, 32);
    group(&engine, &s, &SEEDS).unwrap();
    let (text, done) = single(&engine, &s, 9);
    assert_eq!(
        done.stats.evaluated_prompt_tokens, 1,
        "the prompt should still be cached on sequence 0"
    );
    let (fresh_text, fresh) = single(&common::start(&tiny().model), &s, 9);
    assert_eq!(done.tokens, fresh.tokens);
    assert_eq!(text, fresh_text);
}

#[test]
fn groups_replies_fit_when_the_window_is_short() {
    // A window with room for the prompt and a few tokens per member: each
    // member's budget shrinks instead of failing, as `generate` does.
    let engine = four_member_engine(256);
    let prompt_len = engine
        .tokenize(CHATML_PROMPT.to_string())
        .wait()
        .unwrap()
        .len();
    let budget = (256 - prompt_len) / 4;
    let replies = group(&engine, &rollout_sampling(10_000), &SEEDS).unwrap();
    for r in &replies {
        assert!(r.finished.tokens.len() <= budget);
        assert!(matches!(
            r.finished.reason,
            FinishReason::MaxTokens | FinishReason::EndOfGeneration
        ));
    }
}
