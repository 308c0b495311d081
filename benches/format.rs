//! Parser throughput on a few MB of HER replies, as a ratio to a plain
//! `memchr` scan for '<' over the same bytes (the least any tag parser must
//! do). Target: ratio >= 0.25. Run: `cargo bench --bench format`.

use std::hint::black_box;
use std::time::Instant;

use her_core::format::{Ending, StreamedReply, parse_reply, parse_with};

/// Replies shaped like HER's: a plan of 500–1500 characters, then a short
/// mix of thoughts, actions and speech.
const PLAN: &str = "Elizabeth has just been told, in front of the whole room, that Mr. Darcy finds her only tolerable. She is stung but far too proud to show it; the most natural response for her is to turn the insult into a story against him, laughing first so that nobody can laugh at her. At the same time she is curious: why does a man who despises the company keep listening to her conversations? The reply should keep her lively and teasing, with the wit aimed at him rather than at herself, and let one private thought betray that his opinion matters more than she admits. She must not become rude or sentimental; her weapon is a light, precise irony, delivered while she carries on with the business of the evening. ";

const REPLIES: &[&str] = &[
    "<system_thinking>Elizabeth senses that Darcy is testing her. She should answer with wit, keep her dignity, and let a flicker of curiosity show without conceding anything.</system_thinking>Elizabeth Bennet: <role_thinking>He listens more than he speaks. Why?</role_thinking><role_action>sets down her cup and meets his eyes</role_action>You ask as though the answer mattered to you, sir. Does it?",
    "<system_thinking>Holmes has already deduced the visitor's trade from her gloves; he should show it briefly, then turn to the case.</system_thinking>Sherlock Holmes: <role_action>steeples his fingers</role_action>You have come from Camberwell by the early train, madam. <role_thinking>Ink on the second finger: a governess.</role_thinking>Pray tell me what has frightened you.",
    "<system_thinking>Victor is exhausted and haunted; the reply should be short and heavy.</system_thinking>Victor Frankenstein: <role_thinking>He must not repeat my error.</role_thinking>Listen to me, Walton. Learn from me, if not by my precepts, at least by my example.",
];

fn corpus(target_bytes: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut total = 0;
    let mut i = 0;
    while total < target_bytes {
        let plan = PLAN.repeat(1 + i % 2);
        let r = REPLIES[i % REPLIES.len()].replacen(
            "<system_thinking>",
            &format!("<system_thinking>{plan}"),
            1,
        );
        total += r.len();
        out.push(r);
        i += 1;
    }
    out
}

/// Best of `rounds` timings of `f`, in seconds.
fn best_of(rounds: usize, mut f: impl FnMut() -> usize) -> f64 {
    (0..rounds)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let replies = corpus(4 << 20);
    let bytes: usize = replies.iter().map(String::len).sum();
    let mb = bytes as f64 / 1e6;

    let scan = best_of(7, || {
        replies
            .iter()
            .map(|r| memchr::memchr_iter(b'<', r.as_bytes()).count())
            .sum()
    });
    let whole = best_of(7, || {
        replies
            .iter()
            .map(|r| parse_reply(r, Ending::Natural).len())
            .sum()
    });
    // The parser alone: classified runs passed to a callback, nothing copied.
    let spans = best_of(7, || {
        replies
            .iter()
            .map(|r| {
                let mut n = 0usize;
                parse_with(r, Ending::Natural, &mut |_, t| n += t.len());
                n
            })
            .sum()
    });
    // Streaming in token-sized pieces, as the TUI does.
    let streamed = best_of(7, || {
        replies
            .iter()
            .map(|r| {
                let mut s = StreamedReply::default();
                let mut at = 0;
                while at < r.len() {
                    let mut end = (at + 4).min(r.len());
                    while !r.is_char_boundary(end) {
                        end += 1;
                    }
                    s.push(&r[at..end]);
                    at = end;
                }
                s.finish(Ending::Natural);
                s.segments.len()
            })
            .sum()
    });

    println!("corpus: {} replies, {mb:.1} MB", replies.len());
    println!("memchr scan for '<'   {:>8.1} MB/s (baseline)", mb / scan);
    println!(
        "parser, zero-copy runs {:>7.1} MB/s  ratio {:.3} (target >= 0.25)",
        mb / spans,
        scan / spans
    );
    println!(
        "parse_reply (owned)   {:>8.1} MB/s  ratio {:.3}",
        mb / whole,
        scan / whole
    );
    println!(
        "streamed, 4-byte chunks {:>6.1} MB/s  ratio {:.3}",
        mb / streamed,
        scan / streamed
    );
}
