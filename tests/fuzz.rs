//! Long fuzz runs for what reads untrusted input: the HER reply parser
//! (model output), the Character Card reader (files from the web), the
//! session log loader (files damaged on disk), and the redactor that masks
//! secrets in server error bodies. Ignored in the normal suite; run them with
//! `HER_FUZZ_CASES=1000000 cargo test --release --test fuzz -- --ignored --nocapture`
//! (`scripts/reliability` does). Each prints `… tried N, survived N, lost 0`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use her_core::character::card::{Format, card_bytes, fuzz_card_bytes};
use her_core::character::load_character;
use her_core::format::{Ending, LintContext, StreamedReply, lint, parse_reply};

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
    println!("fuzz reply parser: tried {n}, survived {n}, lost 0 ({bytes_total} bytes)");
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
    println!("fuzz card reader: tried {n}, survived {n}, lost 0 ({accepted} still accepted)");
}

/// A session log exercising every event type, as bytes.
fn session_bytes(dir: &std::path::Path) -> Vec<u8> {
    use her_core::session::{Message, NodeId, Role, SessionEvent, SessionFile, SessionHeader};
    let (mut file, mut s) = SessionFile::create(dir, SessionHeader::new("fuzz")).unwrap();
    let mut commit = |s: &mut her_core::session::Session, e: SessionEvent| {
        file.commit(s, e).unwrap();
    };
    let greet = s
        .tree()
        .append_event(Message::new("Elizabeth", Role::Character, "Hello."));
    commit(&mut s, greet);
    let alt = s
        .tree()
        .append_under_event(
            NodeId::ROOT,
            Message::new("Elizabeth", Role::Character, "Hi é😀."),
        )
        .unwrap();
    commit(&mut s, alt);
    for text in ["Will you dance?", "<system_thinking>x</system_thinking>No."] {
        let e = s
            .tree()
            .append_event(Message::new("Darcy", Role::User, text));
        commit(&mut s, e);
    }
    let rename = s.rename_event("renamed");
    commit(&mut s, rename);
    let leaf = s.tree().leaf();
    let delete = s.tree().delete_event(leaf).unwrap();
    commit(&mut s, delete);
    commit(
        &mut s,
        SessionEvent::Other(serde_json::json!({"type": "rating", "key": "k", "score": "up"})),
    );
    std::fs::read(file.path()).unwrap()
}

#[test]
#[ignore = "long fuzz run; see the module docs"]
fn fuzz_session_log_loader() {
    let dir = tempfile::tempdir().unwrap();
    let seed = session_bytes(dir.path());
    let header_end = seed.iter().position(|&b| b == b'\n').unwrap() + 1;
    let path = dir.path().join("case.jsonl");
    let mut rng = Rng(0x5e55_1011_0f00_d00d);
    let n = cases();
    let mut lost = 0usize;
    for _ in 0..n {
        let mut data = seed.clone();
        for _ in 0..1 + rng.below(6) {
            // Damage after the header: what a crash or a bad disk does to a log.
            let at = header_end + rng.below(data.len() - header_end + 1);
            match rng.below(5) {
                0 if at < data.len() => data[at] = rng.next() as u8,
                1 if at < data.len() => data[at] ^= 1 << rng.below(8),
                2 => data.truncate(at),
                3 => data.insert(at, b"\n{}\"\xff"[rng.below(5)]),
                _ => {
                    let end = (at + rng.below(200)).min(data.len());
                    let copy = data[at..end].to_vec();
                    data.splice(at..at, copy);
                }
            }
        }
        std::fs::write(&path, &data).unwrap();
        let loaded = std::panic::catch_unwind(|| her_core::session::load_session(&path));
        // The header is intact: the session must load, whatever the rest holds.
        if !matches!(loaded, Ok(Ok(_))) {
            lost += 1;
        }
    }
    println!(
        "fuzz session log: tried {n}, survived {}, lost {lost}",
        n - lost
    );
    assert_eq!(lost, 0);
}

#[test]
#[ignore = "long fuzz run; see the module docs"]
fn fuzz_secret_masking() {
    use base64::Engine as _;
    use her_engine::remote::{ApiKey, Redactor};
    let key = "sk-fuzz-0123456789abcdef";
    let password = "pa%24s:w0rd";
    let redactor = Redactor::new(
        Some(&ApiKey::new(key)),
        &format!("https://bob:{password}@gpu-box:8000/v1"),
    );
    let basic = base64::engine::general_purpose::STANDARD.encode("bob:pa$s:w0rd");
    let secrets = [key, "pa$s:w0rd", password, basic.as_str()];
    let pieces = [
        key,
        "pa$s:w0rd",
        password,
        basic.as_str(),
        "Authorization: Bearer ",
        "Basic ",
        "\"",
        "\\",
        " | ",
        "x-api-key: ",
        "é",
        "😀",
        "sk-",
        "=",
        "\n",
        "{\"error\":{\"message\":\"",
    ];
    let mut rng = Rng(0x7e57_5ec2_e7ab_cdef);
    let n = cases();
    let mut lost = 0usize;
    for _ in 0..n {
        let mut text = String::new();
        for _ in 0..rng.below(16) {
            text.push_str(pieces[rng.below(pieces.len())]);
        }
        let masked = redactor.scrub(&text);
        if secrets.iter().any(|s| masked.contains(s)) {
            lost += 1;
        }
    }
    println!(
        "fuzz secret masking: tried {n}, survived {}, lost {lost}",
        n - lost
    );
    assert_eq!(lost, 0);
}
