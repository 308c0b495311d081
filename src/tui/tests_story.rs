//! Lore, the author's note and memory from the chat: commands, the prompt
//! sent to the engine, and the exact prompt kept with ratings and exports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::tui::action::Action;
use crate::tui::app::{App, Overlay};
use crate::tui::effect::Effect;
use crate::tui::message::Msg;
use crate::tui::tests::{chat_app, queued, reply, type_text};
use crate::tui::update::update;
use her_core::lore::{Book, Entry, Position, Role};
use her_core::prefs::PreferenceRecord;
use her_core::prefs::sessions::{SessionPlayers, collect_session};
use her_core::session::SessionEvent;
use her_core::story::Shelf;

/// The lorebook of these tests: `vale`, with a sword and a river.
fn vale() -> Book {
    let mut sword = Entry::new(1);
    sword.comment = "the cursed sword".into();
    sword.keys = vec!["sword".into()];
    sword.content = "The sword is cursed.".into();
    let mut river = Entry::new(2);
    river.keys = vec!["river".into()];
    river.content = "The river floods in spring.".into();
    river.position = Position::AtDepth;
    river.depth = 0;
    river.role = Some(Role::System);
    Book {
        name: "vale".into(),
        entries: vec![sword, river],
        ..Book::default()
    }
}

/// Plays the runtime's part of `/lore attach|detach`: the books it asks
/// for, read from a lore folder that holds only `vale`.
fn read_books(app: &mut App, effects: Vec<Effect>) {
    let [
        Effect::LoadBooks {
            session,
            names,
            attach,
            ..
        },
    ] = effects.as_slice()
    else {
        panic!("expected the books to be read, got {effects:?}");
    };
    let lookup = |name: &str| match name {
        "vale" => Ok(vale()),
        _ => Err(format!("no lorebook '{name}' in the lore folder")),
    };
    let mut books = Shelf::default();
    for name in names {
        books.insert(name.clone(), lookup(name));
    }
    let attach = attach
        .clone()
        .map(|name| (name.clone(), lookup(&name).map(|_| ())));
    update(
        app,
        Msg::BooksLoaded {
            session: session.clone(),
            books,
            attach,
        },
    );
}

fn command(app: &mut App, text: &str) -> Vec<Effect> {
    type_text(app, text);
    update(app, Action::Submit)
}

fn notice(app: &App) -> String {
    app.status
        .notice
        .as_ref()
        .map(|(t, _)| t.clone())
        .unwrap_or_default()
}

fn overlay_text(app: &App) -> String {
    match &app.overlay {
        Some(Overlay::Prompt { text, .. }) => text.clone(),
        other => panic!("no text overlay: {other:?}"),
    }
}

/// The prompt of the one Generate effect.
fn sent_prompt(effects: &[Effect]) -> String {
    match effects {
        [Effect::Generate(request)] => request.prompt.render(0),
        other => panic!("expected one generation, got {other:?}"),
    }
}

