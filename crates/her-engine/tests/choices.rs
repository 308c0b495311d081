//! Token probabilities (issue 21) on the generated tiny Qwen3: a generation
//! can return, for each token it drew, the most likely tokens at that
//! position under the model's own distribution; those figures are the ones
//! `score()` gives, and under greedy decoding the most likely token is the
//! one drawn.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{CHATML_PROMPT, sampling, start, tiny};

use her_engine::{Backend, Finished, GenerateRequest, LocalEngine};

fn generate(engine: &LocalEngine, temperature: f32, seed: u32, k: usize) -> (String, Finished) {
    let mut s = sampling(seed, 24);
    s.temperature = temperature;
    let mut request = GenerateRequest::new(CHATML_PROMPT.to_string(), s);
    request.candidates = k;
    engine.generate(request).collect_blocking().unwrap()
}

#[test]
fn under_greedy_decoding_the_most_likely_candidate_is_the_token_drawn() {
    let engine = start(&tiny().model);
    let (text, done) = generate(&engine, 0.0, 1, 5);
    assert!(!done.tokens.is_empty());
    assert_eq!(done.choices.len(), done.tokens.len());
    let mut bytes = Vec::new();
    for (choice, &token) in done.choices.iter().zip(&done.tokens) {
        assert_eq!(choice.token, token);
        assert_eq!(choice.candidates.len(), 5);
        assert_eq!(choice.candidates[0].token, token, "{choice:?}");
        assert!((choice.candidates[0].probability - choice.probability).abs() < 1e-12);
        let probabilities: Vec<f64> = choice.candidates.iter().map(|c| c.probability).collect();
        assert!(
            probabilities.windows(2).all(|w| w[0] >= w[1]),
            "{probabilities:?}"
        );
        assert!(probabilities.iter().sum::<f64>() <= 1.0 + 1e-9);
        bytes.extend_from_slice(&choice.bytes);
    }
    // The tokens' bytes are the reply, exactly.
    assert_eq!(String::from_utf8_lossy(&bytes), text);
    // Without the request, nothing is computed.
    let (_, plain) = generate(&engine, 0.0, 1, 0);
    assert!(plain.choices.is_empty());
    assert_eq!(plain.tokens, done.tokens);
}

/// Each listed candidate's probability is exp(score) of the reply up to its
/// position followed by that candidate, within 1e-4 (where the text
/// tokenizes back to exactly those tokens, so both see the same sequence:
/// SmolLM2's BPE vocabulary, on which most do; the tiny model's byte-level
/// vocabulary rarely round-trips).
#[test]
fn candidate_probabilities_agree_with_score() {
    let engine = start(&common::smollm2());
    let (_, done) = generate(&engine, 0.8, 7, 3);
    let mut compared = 0;
    for (j, choice) in done.choices.iter().enumerate().take(8) {
        let before: Vec<u8> = done.choices[..j]
            .iter()
            .flat_map(|c| c.bytes.clone())
            .collect();
        for candidate in &choice.candidates {
            let mut completion = before.clone();
            completion.extend_from_slice(&candidate.bytes);
            let Ok(completion) = String::from_utf8(completion) else {
                continue;
            };
            let ids = engine.tokenize(completion.clone()).wait().unwrap();
            let mut expected: Vec<i32> = done.tokens[..j].to_vec();
            expected.push(candidate.token);
            if ids != expected {
                continue;
            }
            let scored = engine
                .score(CHATML_PROMPT.to_string(), completion)
                .wait()
                .unwrap();
            let last = scored.last().unwrap();
            assert_eq!(last.token, candidate.token);
            let p = last.logprob.exp();
            assert!(
                (p - candidate.probability).abs() < 1e-4,
                "position {j}, token {}: score {p}, listed {}",
                candidate.token,
                candidate.probability
            );
            compared += 1;
        }
    }
    assert!(
        compared >= 5,
        "only {compared} candidates could be compared"
    );
}
