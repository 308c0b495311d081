//! Lorebook scanning per turn: a 2,000-entry book (three keys each, 1% of
//! them regexes, secondary keys, groups, recursion on) over the newest 50
//! messages, against a plain `memchr` pass over the same text (the least any
//! scan must do) and against searching every key separately with `memmem`
//! (what a per-entry `contains` costs). Target: under 5 ms per turn.
//! Run: `cargo bench --bench lore`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use her_core::lore::{
    Book, Budget, Entry, Library, Logic, ScanInput, ScanMessage, ScanSettings, Scope, TimedState,
};

const ENTRIES: usize = 2000;
const MESSAGES: usize = 50;
const TURNS: usize = 40;

/// A deterministic word source (splitmix64).
struct Words(u64);

impl Words {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A made-up name of 2–4 syllables.
    fn name(&mut self) -> String {
        const SYLLABLES: &[&str] = &[
            "ka", "ro", "mel", "th", "ae", "dris", "vor", "lin", "sa", "quen", "bar", "oth", "ys",
            "tal", "mir", "gon", "el", "dun", "ra", "wen",
        ];
        let n = 2 + self.below(3);
        (0..n)
            .map(|_| SYLLABLES[self.below(SYLLABLES.len())])
            .collect()
    }
}

const FILLER: &[&str] = &[
    "the", "road", "was", "long", "and", "she", "walked", "quietly", "towards", "a", "river",
    "under", "grey", "sky", "while", "he", "spoke", "of", "old", "days", "with", "little", "hope",
    "but", "much", "courage", "they", "rested", "by", "fire", "before", "night",
];

fn book(words: &mut Words) -> (Book, Vec<String>) {
    let mut names: Vec<String> = Vec::with_capacity(ENTRIES * 3);
    while names.len() < ENTRIES * 3 {
        let n = words.name();
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let mut entries = Vec::with_capacity(ENTRIES);
    for i in 0..ENTRIES {
        let mut e = Entry::new(i as u32);
        e.comment = names[i * 3].clone();
        e.keys = names[i * 3..i * 3 + 3].to_vec();
        if i % 100 == 0 {
            e.keys[2] = format!("/{}s?/i", names[i * 3 + 2]);
        }
        if i % 7 == 0 {
            e.secondary_keys = vec![FILLER[words.below(FILLER.len())].to_string()];
            e.logic = Logic::AndAny;
        }
        if i % 11 == 0 {
            e.group = format!("g{}", i % 5);
        }
        e.order = (i % 300) as i64;
        // Content of 300–600 characters that names two other entries.
        let mut content = String::new();
        while content.len() < 300 + words.below(300) {
            content.push_str(FILLER[words.below(FILLER.len())]);
            content.push(' ');
        }
        content.push_str(&names[words.below(names.len())]);
        content.push_str(" and ");
        content.push_str(&names[words.below(names.len())]);
        content.push('.');
        e.content = content;
        entries.push(e);
    }
    (
        Book {
            name: "bench".into(),
            entries,
            ..Book::default()
        },
        names,
    )
}

/// About 80 words, three of them keys.
fn message(words: &mut Words, names: &[String]) -> String {
    let mut m = String::new();
    for i in 0..80 {
        if i % 27 == 13 {
            m.push_str(&names[words.below(names.len())]);
        } else {
            m.push_str(FILLER[words.below(FILLER.len())]);
        }
        m.push(' ');
    }
    m
}

fn median(mut times: Vec<Duration>) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64()
}

/// Median time per turn of the engine and of both baselines.
struct Figures {
    lore: f64,
    plain: f64,
    naive: f64,
    activated: usize,
    passes: u32,
}

fn measure(
    lib: &Library,
    chat: &mut Vec<String>,
    words: &mut Words,
    names: &[String],
    keys: &[String],
    max_context: usize,
) -> Figures {
    let tokens = |t: &str| t.len().div_ceil(4);
    let timed = TimedState::default();
    let (mut lore, mut plain, mut naive) = (Vec::new(), Vec::new(), Vec::new());
    let (mut activated, mut passes) = (0, 0);
    for turn in 0..TURNS {
        chat.push(message(words, names));
        let recent = &chat[chat.len() - MESSAGES..];
        let msgs: Vec<ScanMessage<'_>> = recent
            .iter()
            .enumerate()
            .map(|(i, t)| ScanMessage {
                name: if i % 2 == 0 { "Aria" } else { "Kael" },
                text: t,
                is_user: i % 2 == 0,
            })
            .collect();
        let input = ScanInput {
            seed: 7,
            max_context,
            ..ScanInput::new(&msgs, &timed)
        };

        let t = Instant::now();
        let out = black_box(lib.scan(&input, &tokens));
        lore.push(t.elapsed());
        if turn == 0 {
            activated = out.activated.len();
            passes = out.passes;
        }

        let t = Instant::now();
        black_box(
            recent
                .iter()
                .map(|m| memchr::memchr_iter(b' ', m.as_bytes()).count())
                .sum::<usize>(),
        );
        plain.push(t.elapsed());

        let t = Instant::now();
        let lowered: Vec<String> = recent.iter().map(|m| m.to_lowercase()).collect();
        black_box(
            keys.iter()
                .filter(|k| {
                    lowered
                        .iter()
                        .any(|m| memchr::memmem::find(m.as_bytes(), k.as_bytes()).is_some())
                })
                .count(),
        );
        naive.push(t.elapsed());
    }
    Figures {
        lore: median(lore),
        plain: median(plain),
        naive: median(naive),
        activated,
        passes,
    }
}

fn main() {
    let mut words = Words(2026);
    let (book, names) = book(&mut words);
    let keys: Vec<String> = book
        .entries
        .iter()
        .flat_map(|e| e.keys.iter().map(|k| k.to_lowercase()))
        .collect();
    let settings = ScanSettings {
        scan_depth: MESSAGES as u32,
        budget: Budget::PercentOfContext(25),
        ..ScanSettings::default()
    };
    let built = Instant::now();
    let lib = Library::new(vec![(book, Scope::Global)], settings);
    let build_time = built.elapsed();
    let mut chat: Vec<String> = (0..MESSAGES).map(|_| message(&mut words, &names)).collect();
    let bytes: usize = chat.iter().map(String::len).sum();
    println!(
        "book: {ENTRIES} entries, {} keys; {MESSAGES} messages, {:.1} KB per turn; library built in {:.1} ms",
        ENTRIES * 3,
        bytes as f64 / 1e3,
        build_time.as_secs_f64() * 1e3
    );
    // A 32k context (budget 8,192 tokens), and a budget so large that
    // recursion runs until nothing new activates.
    for (label, context) in [
        ("25% of a 32k context", 32_768),
        ("unbounded recursion", 100_000_000),
    ] {
        let f = measure(&lib, &mut chat, &mut words, &names, &keys, context);
        println!(
            "{label}: {} entries activated in {} passes (first turn)",
            f.activated, f.passes
        );
        println!(
            "  memchr pass over the text   {:>8.3} ms/turn (baseline)",
            f.plain * 1e3
        );
        println!(
            "  lore scan (engine)          {:>8.3} ms/turn  {:>7.1}x the memchr pass  (target < 5 ms)",
            f.lore * 1e3,
            f.lore / f.plain
        );
        println!(
            "  memmem per key (naive)      {:>8.3} ms/turn  {:>7.1}x the memchr pass",
            f.naive * 1e3,
            f.naive / f.plain
        );
    }
}