#[test]
fn attached_lore_note_and_pins_reach_the_prompt_and_ratings_keep_the_exact_one() {
    let mut app = chat_app();
    let logged = queued(&app).len();

    // Attaching waits for the runtime to find the book: a missing one is
    // refused, nothing is logged.
    let effects = command(&mut app, "/lore attach nowhere");
    read_books(&mut app, effects);
    assert!(notice(&app).contains("nowhere"), "{}", notice(&app));
    assert_eq!(queued(&app).len(), logged);
    let effects = command(&mut app, "/lore attach vale");
    assert_eq!(queued(&app).len(), logged);
    read_books(&mut app, effects);
    assert!(notice(&app).contains("attached"), "{}", notice(&app));

    // `/lore books` asks the runtime for the folder's books and reads the
    // session's again; the answer is shown with what is attached.
    let effects = command(&mut app, "/lore books");
    assert!(
        effects.iter().any(|e| matches!(e, Effect::ListBooks(_)))
            && effects
                .iter()
                .any(|e| matches!(e, Effect::LoadBooks { attach: None, .. })),
        "{effects:?}"
    );
    update(
        &mut app,
        Msg::BooksListed {
            lore_dir: "lore".into(),
            names: vec!["vale".into()],
        },
    );
    let listed = overlay_text(&app);
    assert!(listed.contains("books in lore: vale"), "{listed}");
    assert!(
        listed.contains("attached to this session: vale"),
        "{listed}"
    );
    app.overlay = None;

    // The key in the user's line activates the entry: it is in what the
    // engine gets, in the background.
    let effects = command(&mut app, "Where is the sword?");
    let first_prompt = sent_prompt(&effects);
    assert!(first_prompt.contains("===Background===\n"));
    assert!(
        first_prompt.contains("The sword is cursed."),
        "{first_prompt}"
    );
    assert!(!first_prompt.contains("floods"));
    reply(
        &mut app,
        &["Plan.</system_thinking>Elizabeth Bennet: Near the river."],
    );

    // /lore explains the next reply: the river (in the reply) is at depth 0.
    command(&mut app, "/lore");
    let why = overlay_text(&app);
    assert!(why.contains("vale#2"), "{why}");
    assert!(why.contains("+ vale#2"), "{why}");
    assert!(why.contains("key 'river'"), "{why}");
    app.overlay = None;

    // The author's note and a pin change the next prompt (not the old one).
    command(&mut app, "/note depth=0 role=user Keep it short.");
    assert!(notice(&app).contains("depth 0"), "{}", notice(&app));
    command(&mut app, "/memory pin The sword was forged in fire.");
    let next = app.chat.as_ref().unwrap().next_prompt().render_with_skip(0);
    assert!(
        next.contains("<|im_start|>user\nKeep it short.<|im_end|>"),
        "{next}"
    );
    assert!(next.contains("To remember:\n- The sword was forged in fire."));
    assert!(next.contains("<|im_start|>system\nThe river floods in spring.<|im_end|>"));
    // `/prompt`'s explanation lists them too.
    command(&mut app, "/memory");
    assert!(overlay_text(&app).contains("The sword was forged in fire."));
    app.overlay = None;

    // Rating the reply records the prompt it answered: with the lore it
    // had, without the note and pin that came later.
    update(&mut app, Action::FocusTranscript);
    update(&mut app, Action::RateStars(4));
    let logged = queued(&app);
    let rating = logged
        .iter()
        .find_map(|e| match e {
            SessionEvent::Other(v) if v["type"] == "rating" => Some(v),
            _ => None,
        })
        .unwrap();
    // The export reads the session as the log replays it.
    let session = app.chat.as_ref().unwrap().session.clone();
    assert_eq!(rating["prompt"].as_str().unwrap(), first_prompt);

    // The export rebuilds the same context from the log.
    let chat = app.chat.as_ref().unwrap();
    let players = SessionPlayers {
        cast: &chat.cast,
        variant: chat.variant,
        user_name: &chat.user_name,
        annotator: "me",
    };
    let collected = collect_session(&session, &players);
    let record = collected
        .records
        .iter()
        .find_map(|r| match r {
            PreferenceRecord::Rating(r) => Some(r),
            _ => None,
        })
        .expect("a rating record");
    assert!(record.context[0].content.contains("The sword is cursed."));
    assert!(
        !record
            .context
            .iter()
            .any(|m| m.content.contains("Keep it short."))
    );
    let exported = record.provenance.as_ref().map(|p| p.prompt.clone());
    assert_eq!(exported.as_deref(), Some(first_prompt.as_str()));
}

#[test]
fn the_pin_key_pins_the_selected_message_and_memory_edit_versions_the_summary() {
    let mut app = chat_app();
    update(&mut app, Action::FocusTranscript);
    update(&mut app, Action::PinSelected);
    assert!(
        notice(&app).starts_with("pinned: Elizabeth Bennet:"),
        "{}",
        notice(&app)
    );
    let prompt = app.chat.as_ref().unwrap().next_prompt().render_with_skip(0);
    assert!(
        prompt.contains("To remember:\n- Elizabeth Bennet: "),
        "{prompt}"
    );

    update(&mut app, Action::FocusInput);
    command(&mut app, "/memory edit");
    assert_eq!(app.composer.text, "/memory set");
    app.composer.set("");
    command(&mut app, "/memory set They have just met at Meryton.");
    command(
        &mut app,
        "/memory set They met at Meryton; he slighted her.",
    );
    let prompt = app.chat.as_ref().unwrap().next_prompt().render_with_skip(0);
    assert!(prompt.contains("The story so far: They met at Meryton; he slighted her."));
    command(&mut app, "/memory");
    let shown = overlay_text(&app);
    assert!(shown.contains("version 2 of 2"), "{shown}");
}

#[test]
fn story_commands_wait_while_a_reply_is_written() {
    let mut app = chat_app();
    command(&mut app, "Hello");
    assert!(app.streaming.is_some());
    update(&mut app, Action::FocusTranscript);
    update(&mut app, Action::PinSelected);
    assert!(
        notice(&app).contains("wait for the reply"),
        "{}",
        notice(&app)
    );
    assert!(
        !queued(&app)
            .iter()
            .any(|e| matches!(e, SessionEvent::Other(v) if v["type"] == "memory_pin"))
    );
}

fn started(dropped_turns: usize) -> her_engine::Event {
    her_engine::Event::Started(her_engine::Started {
        prompt_tokens: 100,
        reused_tokens: 0,
        evaluated_tokens: 100,
        dropped_turns,
        max_new_tokens: 64,
    })
}

