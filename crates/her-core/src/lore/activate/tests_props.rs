//! Properties over arbitrary books and chats: the engine never panics, is
//! deterministic, keeps to the budget and reports timed effects as events
//! that rebuild its state; books survive World Info JSON and TOML.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::Path;

use proptest::prelude::*;
use serde_json::Value;

use super::{
    Budget, Library, ScanContext, ScanInput, ScanMessage, ScanOutcome, ScanSettings, Scope,
    TimedState,
};
use crate::lore::model::{
    Book, CharacterFilter, Entry, JsonObject, Logic, Position, RecursionDelay, Role, ScanSources,
};

const WORDS: &[&str] = &[
    "dragon",
    "Dragon",
    "castle",
    "moat",
    "eel",
    "king",
    "crown",
    "fire",
    "ice",
    "café",
    "ß",
    "İstanbul",
    "red dragon",
    "{{char}}",
    "/dr[ae]gon/i",
    "/a(/",
    "/^Ann/",
    r"/(\w)\1/",
    "/cat(?!s)/",
    "",
    " ",
    "a\nb",
    "x\u{1}y",
    "🐉",
    "ﬁre",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(WORDS).prop_map(str::to_string),
        1 => "\\PC{0,12}",
    ]
}

fn text() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(word(), 0..8),
        prop::option::of(proptest::sample::select(
            &[
                "@@activate",
                "@@dont_activate",
                "@@depth 3\n@@role user",
                "@@position scenario",
                "@@additional_keys ice, fire",
                "@@exclude_keys moat",
                "@@scan_depth 1",
                "@@probability 50",
                "@@activate_only_every 2",
                "@@bogus\n@@@activate",
                "@@",
            ][..],
        )),
    )
        .prop_map(|(words, decorator)| {
            let body = words.join(" ");
            match decorator {
                Some(d) => format!("{d}\n{body}"),
                None => body,
            }
        })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        "\\PC{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop::collection::vec(inner, 0..3).prop_map(Value::Array)
    })
}

fn json_object() -> impl Strategy<Value = JsonObject> {
    prop::collection::btree_map("x_[a-z]{1,5}", json_value(), 0..3)
        .prop_map(|m| m.into_iter().collect())
}

fn entry() -> impl Strategy<Value = Entry> {
    let keys = (
        prop::collection::vec(word(), 0..3),
        prop::collection::vec(word(), 0..3),
        text(),
        "\\PC{0,10}",
    );
    let flags = (
        any::<[bool; 10]>(),
        0u8..4,
        0u8..9,
        prop_oneof![Just(100.0), 0.0..=100.0f64],
        -5i64..5,
        prop::sample::select(&["", "a", "b", "a, b", " ,a"][..]),
        1u32..1000,
        prop::option::of(0u32..6),
        prop::array::uniform3(prop::option::of(any::<bool>())),
    );
    let timing = (
        0u32..4,
        0u32..4,
        0u32..4,
        0u32..5,
        0u32..3,
        prop::option::of(0u8..3),
    );
    let extras = (
        any::<[bool; 6]>(),
        prop::collection::vec(
            prop::sample::select(&["normal", "swipe", "quiet"][..]).prop_map(str::to_string),
            0..2,
        ),
        prop::option::of((any::<bool>(), prop::collection::vec("[a-z]{1,4}", 0..2))),
        json_object(),
        json_object(),
    );
    (keys, flags, timing, extras).prop_map(|(keys, flags, timing, extras)| {
        let (primary, secondary, content, comment) = keys;
        let (b, logic, position, probability, order, group, weight, scan_depth, settings) = flags;
        let (sticky, cooldown, delay, level, depth, role) = timing;
        let (sources, triggers, filter, extensions, extra_fields) = extras;
        let mut e = Entry::new(0);
        e.keys = primary;
        e.secondary_keys = secondary;
        e.content = content;
        e.comment = comment;
        e.constant = b[0] && b[1];
        e.disabled = b[2] && b[3];
        e.selective = b[4];
        e.logic = Logic::from_st_number(i64::from(logic)).unwrap();
        e.position = Position::from_st_number(i64::from(position)).unwrap_or(Position::Scenario);
        e.probability = crate::lore::model::percent(probability);
        e.use_probability = b[5];
        e.order = order;
        e.group = group.to_string();
        e.group_override = b[6];
        e.group_weight = weight;
        e.scan_depth = scan_depth;
        e.case_sensitive = settings[0];
        e.match_whole_words = settings[1];
        e.use_group_scoring = settings[2];
        e.exclude_recursion = b[7];
        e.prevent_recursion = b[8];
        e.ignore_budget = b[9] && b[0];
        e.delay_until_recursion = match level {
            0 => RecursionDelay::Off,
            1 => RecursionDelay::On,
            n => RecursionDelay::Level(n - 1),
        };
        e.sticky = sticky;
        e.cooldown = cooldown;
        e.delay = delay;
        e.depth = depth;
        e.role = role.and_then(|r| Role::from_st_number(i64::from(r)));
        e.also_scan = ScanSources {
            persona_description: sources[0],
            character_description: sources[1],
            character_personality: sources[2],
            character_depth_prompt: sources[3],
            scenario: sources[4],
            creator_notes: sources[5],
        };
        e.triggers = triggers;
        e.character_filter = filter.map(|(exclude, names)| CharacterFilter {
            exclude,
            names,
            tags: Vec::new(),
        });
        e.extensions = extensions;
        e.extra_fields = extra_fields;
        e
    })
}

