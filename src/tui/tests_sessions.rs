//! Errors on every screen, sessions another window writes to (the choice
//! between reading only and forking, a read-only chat that changes
//! nothing), and session writes as effects: in order, one batch at a time,
//! and a failed write kept, shown, tried again and never dropped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use crate::tui::action::Action;
use crate::tui::app::{Overlay, Screen};
use crate::tui::effect::{Effect, Opening};
use crate::tui::message::Msg;
use crate::tui::screens::chat::session::ChatSession;
use crate::tui::tests::{chat_app, players, queued, render, reply, type_text, with_chat};
use crate::tui::update::update;
use her_core::session::SessionEvent;

#[test]
fn a_notice_shows_on_pickers_chat_and_overlays_alike() {
    let mut app = chat_app();
    let long = format!("cannot start a new session: {} the end", "word ".repeat(30));
    for screen in [Screen::Characters, Screen::Sessions, Screen::Chat] {
        for overlay in [None, Some(Overlay::Help { scroll: 0 })] {
            app.screen = screen.clone();
            app.overlay = overlay;
            app.notify(long.clone(), true);
            let shown = render(&mut app, 60, 20);
            // Wrapped over the bottom rows, whole.
            let flat: String = shown.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(
                flat.contains("cannot start a new session") && flat.contains("the end"),
                "{screen:?}:\n{shown}"
            );
        }
    }
}

#[test]
fn the_second_opener_chooses_read_only_or_fork() {
    let mut app = chat_app();
    let path = PathBuf::from("sessions/held-elsewhere.jsonl");
    let locked = Overlay::Locked {
        path: path.clone(),
        holder: "pid 1".into(),
        cursor: 0,
    };
    app.overlay = Some(locked.clone());
    let shown = render(&mut app, 100, 30);
    let flat: String = shown.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("another her window (pid 1)"), "{shown}");
    assert!(matches!(
        update(&mut app, Action::Insert('r')).as_slice(),
        [Effect::OpenSession { opening: Opening::ReadOnly(p), .. }] if *p == path
    ));
    app.overlay = Some(locked.clone());
    update(&mut app, Action::ListDown);
    assert!(matches!(
        update(&mut app, Action::Submit).as_slice(),
        [Effect::OpenSession { opening: Opening::Fork(p), .. }] if *p == path
    ));
    app.overlay = Some(locked);
    assert!(update(&mut app, Action::CloseOverlay).is_empty());
    assert!(app.overlay.is_none());
}

#[test]
fn a_read_only_chat_refuses_every_change_and_writes_nothing() {
    let mut holder = chat_app();
    type_text(&mut holder, "Will you dance?");
    update(&mut holder, Action::Submit);
    reply(&mut holder, &["First."]);
    update(&mut holder, Action::Regenerate);
    reply(&mut holder, &["Second."]);
    let session = holder.chat.take().unwrap().session;

    let mut chat = ChatSession::new(PathBuf::from("sessions/s.jsonl"), session, players());
    chat.read_only = Some("another window writes to it".into());
    let mut app = with_chat(chat);
    assert!(app.status.session.ends_with("(read-only)"));
    type_text(&mut app, "Mine too");
    assert!(update(&mut app, Action::Submit).is_empty());
    let notice = app.status.notice.clone().unwrap().0;
    assert!(notice.contains("nothing was saved"), "{notice}");
    assert_eq!(app.composer.text, "Mine too", "the text is kept");
    app.composer.take();
    update(&mut app, Action::FocusTranscript);
    for action in [Action::RateUp, Action::Regenerate, Action::EditSelected] {
        assert!(update(&mut app, action).is_empty());
    }
    assert!(update(&mut app, Action::Arena).is_empty());
    // Browsing alternatives still works, in memory.
    assert!(update(&mut app, Action::SwipePrev).is_empty());
    assert!(app.messages.last().unwrap().raw.ends_with("First."));
    assert!(queued(&app).is_empty(), "nothing goes to the log");
}

#[test]
fn closing_the_open_session_for_the_trash_drops_it_here_first() {
    let mut app = chat_app();
    let path = app.chat.as_ref().unwrap().path.clone();
    app.overlay = Some(Overlay::Confirm {
        question: "trash?".into(),
        on_yes: crate::tui::app::ConfirmAction::DeleteSession(path.clone()),
    });
    let effects = update(&mut app, Action::Confirm);
    assert!(app.chat.is_none());
    assert!(
        matches!(effects.as_slice(), [Effect::TrashSession { path: asked, .. }] if *asked == path),
        "{effects:?}"
    );
}

/// The Append effects of one message, with their events.
fn appends(effects: &[Effect]) -> Vec<(PathBuf, Vec<SessionEvent>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Append { path, events } => Some((path.clone(), events.clone())),
            _ => None,
        })
        .collect()
}

