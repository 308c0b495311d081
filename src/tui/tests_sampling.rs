//! `/sampling` and `/preset` through the command line of the chat: the
//! chain shown in order, edits of any key, presets from the shipped files,
//! and bad input refused with the key named and nothing changed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::tui::app::Overlay;
use crate::tui::screens::chat::commands::run;
use crate::tui::tests::chat_app;
use her_core::sampling_edit::read_presets;

fn notice(app: &crate::tui::app::App) -> (String, bool) {
    app.status.notice.clone().unwrap_or_default()
}

#[test]
fn sampling_shows_the_chain_and_edits_any_key() {
    let mut app = chat_app();
    run(
        &mut app,
        "sampling dry_multiplier=0.8 order=dry,min_p,temperature min_p=0.05",
    );
    let (text, error) = notice(&app);
    assert!(!error, "{text}");
    let s = &app.chat.as_ref().unwrap().sampling;
    assert_eq!((s.dry_multiplier, s.min_p), (0.8, 0.05));
    assert_eq!(s.order, ["dry", "min_p", "temperature"]);

    run(&mut app, "sampling");
    let Some(Overlay::Prompt { text, .. }) = &app.overlay else {
        panic!("no chain overlay: {:?}", app.status.notice);
    };
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[1].starts_with("1. dry: multiplier 0.8"), "{text}");
    assert!(lines[2].starts_with("2. min_p: 0.05"), "{text}");
    assert!(lines[3].starts_with("3. temperature"), "{text}");
}

#[test]
fn bad_sampling_edits_name_the_key_and_change_nothing() {
    let mut app = chat_app();
    let before = app.chat.as_ref().unwrap().sampling.clone();
    for (command, needle) in [
        (
            "sampling temprature=0.9",
            "unknown sampling key 'temprature'",
        ),
        ("sampling top_k=many", "wrong type"),
        ("sampling top_p=7", "top_p"),
        ("sampling order=dry,sparkle", "sparkle"),
    ] {
        run(&mut app, command);
        let (text, error) = notice(&app);
        assert!(error && text.contains(needle), "{command}: {text}");
        assert_eq!(app.chat.as_ref().unwrap().sampling, before, "{command}");
    }
}

#[test]
fn the_shipped_presets_apply_and_keep_what_they_do_not_name() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (presets, warnings) = read_presets(&[&root.join("assets/presets")]);
    assert!(warnings.is_empty(), "{warnings:?}");
    let names: Vec<&str> = presets.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["creative", "her", "steady"]);

    let mut app = chat_app();
    app.presets = presets;
    run(&mut app, "sampling seed=1234");
    run(&mut app, "preset creative");
    let (text, error) = notice(&app);
    assert!(!error, "{text}");
    let s = app.chat.as_ref().unwrap().sampling.clone();
    assert_eq!(
        (s.min_p, s.dry_multiplier, s.xtc_probability),
        (0.05, 0.8, 0.5)
    );
    assert_eq!(s.seed, 1234, "the preset does not name the seed");
    // Back to the defaults' chain.
    run(&mut app, "preset her");
    let s = &app.chat.as_ref().unwrap().sampling;
    assert_eq!((s.dry_multiplier, s.min_p, s.top_p), (0.0, 0.0, 0.9));

    run(&mut app, "preset nowhere");
    let (text, error) = notice(&app);
    assert!(
        error && text.contains("no preset 'nowhere'") && text.contains("creative"),
        "{text}"
    );
}
