//! One test per SillyTavern rule (world-info.js 1.18, `checkWorldInfo` and
//! helpers), on small hand-made books.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::lore::explain::{ContextField, Placement, Reason, Source, Why};
use crate::lore::model::{
    CharacterFilter, Entry, Logic, Position, RecursionDelay, Role, ScanSources,
};

/// One token per character: budgets are easy to reason about.
fn chars(text: &str) -> usize {
    text.chars().count()
}

fn entry(uid: u32, keys: &[&str], content: &str) -> Entry {
    let mut e = Entry::new(uid);
    e.keys = keys.iter().map(|k| k.to_string()).collect();
    e.content = content.into();
    e
}

fn book(entries: Vec<Entry>) -> Book {
    Book {
        name: "world".into(),
        entries,
        ..Book::default()
    }
}

fn library(entries: Vec<Entry>, settings: ScanSettings) -> Library {
    Library::new(vec![(book(entries), Scope::Global)], settings)
}

fn messages<'a>(lines: &[&'a str]) -> Vec<ScanMessage<'a>> {
    lines
        .iter()
        .enumerate()
        .map(|(i, text)| ScanMessage {
            name: if i % 2 == 0 { "Ann" } else { "Bob" },
            text,
            is_user: i % 2 == 0,
        })
        .collect()
}

fn run(lib: &Library, lines: &[&str]) -> ScanOutcome {
    let msgs = messages(lines);
    let timed = TimedState::default();
    lib.scan(&ScanInput::new(&msgs, &timed), &chars)
}

fn uids(outcome: &ScanOutcome) -> Vec<u32> {
    outcome.activated.iter().map(|a| a.uid).collect()
}

fn left(outcome: &ScanOutcome, uid: u32) -> Option<&Reason> {
    outcome
        .left_out
        .iter()
        .find(|l| l.uid == uid)
        .map(|l| &l.reason)
}

#[test]
fn plain_keys_are_case_insensitive_whole_words_by_default() {
    let lib = library(vec![entry(1, &["dragon"], "D")], ScanSettings::default());
    assert_eq!(uids(&run(&lib, &["A DRAGON!"])), [1]);
    assert!(
        uids(&run(&lib, &["dragonfly"])).is_empty(),
        "not a whole word"
    );
    let mut partial = entry(1, &["dragon"], "D");
    partial.match_whole_words = Some(false);
    let mut exact = entry(2, &["Dragon"], "D");
    exact.case_sensitive = Some(true);
    let lib = library(vec![partial, exact], ScanSettings::default());
    assert_eq!(uids(&run(&lib, &["dragonfly"])), [1]);
    assert_eq!(uids(&run(&lib, &["Dragon"])), [1, 2]);
    // A key of several words is a substring test even with whole words on.
    let lib = library(vec![entry(1, &["red drag"], "D")], ScanSettings::default());
    assert_eq!(uids(&run(&lib, &["the red dragon"])), [1]);
}