fn notice(app: &crate::tui::app::App) -> String {
    app.status
        .notice
        .clone()
        .map(|(t, _)| t)
        .unwrap_or_default()
}

#[test]
fn changes_go_to_the_log_as_effects_in_order_and_a_failed_write_is_kept_and_retried() {
    let mut app = chat_app();
    let path = app.chat.as_ref().unwrap().path.clone();
    type_text(&mut app, "Will you dance?");
    // The user's line is applied, queued, and sent before the generation.
    let effects = update(&mut app, Action::Submit);
    assert!(
        matches!(
            effects.as_slice(),
            [Effect::Append { .. }, Effect::Generate(_)]
        ),
        "{effects:?}"
    );
    let [(to, first)] = appends(&effects).try_into().unwrap();
    assert_eq!(to, path);
    assert!(matches!(first.as_slice(), [SessionEvent::Message { .. }]));
    // While that batch is in flight the reply is queued behind it.
    let mut effects = Vec::new();
    for event in [
        her_engine::Event::Text("Elizabeth Bennet: No.".into()),
        her_engine::Event::Finished(crate::tui::tests::finished(
            her_engine::FinishReason::EndOfGeneration,
        )),
    ] {
        effects.extend(update(&mut app, Msg::Engine(event)));
    }
    assert!(appends(&effects).is_empty(), "one batch at a time");
    assert_eq!(app.messages.len(), 3, "shown at once");
    // The first batch is on disk; the reply goes next.
    let effects = update(
        &mut app,
        Msg::Appended {
            path: path.clone(),
            count: 1,
        },
    );
    let [(_, second)] = appends(&effects).try_into().unwrap();
    assert!(matches!(second.first(), Some(SessionEvent::Message { .. })));
    assert_eq!(queued(&app), second, "only the unconfirmed events stay");

    // The disk fills: the reply stays queued, the status bar says so.
    let effects = update(
        &mut app,
        Msg::WriteFailed {
            path: path.clone(),
            written: 0,
            error: "No space left on device".into(),
        },
    );
    assert!(appends(&effects).is_empty());
    assert!(
        notice(&app).contains("could not be saved: No space left"),
        "{}",
        notice(&app)
    );
    assert!(
        app.status.session.contains("unsaved"),
        "{}",
        app.status.session
    );
    assert_eq!(queued(&app), second);
    // Quitting asks once more and tries again; other sessions wait.
    let effects = update(&mut app, Action::Quit);
    assert!(!app.quit);
    assert_eq!(appends(&effects), vec![(path.clone(), second.clone())]);
    update(
        &mut app,
        Msg::WriteFailed {
            path: path.clone(),
            written: 0,
            error: "No space left on device".into(),
        },
    );
    update(&mut app, Action::CloseOverlay);
    assert!(crate::tui::update::open_session(&mut app, Opening::New).is_empty());
    assert!(
        notice(&app).contains("could not be saved"),
        "{}",
        notice(&app)
    );
    // A tick after a few seconds sends the same events again, in order.
    let mut retried = Vec::new();
    for _ in 0..40 {
        retried.extend(appends(&update(
            &mut app,
            Msg::Tick(std::time::Instant::now()),
        )));
    }
    assert_eq!(retried, vec![(path.clone(), second.clone())]);
    update(
        &mut app,
        Msg::Appended {
            path,
            count: second.len(),
        },
    );
    assert!(queued(&app).is_empty());
    assert_eq!(app.exit_failure(), None);
    assert!(
        !app.status.session.contains("unsaved"),
        "{}",
        app.status.session
    );
}

#[test]
fn a_second_quit_leaves_and_the_exit_reports_what_was_not_saved() {
    let mut app = chat_app();
    let path = app.chat.as_ref().unwrap().path.clone();
    update(&mut app, Action::RateUp);
    update(
        &mut app,
        Msg::WriteFailed {
            path,
            written: 0,
            error: "Read-only file system".into(),
        },
    );
    update(&mut app, Action::Quit);
    assert!(!app.quit);
    update(&mut app, Action::Quit);
    assert!(app.quit);
    let report = app.exit_failure().unwrap();
    assert!(
        report.contains("1 change(s)") && report.contains("could not be saved"),
        "{report}"
    );
}

#[test]
fn the_arena_seeds_follow_the_app_generator() {
    let seeds = |seed: u64| {
        let mut app = chat_app();
        app.rng = her_core::rng::SplitMix64::new(seed);
        update(&mut app, Action::Arena);
        let round = app.arena.as_ref().unwrap();
        (
            round.contenders.clone().map(|c| c.sampling.seed),
            round.shown_first,
        )
    };
    assert_eq!(seeds(7), seeds(7));
    assert_ne!(seeds(7).0, seeds(8).0);
}