/// Dropped turns are summarised, the status bar says so, and a summary that
/// finishes while a reply is written is logged only after that reply.
#[test]
fn dropped_turns_start_a_summary_that_waits_for_the_reply_in_progress() {
    use crate::tui::screens::chat::reply::on_engine;
    use her_engine::{Event, FinishReason};
    let mut app = chat_app();
    app.chat.as_mut().unwrap().story.memory.keep_recent = 1;
    app.chat.as_mut().unwrap().story.memory.summary_threshold = 0.0;
    command(&mut app, "Will you dance?");
    on_engine(&mut app, started(1));
    on_engine(&mut app, Event::Text("Elizabeth Bennet: No.".into()));
    let effects = on_engine(
        &mut app,
        Event::Finished(crate::tui::tests::finished(FinishReason::EndOfGeneration)),
    );
    assert!(
        notice(&app).contains("are being summarised"),
        "{}",
        notice(&app)
    );
    assert!(app.summary.is_some(), "a summary job");
    let [Effect::Summarize(request)] = effects.as_slice() else {
        panic!("expected the summary to be asked for: {effects:?}");
    };
    let asked = request.prompt.render(0);
    assert!(asked.contains("Will you dance?"), "{asked}");
    assert!(!asked.contains("No."), "the newest message is kept out");

    // The next reply starts before the summary is done.
    command(&mut app, "Why not?");
    assert!(app.streaming.is_some());
    on_engine_summary(&mut app, "They met at a ball. <think>x</think>");
    assert!(app.summary.is_some(), "kept back while the reply streams");
    reply(&mut app, &["Elizabeth Bennet: Because."]);
    assert!(app.summary.is_none());
    assert!(notice(&app).contains("summary written"), "{}", notice(&app));
    let chat = app.chat.as_ref().unwrap();
    let (log, _) = chat.story_log();
    assert_eq!(log.summaries.len(), 1);
    assert_eq!(log.summaries[0].text, "They met at a ball.");
    // The reply that streamed meanwhile was logged with the memory its
    // prompt had: none.
    let last = chat.leaf_key().unwrap();
    assert!(
        log.contexts
            .get(&last)
            .is_none_or(|c| c.additions.memory.is_empty())
    );
    let next = chat.next_prompt().render_with_skip(0);
    assert!(next.contains("The story so far: They met at a ball."));
    // What the summary stands for leaves the history; the rest stays.
    assert!(!next.contains("Will you dance?"), "{next}");
    assert!(next.contains("Mr. Darcy: Why not?"), "{next}");
    assert!(
        !next.contains("come to inspect the company"),
        "the greeting is summarised too"
    );
}

fn on_engine_summary(app: &mut App, text: &str) {
    use her_engine::{Event, FinishReason};
    crate::tui::screens::chat::summary::on_event(app, Event::Text(text.into()));
    crate::tui::screens::chat::summary::on_event(
        app,
        Event::Finished(crate::tui::tests::finished(FinishReason::EndOfGeneration)),
    );
}

/// The history rule in force is logged with each reply: after the setting
/// changes, the prompt recorded for a reply (ratings, `/prompt`, exports)
/// is still the one it answered; a reply logged without a rule had HER's.
#[test]
fn each_reply_keeps_the_history_rule_it_was_written_under() {
    use her_core::prompt::HistoryLayers;
    let sent_prompt = |effects: &[Effect]| {
        effects
            .iter()
            .find_map(|e| match e {
                Effect::Generate(request) => Some(request.prompt.render(0)),
                _ => None,
            })
            .expect("a generation")
    };
    let mut app = chat_app();
    let her_prompt = sent_prompt(&command(&mut app, "Do you dance?"));
    reply(
        &mut app,
        &["Plan A.</system_thinking>Elizabeth Bennet: Rarely."],
    );
    let keep_plans = HistoryLayers {
        plan: true,
        thoughts: true,
    };
    app.chat.as_mut().unwrap().story.history = keep_plans;
    let kept_prompt = sent_prompt(&command(&mut app, "Why?"));
    assert!(
        kept_prompt.contains("<system_thinking>Plan A.</system_thinking>Elizabeth Bennet: Rarely."),
        "{kept_prompt}"
    );
    assert!(!her_prompt.contains("Plan A."));
    reply(
        &mut app,
        &["Plan B.</system_thinking>Elizabeth Bennet: Pride."],
    );

    let replies: Vec<String> = app
        .messages
        .iter()
        .filter(|m| m.raw.starts_with("<system_thinking>Plan"))
        .map(|m| m.key.clone())
        .collect();
    let [first, second] = replies.as_slice() else {
        panic!("two replies expected, got {replies:?}");
    };
    let recorded = |app: &App, key: &str| {
        let chat = app.chat.as_ref().unwrap();
        chat.recorded_prompt(key, "Elizabeth Bennet")
            .unwrap()
            .render_with_skip(0)
    };
    // Plans on: the first reply (nothing logged) still answered HER's prompt.
    assert_eq!(recorded(&app, first), her_prompt);
    assert_eq!(recorded(&app, second), kept_prompt);
    app.chat.as_mut().unwrap().story.history = HistoryLayers::HER;
    assert_eq!(recorded(&app, second), kept_prompt);
}
