//! The AI judge on the tiny random-weight model: whatever the weights
//! say, the grammar makes every answer a readable verdict, in both orders.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use her_core::judge::{JudgeCase, judge_sampling};
use her_core::prefs::{ContextMessage, Role};
use her_engine::dialogue::judge::judge_pair;

fn context(line: &str) -> Vec<ContextMessage> {
    vec![
        ContextMessage::new(
            Role::System,
            "You are Elizabeth Bennet from Pride and Prejudice.",
        ),
        ContextMessage::new(Role::User, format!("===Conversation Start===\n\n{line}")),
    ]
}

#[test]
fn every_verdict_parses_in_both_orders_at_any_temperature() {
    let t = common::tiny();
    let engine = common::start(&t.model);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cases = [
        (
            "Mr. Darcy: Do you dance?",
            "<system_thinking>Tease.</system_thinking>Elizabeth Bennet: <role_action>smiles</role_action>Not with you.",
            "Elizabeth Bennet: Perhaps.",
        ),
        (
            "Jane: Are you well?",
            "Elizabeth Bennet: <role_thinking>She frets.</role_thinking>Très bien, ma chère. 🌿",
            "Elizabeth Bennet: Quite well.",
        ),
        (
            "Charlotte: And Mr. Collins?",
            "Elizabeth Bennet: \"Ridiculous\" is the word. <role_action>laughs</role_action>",
            "Mr. Darcy: I shall answer for her.",
        ),
    ];
    let mut judged = 0;
    for (temperature, seed) in [(0.0, 1), (1.0, 7), (1.5, 99)] {
        let mut sampling = judge_sampling(&common::sampling(seed, 16), true);
        sampling.temperature = temperature;
        for (line, a, b) in cases {
            let ctx = context(line);
            let case = JudgeCase {
                character: "Elizabeth Bennet",
                context: &ctx,
                cand_1: a,
                cand_2: b,
            };
            let verdict = runtime
                .block_on(judge_pair(&engine, &case, &sampling))
                .unwrap_or_else(|e| panic!("temperature {temperature}, case {line:?}: {e}"));
            // The grammar asks for 1–5 principles, each with a known dimension.
            for j in [&verdict.forward, &verdict.reverse] {
                assert!((1..=5).contains(&j.principles.len()), "{j:?}");
                assert!(j.principles.iter().all(|p| {
                    her_core::prefs::canonical_dimension(&p.dimension) == Some(p.dimension.as_str())
                }));
            }
            judged += 1;
        }
    }
    assert_eq!(judged, 9);
}

#[test]
fn greedy_judging_is_deterministic() {
    let t = common::tiny();
    let engine = common::start(&t.model);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ctx = context("Mr. Darcy: Do you dance?");
    let case = JudgeCase {
        character: "Elizabeth Bennet",
        context: &ctx,
        cand_1: "Elizabeth Bennet: No.",
        cand_2: "Elizabeth Bennet: <role_action>curtsies</role_action>Yes.",
    };
    let sampling = judge_sampling(&common::sampling(3, 16), true);
    let first = runtime
        .block_on(judge_pair(&engine, &case, &sampling))
        .unwrap();
    let second = runtime
        .block_on(judge_pair(&engine, &case, &sampling))
        .unwrap();
    assert_eq!(first, second);
}
