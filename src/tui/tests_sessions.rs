//! Errors on every screen, and sessions another window writes to: the
//! choice between reading only and forking, and a read-only chat that
//! really writes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::action::Action;
use super::app::{Overlay, Screen};
use super::chat::ChatSession;
use super::effect::{Effect, Opening};
use super::tests::{chat_app, players, render, reply, type_text, with_chat};
use super::update::update;
use her_core::session::{SessionError, load_session};

#[test]
fn a_notice_shows_on_pickers_chat_and_overlays_alike() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = chat_app(dir.path());
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
    let dir = tempfile::tempdir().unwrap();
    let holder = chat_app(dir.path());
    let path = holder.chat.as_ref().unwrap().path.clone();
    let err = ChatSession::open(&path, players()).err().unwrap();
    assert!(
        matches!(&err, SessionError::Locked { holder: Some(h), .. } if h.pid == std::process::id()),
        "{err}"
    );
    let mut app = chat_app(dir.path());
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
    let dir = tempfile::tempdir().unwrap();
    let mut holder = chat_app(dir.path());
    type_text(&mut holder, "Will you dance?");
    update(&mut holder, Action::Submit);
    reply(&mut holder, &["First."]);
    update(&mut holder, Action::Regenerate);
    reply(&mut holder, &["Second."]);
    let path = holder.chat.as_ref().unwrap().path.clone();
    let before = std::fs::read(&path).unwrap();

    let (chat, _) =
        ChatSession::open_read_only(&path, players(), "another window writes to it".into())
            .unwrap();
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
        update(&mut app, action);
    }
    assert!(update(&mut app, Action::Arena).is_empty());
    // Browsing alternatives still works, in memory.
    update(&mut app, Action::SwipePrev);
    assert!(app.messages.last().unwrap().raw.ends_with("First."));
    assert_eq!(std::fs::read(&path).unwrap(), before);

    // A fork is writable, holds the story, and leaves the original alone.
    let (fork, _) = ChatSession::fork(&path, dir.path(), players()).unwrap();
    let fork_path = fork.path.clone();
    let mut app = with_chat(fork);
    type_text(&mut app, "In the fork");
    assert!(matches!(
        update(&mut app, Action::Submit).as_slice(),
        [Effect::Generate(_)]
    ));
    reply(&mut app, &["Forked reply."]);
    let (forked, issues) = load_session(&fork_path).unwrap();
    assert!(issues.is_empty(), "{issues:?}");
    assert_eq!(forked.tree().active_path().len(), 5);
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_session_another_window_writes_is_not_trashed() {
    let dir = tempfile::tempdir().unwrap();
    let mut holder = chat_app(dir.path());
    let path = holder.chat.as_ref().unwrap().path.clone();
    let err = super::runtime::open::trash(&path).unwrap_err();
    assert!(
        err.contains("already open for writing") && err.contains("close it there"),
        "{err}"
    );
    assert!(path.is_file());
    // The window that has it open closes it, then asks for the trash.
    holder.overlay = Some(Overlay::Confirm {
        question: "trash?".into(),
        on_yes: super::app::ConfirmAction::DeleteSession(path.clone()),
    });
    let effects = update(&mut holder, Action::Confirm);
    assert!(holder.chat.is_none());
    let [Effect::TrashSession { path: asked, .. }] = effects.as_slice() else {
        panic!("expected the trash effect: {effects:?}");
    };
    let to = super::runtime::open::trash(asked).unwrap();
    assert!(to.is_file() && !path.exists());
}