#[test]
fn the_first_matching_primary_key_is_reported_with_its_message() {
    let lib = library(
        vec![entry(1, &["castle", "tower"], "C")],
        ScanSettings::default(),
    );
    let out = run(&lib, &["a tower", "a castle"]);
    match &out.activated[0].why {
        Why::Keys(m) => {
            assert_eq!(m.key, "castle");
            assert_eq!(m.found_in, Source::Message { from_end: 0 });
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn secondary_keys_follow_the_four_logics() {
    let mk = |uid, logic| {
        let mut e = entry(uid, &["sword"], "S");
        e.secondary_keys = vec!["fire".into(), "ice".into()];
        e.logic = logic;
        e
    };
    let lib = library(
        vec![
            mk(0, Logic::AndAny),
            mk(1, Logic::NotAll),
            mk(2, Logic::NotAny),
            mk(3, Logic::AndAll),
        ],
        ScanSettings::default(),
    );
    assert_eq!(uids(&run(&lib, &["a sword"])), [1, 2]);
    assert_eq!(uids(&run(&lib, &["a sword of fire"])), [0, 1]);
    assert_eq!(uids(&run(&lib, &["a sword of fire and ice"])), [0, 3]);
    assert!(
        uids(&run(&lib, &["fire and ice"])).is_empty(),
        "no primary key"
    );
    // Not selective: the secondary keys are not consulted.
    let mut plain = mk(4, Logic::AndAll);
    plain.selective = false;
    let lib = library(vec![plain], ScanSettings::default());
    assert_eq!(uids(&run(&lib, &["a sword"])), [4]);
}

#[test]
fn regex_keys_ignore_case_and_word_settings_and_see_speakers() {
    let lib = library(
        vec![
            entry(1, &["/dr[ae]gons?/i"], "D"),
            entry(2, &["/DRAGON/"], "D"),
            entry(3, &[r"/\x01Bob:[^\x01]*?hello/"], "Bob greets"),
        ],
        ScanSettings::default(),
    );
    assert_eq!(uids(&run(&lib, &["Dragonfly"])), [1]);
    assert_eq!(uids(&run(&lib, &["hello", "DRAGON, hello"])), [1, 2, 3]);
    assert_eq!(uids(&run(&lib, &["hello", "bye"])), Vec::<u32>::new());
    // A broken regex is matched as plain text, with a warning.
    let lib = library(vec![entry(1, &["/a(/"], "x")], ScanSettings::default());
    assert_eq!(lib.warnings().len(), 1, "{:?}", lib.warnings());
    assert_eq!(uids(&run(&lib, &["see /a(/ here"])), [1]);
}

#[test]
fn scan_depth_counts_messages_from_the_end() {
    let mut deep = entry(2, &["ghost"], "G");
    deep.scan_depth = Some(3);
    let lib = library(
        vec![entry(1, &["ghost"], "G"), deep],
        ScanSettings::default(),
    );
    assert_eq!(uids(&run(&lib, &["ghost", "b", "c"])), [2]);
    assert_eq!(uids(&run(&lib, &["a", "ghost", "c"])), [1, 2]);
    // Names are part of the scanned text.
    let lib = library(vec![entry(1, &["bob"], "B")], ScanSettings::default());
    assert_eq!(uids(&run(&lib, &["x", "y"])), [1]);
    let lib = library(
        vec![entry(1, &["bob"], "B")],
        ScanSettings {
            include_names: false,
            ..ScanSettings::default()
        },
    );
    assert!(uids(&run(&lib, &["x", "y"])).is_empty());
}

#[test]
fn constant_disabled_and_empty_keys() {
    let mut always = entry(1, &[], "always");
    always.constant = true;
    let mut off = entry(2, &["x"], "off");
    off.disabled = true;
    off.constant = true;
    let lib = library(
        vec![
            always,
            off,
            entry(3, &[], "no keys"),
            entry(4, &["  "], "blank"),
        ],
        ScanSettings::default(),
    );
    let out = run(&lib, &["x"]);
    assert_eq!(uids(&out), [1]);
    assert_eq!(out.activated[0].why, Why::Constant);
}

#[test]
fn recursion_activates_entries_named_in_activated_content() {
    let entries = || {
        vec![
            entry(1, &["dragon"], "The dragon guards the castle."),
            entry(2, &["castle"], "The castle has a moat."),
            entry(3, &["moat"], "Eels live in the moat."),
        ]
    };
    let lib = library(entries(), ScanSettings::default());
    let out = run(&lib, &["a dragon"]);
    assert_eq!(uids(&out), [1, 2, 3]);
    assert_eq!(out.activated[2].pass, 3);
    match &out.activated[1].why {
        Why::Keys(m) => assert_eq!(
            m.found_in,
            Source::Recursion {
                book: "world".into(),
                uid: 1
            }
        ),
        other => panic!("{other:?}"),
    }
    // Off, or limited to one step: no recursion.
    let off = library(
        entries(),
        ScanSettings {
            recursive: false,
            ..ScanSettings::default()
        },
    );
    assert_eq!(uids(&run(&off, &["a dragon"])), [1]);
    let two_steps = library(
        entries(),
        ScanSettings {
            max_recursion_steps: 2,
            ..ScanSettings::default()
        },
    );
    assert_eq!(uids(&run(&two_steps, &["a dragon"])), [1, 2]);
}

#[test]
fn exclude_and_prevent_recursion() {
    let mut non_recursable = entry(2, &["castle"], "C");
    non_recursable.exclude_recursion = true;
    let lib = library(
        vec![entry(1, &["dragon"], "near the castle"), non_recursable],
        ScanSettings::default(),
    );
    let out = run(&lib, &["a dragon"]);
    assert_eq!(uids(&out), [1]);
    assert_eq!(left(&out, 2), Some(&Reason::ExcludedFromRecursion));
    // Found in the chat itself it activates normally.
    assert_eq!(uids(&run(&lib, &["a dragon at the castle"])), [1, 2]);

    let mut quiet = entry(1, &["dragon"], "near the castle");
    quiet.prevent_recursion = true;
    let lib = library(
        vec![quiet, entry(2, &["castle"], "C")],
        ScanSettings::default(),
    );
    assert_eq!(uids(&run(&lib, &["a dragon"])), [1]);
}

#[test]
fn delayed_entries_wait_for_their_recursion_level() {
    let mut starter = entry(1, &[], "alpha");
    starter.constant = true;
    let mut level1 = entry(2, &["alpha"], "beta");
    level1.delay_until_recursion = RecursionDelay::On;
    let mut level2 = entry(3, &["beta"], "gamma");
    level2.delay_until_recursion = RecursionDelay::Level(2);
    let mut level2_in_chat = entry(4, &["chat"], "delta");
    level2_in_chat.delay_until_recursion = RecursionDelay::Level(2);
    let lib = library(
        vec![starter, level1, level2, level2_in_chat],
        ScanSettings::default(),
    );
    let out = run(&lib, &["the chat"]);
    let passes: Vec<(u32, u32)> = out.activated.iter().map(|a| (a.uid, a.pass)).collect();
    // Pass 1: the constant; 2: level 1 from its content; 3: nothing new at
    // level 1; 4: level 2 opens.
    assert_eq!(passes, [(1, 1), (2, 2), (3, 4), (4, 4)]);
    // Without recursion, delayed entries never activate.
    let lib = library(
        vec![level2_copy()],
        ScanSettings {
            recursive: false,
            ..ScanSettings::default()
        },
    );
    let out = run(&lib, &["the chat"]);
    assert!(out.activated.is_empty());
    assert_eq!(
        left(&out, 4),
        Some(&Reason::DelayedUntilRecursion { level: 2 })
    );
}

fn level2_copy() -> Entry {
    let mut e = entry(4, &["chat"], "delta");
    e.delay_until_recursion = RecursionDelay::Level(2);
    e
}

#[test]
fn probability_is_seeded_per_session_message_and_entry() {
    let mut e = entry(1, &["coin"], "heads");
    e.probability = 50.0;
    let lib = library(vec![e], ScanSettings::default());
    let msgs = messages(&["coin"]);
    let timed = TimedState::default();
    let with_seed = |seed| {
        let input = ScanInput {
            seed,
            ..ScanInput::new(&msgs, &timed)
        };
        lib.scan(&input, &chars)
    };
    assert_eq!(with_seed(7), with_seed(7), "same seed, same answer");
    let hits = (0..1000u64)
        .filter(|&s| !with_seed(s).activated.is_empty())
        .count();
    assert!((420..580).contains(&hits), "{hits} of 1000 at 50%");
    let failed = (0..1000u64)
        .map(with_seed)
        .find(|o| o.activated.is_empty())
        .unwrap();
    assert!(matches!(
        left(&failed, 1),
        Some(Reason::Probability { probability, .. }) if *probability == 50.0
    ));
    // use_probability off: the percentage is ignored.
    let mut e = entry(1, &["coin"], "heads");
    e.probability = 0.0;
    e.use_probability = false;
    let lib = library(vec![e], ScanSettings::default());
    assert_eq!(uids(&run(&lib, &["coin"])), [1]);
}

#[test]
fn an_inclusion_group_keeps_one_member() {
    let member = |uid, weight| {
        let mut e = entry(uid, &["weather"], "W");
        e.group = "sky".into();
        e.group_weight = weight;
        e
    };
    let lib = library(
        vec![member(1, 100), member(2, 100), member(3, 100)],
        ScanSettings::default(),
    );
    let out = run(&lib, &["the weather"]);
    assert_eq!(out.activated.len(), 1);
    assert_eq!(out.left_out.len(), 2);
    assert!(out.left_out.iter().all(|l| matches!(
        &l.reason,
        Reason::GroupLost { group, winner: Some(_) } if group == "sky"
    )));
    // Weights: 1 against 999 wins rarely.
    let lib = library(vec![member(1, 1), member(2, 999)], ScanSettings::default());
    let msgs = messages(&["the weather"]);
    let timed = TimedState::default();
    let light_wins = (0..300u64)
        .filter(|&seed| {
            let input = ScanInput {
                seed,
                ..ScanInput::new(&msgs, &timed)
            };
            lib.scan(&input, &chars).activated[0].uid == 1
        })
        .count();
    assert!(light_wins < 10, "{light_wins}");
}

#[test]
fn prioritized_inclusion_and_group_scoring() {
    let member = |uid, keys: &[&str], order| {
        let mut e = entry(uid, keys, "W");
        e.group = "sky".into();
        e.order = order;
        e
    };
    let mut a = member(1, &["rain"], 10);
    a.group_override = true;
    let mut b = member(2, &["rain"], 20);
    b.group_override = true;
    let lib = library(
        vec![a, b, member(3, &["rain"], 30)],
        ScanSettings::default(),
    );
    assert_eq!(
        uids(&run(&lib, &["rain"])),
        [2],
        "highest order among prioritized"
    );

    let scoring = ScanSettings {
        use_group_scoring: true,
        ..ScanSettings::default()
    };
    let lib = library(
        vec![member(1, &["rain"], 10), member(2, &["rain", "cold"], 10)],
        scoring,
    );
    let out = run(&lib, &["cold rain"]);
    assert_eq!(uids(&out), [2]);
    assert_eq!(
        left(&out, 1),
        Some(&Reason::GroupScore {
            group: "sky".into(),
            score: 1,
            best: 2
        })
    );
}

#[test]
fn a_group_already_served_in_an_earlier_pass_takes_nobody() {
    let mut first = entry(1, &["storm"], "thunder");
    first.group = "sky, noise".into();
    let mut second = entry(2, &["thunder"], "T");
    second.group = "noise".into();
    let lib = library(vec![first, second], ScanSettings::default());
    let out = run(&lib, &["a storm"]);
    assert_eq!(uids(&out), [1]);
    assert_eq!(
        left(&out, 2),
        Some(&Reason::GroupLost {
            group: "noise".into(),
            winner: Some("world#1".into())
        })
    );
}

#[test]
fn the_budget_is_spent_in_order_and_overflow_drops_the_rest() {
    let mk = |uid, order, content: &str| {
        let mut e = entry(uid, &["go"], content);
        e.order = order;
        e
    };
    let mut free = mk(5, 1, "free-rider");
    free.ignore_budget = true;
    // Each content is 9 characters + newline = 10 tokens.
    let lib = library(
        vec![
            mk(1, 100, "aaaaaaaaa"),
            mk(2, 300, "bbbbbbbbb"),
            mk(3, 200, "ccccccccc"),
            mk(4, 50, "d"),
            free,
        ],
        ScanSettings {
            budget: Budget::Tokens(25),
            ..ScanSettings::default()
        },
    );
    let out = run(&lib, &["go"]);
    assert_eq!(uids(&out), [2, 3, 5], "highest order first");
    assert_eq!(
        left(&out, 1),
        Some(&Reason::Budget {
            tokens: 10,
            left: 5
        })
    );
    assert_eq!(left(&out, 4), Some(&Reason::BudgetSpent));
    assert!(out.overflowed);
    assert_eq!(out.used_tokens, 31);
    // Reaching the budget exactly is an overflow too.
    let lib = library(
        vec![mk(1, 100, "aaaaaaaaa"), mk(2, 90, "bbbbbbbbb")],
        ScanSettings {
            budget: Budget::Tokens(20),
            ..ScanSettings::default()
        },
    );
    assert_eq!(uids(&run(&lib, &["go"])), [1]);
}

#[test]
fn overflow_stops_recursion_and_a_percent_budget_follows_the_context() {
    let lib = library(
        vec![
            entry(1, &["go"], "xxxxxxxxx then"),
            entry(2, &["then"], "more"),
        ],
        ScanSettings {
            budget: Budget::PercentOfContext(10),
            ..ScanSettings::default()
        },
    );
    let msgs = messages(&["go"]);
    let timed = TimedState::default();
    let input = ScanInput {
        max_context: 100,
        ..ScanInput::new(&msgs, &timed)
    };
    let out = lib.scan(&input, &chars);
    assert_eq!(out.budget, 10);
    assert!(out.activated.is_empty() && out.overflowed);
    assert_eq!(out.passes, 1);
}

#[test]
fn sticky_cooldown_and_delay_follow_the_message_count() {
    let mut storm = entry(1, &["storm"], "S");
    storm.sticky = 3;
    storm.cooldown = 4;
    let mut late = entry(2, &["storm"], "L");
    late.delay = 5;
    let lib = library(vec![storm, late], ScanSettings::default());
    let mut state = TimedState::default();
    let mut chat: Vec<String> = Vec::new();
    let mut turn = |user: &str, state: &mut TimedState| {
        chat.push(user.to_string());
        let lines: Vec<&str> = chat.iter().map(String::as_str).collect();
        let msgs = messages(&lines);
        let out = lib.scan(&ScanInput::new(&msgs, state), &chars);
        assert_eq!(state.with_events(&out.timed_events), out.timed);
        *state = out.timed.clone();
        chat.push("reply".into());
        out
    };
    // 1 message: storm activates, sticky to 4, cooldown to 5; `late` waits for 5.
    let out = turn("storm", &mut state);
    assert_eq!(uids(&out), [1]);
    assert_eq!(left(&out, 2), Some(&Reason::Delay { until: 5 }));
    // 3 messages: still sticky without its key.
    let out = turn("calm", &mut state);
    assert_eq!(uids(&out), [1]);
    assert_eq!(out.activated[0].why, Why::Sticky);
    // 5: sticky ended, its cooldown runs to 9; `late` may now fire.
    let out = turn("storm", &mut state);
    assert_eq!(uids(&out), [2]);
    assert_eq!(left(&out, 1), Some(&Reason::Cooldown { until: 9 }));
    let out = turn("storm", &mut state);
    assert_eq!(left(&out, 1), Some(&Reason::Cooldown { until: 9 }));
    // 9: free again.
    let out = turn("storm", &mut state);
    assert_eq!(uids(&out), [1, 2]);
}

#[test]
fn timed_effects_follow_the_branch_they_were_recorded_on() {
    let mut storm = entry(1, &["storm"], "S");
    storm.sticky = 5;
    let lib = library(vec![storm], ScanSettings::default());
    let scan = |lines: &[&str], state: &TimedState| {
        let msgs = messages(lines);
        lib.scan(&ScanInput::new(&msgs, state), &chars)
    };
    // Branch A: "storm" first, recorded with the reply it produced.
    let a1 = scan(&["storm"], &TimedState::default());
    let branch_a_events = a1.timed_events.clone();
    let a2 = scan(
        &["storm", "reply", "calm"],
        &TimedState::replay(&branch_a_events),
    );
    assert_eq!(uids(&a2), [1], "sticky on branch A");
    // Branch B edits the first message: its path holds no activation.
    let b1 = scan(&["calm"], &TimedState::default());
    assert!(b1.timed_events.is_empty());
    let b2 = scan(
        &["calm", "reply", "calm"],
        &TimedState::replay(&b1.timed_events),
    );
    assert!(b2.activated.is_empty(), "no sticky on branch B");
    // A state wrongly carried to a chat that is not longer is dropped.
    let carried = scan(&["calm"], &a1.timed);
    assert!(carried.activated.is_empty() && carried.timed.effects().is_empty());
}

#[test]
fn sticky_entries_come_first_and_win_their_group() {
    let mut held = entry(1, &["tide"], "H");
    held.sticky = 9;
    held.order = 1;
    held.group = "sea".into();
    let mut rival = entry(2, &["wave"], "R");
    rival.group = "sea".into();
    rival.group_override = true;
    rival.order = 1000;
    let lib = library(vec![held, rival], ScanSettings::default());
    let first = run(&lib, &["tide"]);
    let msgs = messages(&["tide", "r", "wave"]);
    let out = lib.scan(&ScanInput::new(&msgs, &first.timed), &chars);
    assert_eq!(uids(&out), [1]);
    assert_eq!(out.activated[0].why, Why::Sticky);
    assert!(matches!(left(&out, 2), Some(Reason::GroupLost { .. })));
}

#[test]
fn decorators_activate_block_and_place_entries() {
    let mut blocked = entry(2, &[], "@@dont_activate\nnever");
    blocked.constant = true;
    let lib = library(
        vec![
            entry(1, &[], "@@activate\nalways"),
            blocked,
            entry(3, &["key"], "@@depth 2\n@@role user\ndeep"),
            entry(4, &["key"], "@@position scenario\nscene"),
            entry(5, &["key"], "@@additional_keys moon, sun\nboth"),
            entry(6, &["key"], "@@exclude_keys night\nday"),
            entry(7, &["key"], "@@position pt_map\nmap"),
        ],
        ScanSettings::default(),
    );
    let out = run(&lib, &["key under the sun at night"]);
    assert_eq!(uids(&out), [1, 3, 4, 5, 7]);
    assert_eq!(out.activated[0].content, "always");
    assert_eq!(out.activated[0].why, Why::Decorator);
    assert_eq!(left(&out, 2), Some(&Reason::DontActivate));
    assert_eq!(
        out.activated[1].placement,
        Placement::AtDepth {
            depth: 2,
            role: Role::User
        }
    );
    assert_eq!(out.activated[2].placement, Placement::Scenario);
    assert_eq!(
        out.activated[4].placement,
        Placement::Outlet { name: "map".into() }
    );
}

#[test]
fn reply_count_decorators() {
    let lib = library(
        vec![
            entry(1, &["k"], "@@activate_only_after 2\nA"),
            entry(2, &["k"], "@@activate_only_every 2\nB"),
        ],
        ScanSettings::default(),
    );
    // One reply so far.
    let out = run(&lib, &["k", "r", "k"]);
    assert!(out.activated.is_empty());
    assert!(matches!(left(&out, 1), Some(Reason::ReplyCount { .. })));
    // Two replies.
    assert_eq!(uids(&run(&lib, &["k", "r", "k", "r", "k"])), [1, 2]);
}

#[test]
fn macros_keys_context_fields_and_injected_text() {
    let mut desc = entry(2, &["orphan"], "O");
    desc.also_scan = ScanSources {
        character_description: true,
        ..ScanSources::default()
    };
    let lib = library(
        vec![entry(1, &["{{char}}"], "C"), desc, entry(3, &["plot"], "P")],
        ScanSettings::default(),
    );
    let msgs = messages(&["hello Holmes"]);
    let timed = TimedState::default();
    let substitute = |t: &str| t.replace("{{char}}", "Holmes");
    let injected = ["remember the plot"];
    let input = ScanInput {
        context: ScanContext {
            character_description: "an orphan detective",
            ..ScanContext::default()
        },
        injected: &injected,
        macros: Some(&substitute),
        ..ScanInput::new(&msgs, &timed)
    };
    let out = lib.scan(&input, &chars);
    assert_eq!(uids(&out), [1, 2, 3]);
    let found: Vec<Source> = out
        .activated
        .iter()
        .map(|a| match &a.why {
            Why::Keys(m) => m.found_in.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        found,
        [
            Source::Message { from_end: 0 },
            Source::Context {
                field: ContextField::CharacterDescription
            },
            Source::Injected
        ]
    );
}

#[test]
fn min_activations_scan_deeper() {
    let lib = library(
        vec![entry(1, &["old"], "O")],
        ScanSettings {
            min_activations: 1,
            ..ScanSettings::default()
        },
    );
    let out = run(&lib, &["old", "b", "c", "d"]);
    assert_eq!(uids(&out), [1]);
    assert!(out.passes >= 3);
}

#[test]
fn character_filters_and_generation_triggers() {
    let mut only_holmes = entry(1, &["k"], "H");
    only_holmes.character_filter = Some(CharacterFilter {
        names: vec!["holmes".into()],
        ..CharacterFilter::default()
    });
    let mut not_tagged = entry(2, &["k"], "T");
    not_tagged.character_filter = Some(CharacterFilter {
        exclude: true,
        tags: vec!["villain".into()],
        ..CharacterFilter::default()
    });
    let mut on_swipe = entry(3, &["k"], "S");
    on_swipe.triggers = vec!["swipe".into()];
    let lib = library(
        vec![only_holmes, not_tagged, on_swipe],
        ScanSettings::default(),
    );
    let msgs = messages(&["k"]);
    let timed = TimedState::default();
    let tags = vec!["villain".to_string()];
    let holmes = ScanInput {
        character: Some("holmes"),
        ..ScanInput::new(&msgs, &timed)
    };
    assert_eq!(uids(&lib.scan(&holmes, &chars)), [1, 2]);
    let villain = ScanInput {
        character: Some("moriarty"),
        character_tags: Some(&tags),
        trigger: "swipe",
        ..ScanInput::new(&msgs, &timed)
    };
    assert_eq!(uids(&lib.scan(&villain, &chars)), [3]);
}

#[test]
fn chat_books_come_before_character_and_global_books() {
    let mut global = entry(1, &["k"], "global");
    global.order = 900;
    let chat = entry(1, &["k"], "chat");
    let lib = Library::new(
        vec![
            (book(vec![global]), Scope::Global),
            (
                Book {
                    name: "session".into(),
                    entries: vec![chat],
                    ..Book::default()
                },
                Scope::Chat,
            ),
        ],
        ScanSettings {
            budget: Budget::Tokens(6),
            ..ScanSettings::default()
        },
    );
    let out = run(&lib, &["k"]);
    assert_eq!(out.activated.len(), 1);
    assert_eq!(out.activated[0].book, "session");
}

#[test]
fn positions_map_onto_placements() {
    let mut e = entry(1, &[], "x");
    e.constant = true;
    e.position = Position::AtDepth;
    e.depth = 0;
    e.role = Some(Role::Assistant);
    let lib = library(vec![e], ScanSettings::default());
    assert_eq!(
        run(&lib, &[]).activated[0].placement,
        Placement::AtDepth {
            depth: 0,
            role: Role::Assistant
        }
    );
}

// Where SillyTavern's code misses its evident intent (README, "Lorebooks").

#[test]
fn scan_depth_zero_still_sees_recursion() {
    let mut starter = entry(1, &[], "the castle");
    starter.constant = true;
    let mut blind = entry(2, &["castle"], "C");
    blind.scan_depth = Some(0);
    let mut chat_only = entry(3, &["moat"], "M");
    chat_only.scan_depth = Some(0);
    let lib = library(vec![starter, blind, chat_only], ScanSettings::default());
    let out = run(&lib, &["a moat"]);
    assert_eq!(uids(&out), [1, 2]);
}

#[test]
fn the_budget_counts_entries_that_prevent_recursion() {
    let mut quiet = entry(1, &["go"], "aaaaaaaaa");
    quiet.order = 200;
    quiet.prevent_recursion = true;
    let mut feeder = entry(2, &["go"], "then cccc");
    feeder.order = 150;
    let lib = library(
        vec![quiet, feeder, entry(3, &["then"], "bbbbbbbbb")],
        ScanSettings {
            budget: Budget::Tokens(30),
            ..ScanSettings::default()
        },
    );
    // 10 + 10 in the first pass; the recursion pass's 10 more reach 30.
    let out = run(&lib, &["go"]);
    assert_eq!(uids(&out), [1, 2]);
    assert_eq!(
        left(&out, 3),
        Some(&Reason::Budget {
            tokens: 10,
            left: 10
        })
    );
}

#[test]
fn an_entry_in_two_groups_leaves_each_group_a_winner() {
    let member = |uid, group: &str, prioritized| {
        let mut e = entry(uid, &["bell"], "B");
        e.group = group.into();
        e.group_override = prioritized;
        e
    };
    let lib = library(
        vec![
            member(1, "x, y", false),
            member(2, "x", true),
            member(3, "y", false),
        ],
        ScanSettings::default(),
    );
    for seed in 0..20 {
        let msgs = messages(&["bell"]);
        let timed = TimedState::default();
        let input = ScanInput {
            seed,
            ..ScanInput::new(&msgs, &timed)
        };
        assert_eq!(uids(&lib.scan(&input, &chars)), [2, 3], "seed {seed}");
    }
}

#[test]
fn an_edited_entry_keeps_its_running_effect() {
    let mut storm = entry(1, &["storm"], "before the edit");
    storm.sticky = 5;
    let first = run(
        &library(vec![storm.clone()], ScanSettings::default()),
        &["storm"],
    );
    storm.content = "after the edit".into();
    let edited = library(vec![storm], ScanSettings::default());
    let msgs = messages(&["storm", "r", "calm"]);
    let out = edited.scan(&ScanInput::new(&msgs, &first.timed), &chars);
    assert_eq!(out.activated[0].why, Why::Sticky);
    assert_eq!(out.activated[0].content, "after the edit");
}
