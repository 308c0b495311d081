//! Long fuzz runs for the two parsers that read untrusted input: the HER reply
//! parser (model output) and the Character Card reader (files from the web).
//! Ignored in the normal suite; run them with
//! `HER_FUZZ_CASES=1000000 cargo test --release --test fuzz -- --ignored --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use her_studio::character::card::{Format, card_bytes, fuzz_card_bytes};
use her_studio::character::load_character;
use her_studio::format::{Ending, LintContext, StreamedReply, lint, parse_reply};

mod common;

/// xorshift64*: deterministic, no dependencies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn cases() -> usize {
    std::env::var("HER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

const PIECES: &[&str] = &[
    "<system_thinking>",
    "</system_thinking>",
    "<system_think>",
    "</system_think>",
    "<think>",
    "</think>",
    "<thought>",
    "<role_thinking>",
    "</role_thinking>",
    "<long_role_thinking>",
    "</long_role_thinking>",
    "<role_action>",
    "</role_action>",
    "<role_speech>",
    "</role_speech>",
    "<",
    ">",
    "</",
    "<role_",
    "_thinking>",
    "Elizabeth: ",
    "Mr. Darcy: ",
    ":",
    " ",
    "\n",
    "word",
    "é",
    "😀",
    "<b>",
    "<|im_end|>",
    "\u{0}",
    "\u{7f}",
    "ROLE_ACTION",
    "<ROLE_ACTION>",
];

#[test]
#[ignore = "long fuzz run; see the module docs"]
fn fuzz_reply_parser() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let n = cases();
    let mut bytes_total = 0usize;
    for _ in 0..n {
        let mut input = String::new();
        for _ in 0..rng.below(24) {
            input.push_str(PIECES[rng.below(PIECES.len())]);
        }
        bytes_total += input.len();
        let ending = if rng.below(2) == 0 {
            Ending::Natural
        } else {
            Ending::CutOff
        };
        let whole = parse_reply(&input, ending);
        let joined: String = whole.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(joined, input);
        let mut streamed = StreamedReply::default();
        let mut at = 0;
        while at < input.len() {
            let mut end = (at + 1 + rng.below(8)).min(input.len());
            while !input.is_char_boundary(end) {
                end += 1;
            }
            streamed.push(&input[at..end]);
            at = end;
        }
        streamed.finish(ending);
        assert_eq!(streamed.segments, whole, "input {input:?}");
        lint(
            &whole,
            &LintContext {
                character: "Elizabeth".into(),
                expect_system_thinking: true,
                in_history: true,
            },
        );
    }
    println!("reply parser: {n} inputs, {bytes_total} bytes, no failure");
}

#[test]
#[ignore = "long fuzz run; see the module docs"]
fn fuzz_card_reader() {
    let character =
        load_character(&common::repo_root().join("characters/elizabeth-bennet.toml")).unwrap();
    let path = std::path::Path::new("fuzz.png");
    let seeds = [
        card_bytes(&character, Format::Png, path).unwrap(),
        card_bytes(&character, Format::Json, std::path::Path::new("fuzz.json")).unwrap(),
    ];
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let n = cases();
    let mut accepted = 0usize;
    for i in 0..n {
        let mut data = seeds[i % 2].clone();
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(data.len());
            match rng.below(4) {
                0 => data[at] = rng.next() as u8,
                1 => data[at] ^= 1 << rng.below(8),
                2 => data.truncate(at.max(1)),
                _ => data.insert(at, rng.next() as u8),
            }
        }
        if fuzz_card_bytes(&data).is_ok() {
            accepted += 1;
        }
    }
    println!("card reader: {n} mutated cards, {accepted} still accepted, no panic");
}
