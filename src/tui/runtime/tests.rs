//! The runtime's file work, on real files in a temp folder: session
//! appends, and opening, forking and trashing sessions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::tui::action::Action;
use crate::tui::message::Msg;
use crate::tui::runtime::append::append;
use crate::tui::runtime::open;
use crate::tui::tests::{players, queued, reply, type_text, with_chat};
use crate::tui::update::update;
use her_core::session::{Session, SessionError, SessionFile, SessionHeader, load_session};

fn header() -> SessionHeader {
    let mut header = SessionHeader::new("Elizabeth Bennet — runtime test");
    header.character = Some("Elizabeth Bennet".into());
    header
}

#[test]
fn queued_changes_reach_the_file_as_a_direct_commit_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let header = header();
    let (mut direct, mut direct_session) =
        SessionFile::create(&dir.path().join("direct"), header.clone()).unwrap();
    let (mut file, session) = SessionFile::create(&dir.path().join("tui"), header).unwrap();
    let path = file.path().to_path_buf();

    // A conversation through `update`: lines, a swipe, a rating, a rename.
    let chat =
        crate::tui::screens::chat::session::ChatSession::new(path.clone(), session, players());
    let mut app = with_chat(chat);
    type_text(&mut app, "Will you dance?");
    update(&mut app, Action::Submit);
    reply(&mut app, &["No."]);
    update(&mut app, Action::Regenerate);
    reply(&mut app, &["Perhaps."]);
    update(&mut app, Action::RateUp);
    update(&mut app, Action::SwipePrev);
    crate::tui::screens::chat::commands::run(&mut app, "rename At Netherfield");
    let events = queued(&app);
    assert!(events.len() >= 6, "{events:?}");

    let answer = append(Some(&mut file), path.clone(), &events);
    assert!(
        matches!(&answer, Msg::Appended { count, .. } if *count == events.len()),
        "{answer:?}"
    );
    for event in events {
        direct.commit(&mut direct_session, event).unwrap();
    }
    // Byte for byte the lines `SessionFile::commit` writes, in order.
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(direct.path()).unwrap()
    );
    let (replayed, issues) = load_session(&path).unwrap();
    assert!(issues.is_empty(), "{issues:?}");
    let shown = app.chat.as_ref().unwrap();
    assert_eq!(replayed.tree(), shown.session.tree());
    assert_eq!(replayed.title(), "At Netherfield");
    assert_eq!(
        replayed.other_events().len(),
        shown.session.other_events().len()
    );
}

#[test]
fn a_write_for_another_file_is_refused_not_misplaced() {
    let dir = tempfile::tempdir().unwrap();
    let (mut file, session) = SessionFile::create(dir.path(), header()).unwrap();
    let before = std::fs::read(file.path()).unwrap();
    let event = session.rename_event("elsewhere");
    let other = dir.path().join("other.jsonl");
    let answer = append(Some(&mut file), other.clone(), std::slice::from_ref(&event));
    assert!(
        matches!(&answer, Msg::WriteFailed { path, written: 0, .. } if *path == other),
        "{answer:?}"
    );
    assert!(matches!(
        append(None, other, &[event]),
        Msg::WriteFailed { written: 0, .. }
    ));
    assert_eq!(std::fs::read(file.path()).unwrap(), before);
}

#[test]
fn the_second_opener_is_told_who_holds_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let holder = open::create(dir.path(), players(), header()).unwrap();
    let path = holder.chat.path.clone();
    let err = open::resume(&path, players()).err().unwrap();
    assert!(
        matches!(&err, SessionError::Locked { holder: Some(h), .. } if h.pid == std::process::id()),
        "{err}"
    );
}

#[test]
fn read_only_writes_nothing_and_a_fork_continues_in_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut holder = open::create(dir.path(), players(), header()).unwrap();
    let path = holder.chat.path.clone();
    let greeted = Session::clone(&holder.chat.session);
    let mut app = with_chat(holder.chat);
    type_text(&mut app, "Will you dance?");
    update(&mut app, Action::Submit);
    reply(&mut app, &["First."]);
    let events = queued(&app);
    append(holder.file.as_mut(), path.clone(), &events);
    let before = std::fs::read(&path).unwrap();

    let opened = open::read_only(&path, players(), "another window writes to it".into()).unwrap();
    assert!(opened.file.is_none(), "no file to write to");
    assert_eq!(
        opened.chat.read_only.as_deref(),
        Some("another window writes to it")
    );

    let mut fork = open::fork(&path, dir.path(), players()).unwrap();
    let fork_path = fork.chat.path.clone();
    assert_ne!(fork_path, path);
    let mut app = with_chat(fork.chat);
    type_text(&mut app, "In the fork");
    update(&mut app, Action::Submit);
    reply(&mut app, &["Forked reply."]);
    let answer = append(fork.file.as_mut(), fork_path.clone(), &queued(&app));
    assert!(matches!(answer, Msg::Appended { .. }), "{answer:?}");
    let (forked, issues) = load_session(&fork_path).unwrap();
    assert!(issues.is_empty(), "{issues:?}");
    assert_eq!(
        forked.tree().active_path().len(),
        greeted.tree().active_path().len() + 4
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_session_another_window_writes_is_not_trashed() {
    let dir = tempfile::tempdir().unwrap();
    let holder = open::create(dir.path(), players(), header()).unwrap();
    let path = holder.chat.path.clone();
    let err = open::trash(&path).unwrap_err();
    assert!(
        err.contains("already open for writing") && err.contains("close it there"),
        "{err}"
    );
    assert!(path.is_file());
    // The window that has it open drops its file first (as the runtime
    // does for `Effect::TrashSession`), then moves it.
    drop(holder);
    let to = open::trash(&path).unwrap();
    assert!(to.is_file() && !path.exists());
}

/// `/lore attach` on real files: the book read from the lore folder, a
/// missing name refused with why; `/lore books` lists the folder.
#[test]
fn books_are_read_from_the_lore_folder_for_update() {
    use crate::tui::runtime::books;
    use her_core::lore::{Book, Entry, save_book};
    let dir = tempfile::tempdir().unwrap();
    let mut entry = Entry::new(1);
    entry.keys = vec!["sword".into()];
    entry.content = "The sword is cursed.".into();
    let vale = Book {
        name: "vale".into(),
        entries: vec![entry],
        ..Book::default()
    };
    save_book(dir.path(), &vale, false).unwrap();
    let names = vec!["vale".to_string(), "nowhere".to_string()];
    let answer = books::load("s.jsonl".into(), dir.path(), &names, Some("nowhere".into()));
    let Msg::BooksLoaded { books, attach, .. } = answer else {
        panic!("{answer:?}");
    };
    assert_eq!(books.get("vale"), Some(&Ok(vale)));
    assert!(books.get("nowhere").unwrap().is_err());
    let (name, found) = attach.unwrap();
    assert_eq!(name, "nowhere");
    assert!(found.unwrap_err().contains("nowhere"));
    let Msg::BooksListed { names, .. } = books::list(dir.path().to_path_buf()) else {
        panic!("not a listing");
    };
    assert_eq!(names, ["vale"]);
}