fn book() -> impl Strategy<Value = Book> {
    prop::collection::vec(entry(), 0..12).prop_map(|mut entries| {
        for (uid, e) in entries.iter_mut().enumerate() {
            e.uid = uid as u32 * 3;
        }
        Book {
            name: "prop".into(),
            entries,
            ..Book::default()
        }
    })
}

fn settings() -> impl Strategy<Value = ScanSettings> {
    (0u32..6, 1u32..200, any::<[bool; 5]>(), 0u32..4, 0u32..3).prop_map(
        |(depth, budget, b, steps, min)| ScanSettings {
            scan_depth: depth,
            budget: Budget::Tokens(budget),
            include_names: b[0],
            recursive: b[1],
            max_recursion_steps: steps,
            min_activations: min,
            case_sensitive: b[2],
            match_whole_words: b[3],
            use_group_scoring: b[4],
            ..ScanSettings::default()
        },
    )
}

fn words_count(text: &str) -> usize {
    text.split_whitespace().count() + 1
}

fn check_outcome(lib: &Library, book: &Book, input: &ScanInput<'_>, out: &ScanOutcome) {
    let entry = |uid: u32| book.entries.iter().find(|e| e.uid == uid).unwrap();
    let activated: Vec<u32> = out.activated.iter().map(|a| a.uid).collect();
    let unique: HashSet<u32> = activated.iter().copied().collect();
    assert_eq!(unique.len(), activated.len(), "an entry activated twice");
    assert!(out.left_out.iter().all(|l| !unique.contains(&l.uid)));
    assert!(activated.iter().all(|&uid| !entry(uid).disabled));
    assert_eq!(
        out.used_tokens,
        out.activated.iter().map(|a| a.tokens).sum::<usize>()
    );
    // The budget: up to the last entry that had to fit, the total stays below it.
    if let Some(last) = out
        .activated
        .iter()
        .rposition(|a| !entry(a.uid).ignore_budget)
    {
        let spent: usize = out.activated[..=last].iter().map(|a| a.tokens).sum();
        assert!(spent < out.budget, "{spent} of {}", out.budget);
    }
    assert_eq!(input.timed.with_events(&out.timed_events), out.timed);
    assert_eq!(lib.scan(input, &words_count), *out, "not deterministic");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn the_engine_never_panics_and_keeps_its_promises(
        book in book(),
        settings in settings(),
        chat in prop::collection::vec(text(), 0..8),
        seed in any::<u64>(),
        turns in 1usize..4,
    ) {
        let lib = Library::new(vec![(book.clone(), Scope::Global)], settings);
        let substitute = |t: &str| t.replace("{{char}}", "Dragon");
        let mut timed = TimedState::default();
        for turn in 0..turns {
            let shown = &chat[..chat.len().saturating_sub(turns - 1 - turn)];
            let msgs: Vec<ScanMessage<'_>> = shown
                .iter()
                .enumerate()
                .map(|(i, t)| ScanMessage { name: "Ann", text: t, is_user: i % 2 == 0 })
                .collect();
            let input = ScanInput {
                seed,
                macros: Some(&substitute),
                context: ScanContext { scenario: "a castle by the sea", ..ScanContext::default() },
                ..ScanInput::new(&msgs, &timed)
            };
            let out = lib.scan(&input, &words_count);
            check_outcome(&lib, &book, &input, &out);
            let _ = crate::lore::placement::arrange(&out.activated);
            timed = out.timed;
        }
    }

    #[test]
    fn books_survive_world_info_json_and_toml(book in book()) {
        let json = crate::lore::st_json::to_st(&book).unwrap();
        let path = Path::new("prop.json");
        match crate::lore::parse_book_json(&json, path) {
            Ok(Some(back)) => prop_assert_eq!(&back.book, &book),
            // Arbitrary keys may be regexes that do not compile: refused, never mangled.
            Err(crate::lore::LoreError::Entry { field, .. }) => {
                prop_assert!(field.starts_with("key"), "{}", field)
            }
            other => prop_assert!(false, "{:?}", other),
        }
        let toml = crate::lore::file::book_toml(&book, Path::new("prop.toml")).unwrap();
        match crate::lore::parse_book(&toml, Path::new("prop.toml")) {
            Ok(back) => prop_assert_eq!(back, book),
            Err(crate::lore::LoreError::Entry { field, .. }) => {
                prop_assert!(field.contains("keys"), "{}", field)
            }
            Err(other) => prop_assert!(false, "{}", other),
        }
    }
}
