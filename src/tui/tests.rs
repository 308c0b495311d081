//! Update logic without a terminal, and screen snapshots with TestBackend.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::config::{Config, PromptVariant};
use crate::tui::action::Action;
use crate::tui::app::{App, Overlay, ReplyTarget, Screen};
use crate::tui::effect::Effect;
use crate::tui::keymap::{Keymap, Layer};
use crate::tui::model::{PaneMode, PaneModes};
use crate::tui::screens::chat::reply::on_engine;
use crate::tui::screens::chat::session::{ChatSession, Players};
use crate::tui::screens::chat::update::refresh;
use crate::tui::screens::picker::state::{Picker, PickerItem};
use crate::tui::theme::Theme;
use crate::tui::update::update;
use her_core::character::load_character;
use her_core::session::{Message, NodeId, Role, Session, SessionEvent, SessionHeader};
use her_engine::{Event, FinishReason, Finished, GenerationStats, Provenance, Started};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Elizabeth Bennet and Mr. Darcy.
pub(crate) fn players() -> Players {
    let character = load_character(&repo().join("characters/elizabeth-bennet.toml")).unwrap();
    Players {
        character: character.clone(),
        cast: vec![character],
        scene: None,
        user_name: "Mr. Darcy".into(),
        variant: PromptVariant::Training,
        sampling: Config::default().sampling,
    }
}

/// A new session of Elizabeth Bennet as a new file starts it, in memory:
/// her greetings are the alternatives of the first message.
pub(crate) fn greeted_session() -> Session {
    let lizzy = players().character;
    let mut header = SessionHeader::new("Elizabeth Bennet — test");
    header.character = Some(lizzy.name.clone());
    let mut session = Session::new(header);
    for greeting in &lizzy.greetings {
        let message = Message::new(lizzy.name.clone(), Role::Character, greeting.clone());
        let event = session
            .tree()
            .append_under_event(NodeId::ROOT, message)
            .unwrap();
        session.apply(&event).unwrap();
    }
    if lizzy.greetings.len() > 1 {
        let event = session.tree().select_event(NodeId::ROOT, 0).unwrap();
        session.apply(&event).unwrap();
    }
    session
}

/// An app on the chat screen with a fresh session of Elizabeth Bennet; no
/// file: the changes wait in the session's write queue.
pub(crate) fn chat_app() -> App {
    let path = PathBuf::from("sessions/elizabeth-test.jsonl");
    with_chat(ChatSession::new(path, greeted_session(), players()))
}

/// Every change `update` queued for the log so far, oldest first.
pub(crate) fn queued(app: &App) -> Vec<SessionEvent> {
    let chat = app.chat.as_ref().unwrap();
    chat.writes.queued().cloned().collect()
}

/// An app on the chat screen with `chat` open.
pub(crate) fn with_chat(chat: ChatSession) -> App {
    let mut app = App::new(Keymap::default(), Theme::dark(), PaneModes::default());
    app.chat = Some(chat);
    app.screen = Screen::Chat;
    app.character_name = "Elizabeth Bennet".into();
    app.status.model = "tiny".into();
    app.status.n_ctx = 4096;
    refresh(&mut app);
    app
}

pub(crate) fn finished(reason: FinishReason) -> Finished {
    Finished {
        choices: Vec::new(),
        reason,
        stop_string: None,
        tokens: vec![1, 2, 3],
        stats: GenerationStats::default(),
        provenance: Provenance {
            model: "tiny".into(),
            model_fingerprint: "f".into(),
            adapter: None,
            seed: 42,
            prompt_sha256: String::new(),
            prompt_tokens_sha256: String::new(),
            dropped_turns: 0,
            sampling: None,
            unapplied: Vec::new(),
        },
    }
}

/// Plays the engine's part: a reply streamed in pieces, then finished.
pub(crate) fn reply(app: &mut App, pieces: &[&str]) {
    on_engine(
        app,
        Event::Started(Started {
            prompt_tokens: 100,
            reused_tokens: 0,
            evaluated_tokens: 100,
            dropped_turns: 0,
            max_new_tokens: 64,
        }),
    );
    for p in pieces {
        on_engine(app, Event::Text((*p).into()));
    }
    on_engine(
        app,
        Event::Finished(finished(FinishReason::EndOfGeneration)),
    );
}

pub(crate) fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        update(app, Action::Insert(c));
    }
}

const HER_REPLY: [&str; 3] = [
    "She is amused by him.</system_think",
    "ing>Elizabeth Bennet: <role_thinking>So proud.</role_thinking>",
    "<role_action>smiles</role_action>Indeed, sir?",
];

#[test]
fn sending_a_message_streams_and_saves_the_reply() {
    let mut app = chat_app();
    let mut logged = app.chat.as_ref().unwrap().session.clone();
    assert_eq!(app.messages.len(), 1, "the greeting");
    type_text(&mut app, "Will you dance?");
    let effects = update(&mut app, Action::Submit);
    assert!(matches!(
        effects.as_slice(),
        [Effect::Append { .. }, Effect::Generate(_)]
    ));
    assert!(app.streaming.is_some());
    assert_eq!(app.messages.len(), 2);
    on_engine(&mut app, Event::Text(HER_REPLY[0].into()));
    // While streaming, the plan is visible for the pane before the tag even closes.
    let plan = app
        .focused_reply()
        .unwrap()
        .layer_text(her_core::format::Layer::SystemThinking);
    assert!(plan.contains("amused"));
    reply(&mut app, &HER_REPLY[1..]);
    assert!(app.streaming.is_none());
    assert_eq!(app.messages.len(), 3);
    let last = app.messages.last().unwrap();
    assert_eq!(last.name, "Elizabeth Bennet");
    assert_eq!(last.thoughts(), ["So proud."]);
    // Everything is queued for the log, in order: replayed, it is the chat.
    for event in queued(&app) {
        logged.apply(&event).unwrap();
    }
    assert_eq!(logged.tree().active_path().len(), 3);
    assert_eq!(logged.tree(), app.chat.as_ref().unwrap().session.tree());
}

#[test]
fn swipes_are_alternatives_and_flip_both_ways() {
    let mut app = chat_app();
    type_text(&mut app, "Hello");
    update(&mut app, Action::Submit);
    reply(&mut app, &["First answer."]);
    // Right on the newest reply at its last alternative writes a new one.
    update(&mut app, Action::FocusTranscript);
    let effects = update(&mut app, Action::SwipeNext);
    assert!(matches!(effects.as_slice(), [Effect::Generate(_)]));
    assert!(matches!(
        app.streaming.as_ref().unwrap().target,
        ReplyTarget::AlternativeOf(_)
    ));
    reply(&mut app, &["Second answer."]);
    let last = app.messages.last().unwrap();
    assert_eq!(last.alternative, (1, 2));
    assert!(last.raw.contains("Second"));
    update(&mut app, Action::SwipePrev);
    let last = app.messages.last().unwrap();
    assert_eq!(last.alternative, (0, 2));
    assert!(last.raw.contains("First"));
    // Regenerate makes a third alternative.
    update(&mut app, Action::Regenerate);
    reply(&mut app, &["Third."]);
    assert_eq!(app.messages.last().unwrap().alternative, (2, 3));
}

#[test]
fn editing_makes_a_new_version_and_regenerates_from_there() {
    let mut app = chat_app();
    type_text(&mut app, "Hello");
    update(&mut app, Action::Submit);
    reply(&mut app, &["Reply to hello."]);
    update(&mut app, Action::FocusTranscript);
    update(&mut app, Action::SelectPrev); // the user's message
    update(&mut app, Action::EditSelected);
    assert_eq!(app.composer.text, "Hello");
    assert_eq!(app.layer(), Layer::Input);
    type_text(&mut app, " again");
    let effects = update(&mut app, Action::Submit);
    assert!(matches!(effects.as_slice(), [Effect::Generate(_)]));
    reply(&mut app, &["Reply to the edit."]);
    let user = &app.messages[1];
    assert_eq!(user.raw, "Hello again");
    assert_eq!(user.alternative, (1, 2));
    assert!(app.messages[2].raw.contains("edit"));
    // The old version and its reply are still in the tree.
    let rows = app.chat.as_ref().unwrap().tree_rows();
    assert!(
        rows.iter()
            .any(|r| r.label.contains("Reply to hello") && !r.on_active_path)
    );
    // Jumping to the old branch through the tree view brings it back.
    update(&mut app, Action::ToggleTree);
    let Some(Overlay::Tree { .. }) = app.overlay else {
        panic!("tree overlay")
    };
    let old = app
        .tree_rows
        .iter()
        .position(|r| r.label.contains("Reply to hello"))
        .unwrap();
    app.overlay = Some(Overlay::Tree { cursor: old });
    update(&mut app, Action::ListChoose);
    assert!(app.messages[2].raw.contains("Reply to hello"));
}

#[test]
fn deleting_asks_first_and_keeps_the_log() {
    let mut app = chat_app();
    type_text(&mut app, "Hello");
    update(&mut app, Action::Submit);
    reply(&mut app, &["Bye."]);
    update(&mut app, Action::FocusTranscript);
    update(&mut app, Action::DeleteSelected);
    assert!(matches!(app.overlay, Some(Overlay::Confirm { .. })));
    update(&mut app, Action::Cancel);
    assert_eq!(app.messages.len(), 3);
    update(&mut app, Action::DeleteSelected);
    update(&mut app, Action::Confirm);
    assert_eq!(app.messages.len(), 2);
    let logged = queued(&app);
    let text = serde_json::to_string(&logged).unwrap();
    assert!(text.contains("Bye."), "nothing is removed from the log");
    assert!(
        matches!(logged.last(), Some(SessionEvent::Delete { .. })),
        "the deletion is one more line: {logged:?}"
    );
}

#[test]
fn toggles_cycle_and_scrolling_moves() {
    let mut app = chat_app();
    assert_eq!(app.modes.plan, PaneMode::Pane);
    update(&mut app, Action::TogglePlan);
    assert_eq!(app.modes.plan, PaneMode::Inline);
    update(&mut app, Action::TogglePlan);
    assert_eq!(app.modes.plan, PaneMode::Hidden);
    update(&mut app, Action::ToggleThoughts);
    assert_eq!(app.modes.thoughts, PaneMode::Hidden);
    app.page = 10;
    update(&mut app, Action::PageUp);
    assert_eq!(app.scroll, 10);
    update(&mut app, Action::ScrollDown);
    assert_eq!(app.scroll, 9);
    update(&mut app, Action::ScrollToBottom);
    assert_eq!(app.scroll, 0);
    update(&mut app, Action::ToggleRaw);
    assert!(matches!(app.overlay, Some(Overlay::Raw { .. })));
    assert_eq!(app.layer(), Layer::Overlay);
    update(&mut app, Action::CloseOverlay);
    assert_eq!(app.overlay, None);
}

#[test]
fn stopping_keeps_what_was_written() {
    let mut app = chat_app();
    type_text(&mut app, "Hello");
    update(&mut app, Action::Submit);
    on_engine(&mut app, Event::Text("Half a sen".into()));
    assert!(matches!(
        update(&mut app, Action::StopGeneration).as_slice(),
        [Effect::Cancel]
    ));
    on_engine(&mut app, Event::Finished(finished(FinishReason::Cancelled)));
    assert!(app.messages.last().unwrap().raw.ends_with("Half a sen"));
}

#[test]
fn keys_reach_actions_through_the_layer_keymap() {
    let map = Keymap::default();
    let key = |c| KeyEvent::new(c, KeyModifiers::NONE);
    assert_eq!(
        map.action(Layer::Transcript, &key(KeyCode::Char('r'))),
        Some(Action::Regenerate)
    );
    assert_eq!(
        map.action(Layer::Input, &key(KeyCode::Char('r'))),
        Some(Action::Insert('r'))
    );
    assert_eq!(
        map.action(Layer::Input, &key(KeyCode::F(2))),
        Some(Action::TogglePlan)
    );
}

/// The screen as text, one line per row.
pub(crate) fn render(app: &mut App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| crate::tui::view::draw(f, app)).unwrap();
    let buffer = terminal.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..height {
        for x in 0..width {
            out.push_str(buffer[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

fn conversation() -> App {
    let mut app = chat_app();
    type_text(&mut app, "Will you dance, Miss Bennet?");
    update(&mut app, Action::Submit);
    reply(&mut app, &HER_REPLY);
    app
}

#[test]
fn snapshot_chat_with_panes_at_60_and_160_columns() {
    let mut app = conversation();
    insta::assert_snapshot!("chat_panes_60", render(&mut app, 60, 30));
    insta::assert_snapshot!("chat_panes_160", render(&mut app, 160, 30));
    app.modes = PaneModes {
        plan: PaneMode::Inline,
        thoughts: PaneMode::Hidden,
    };
    insta::assert_snapshot!("chat_inline_plan_60", render(&mut app, 60, 30));
    app.modes = PaneModes {
        plan: PaneMode::Hidden,
        thoughts: PaneMode::Hidden,
    };
    insta::assert_snapshot!("chat_no_panes_160", render(&mut app, 160, 24));
}

#[test]
fn snapshot_pickers_tree_and_help() {
    let mut app = conversation();
    update(&mut app, Action::FocusTranscript);
    update(&mut app, Action::Regenerate);
    reply(&mut app, &["Another answer."]);
    update(&mut app, Action::ToggleTree);
    // Keys differ per run; only the tree's shape and labels are shown.
    insta::assert_snapshot!("tree_60", render(&mut app, 60, 20));
    app.overlay = None;
    app.screen = Screen::Characters;
    app.characters = Picker::new(
        ["Elizabeth Bennet", "Jay Gatsby", "Sherlock Holmes"]
            .iter()
            .map(|n| PickerItem {
                title: (*n).into(),
                subtitle: "a book".into(),
                preview: format!("{n}: a profile"),
                value: n.to_lowercase(),
            })
            .collect(),
    );
    insta::assert_snapshot!("picker_60", render(&mut app, 60, 20));
    insta::assert_snapshot!("picker_160", render(&mut app, 160, 20));
    app.screen = Screen::Chat;
    update(&mut app, Action::ToggleHelp);
    insta::assert_snapshot!("help_160", render(&mut app, 160, 40));
}

#[test]
fn at_name_picks_the_scene_speaker() {
    use crate::tui::screens::chat::reply::pick_speaker as pick;
    let names: Vec<String> = ["Elizabeth Bennet", "Mr. Darcy", "Environment"]
        .map(String::from)
        .to_vec();
    assert_eq!(
        pick(&names, "@Mr. Darcy Do you read?"),
        (Some("Mr. Darcy".into()), "Do you read?".into())
    );
    assert_eq!(
        pick(&names, "@darcy hello"),
        (Some("Mr. Darcy".into()), "hello".into())
    );
    assert_eq!(
        pick(&names, "@env"),
        (Some("Environment".into()), String::new())
    );
    assert_eq!(pick(&names, "no pick"), (None, "no pick".into()));
    assert_eq!(pick(&names, "@nobody hi").0, None);
}

#[test]
fn ratings_go_into_the_log_with_the_prompt_hash() {
    let mut app = conversation();
    app.chat.as_mut().unwrap().annotator = "ann-7".into();
    update(&mut app, Action::FocusTranscript);
    update(&mut app, Action::RateStars(4));
    assert_eq!(app.messages.last().unwrap().rating.as_deref(), Some("★★★★"));
    update(&mut app, Action::RateUp);
    assert_eq!(app.messages.last().unwrap().rating.as_deref(), Some("👍"));
    let logged = queued(&app);
    let ratings: Vec<&serde_json::Value> = logged
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Other(v) if v["type"] == "rating" => Some(v),
            _ => None,
        })
        .collect();
    assert_eq!(ratings.len(), 2);
    assert_eq!(ratings[0]["score"]["stars"], 4);
    assert_eq!(ratings[0]["annotator"], "ann-7");
    assert_eq!(ratings[0]["prompt_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(ratings[1]["score"], "up");
}

#[test]
fn the_evals_overlay_charts_every_dimension_with_intervals() {
    use her_eval::results::tests::{results, system};
    let mut app = chat_app();
    let effects = crate::tui::screens::chat::commands::run(&mut app, "evals");
    assert!(
        matches!(effects.as_slice(), [Effect::ListEvals(dir)] if *dir == app.evals_dir),
        "expected the evaluations to be listed: {effects:?}"
    );
    let listed = vec![results(vec![
        system("base", &[[3, 2, 1, 0], [2, 2, 2, 2]]),
        system("lizzy", &[[1, 1, 1, 0], [1, 2, 1, 1]]),
    ])];
    update(&mut app, crate::tui::message::Msg::EvalsListed(listed));
    assert_eq!(app.evals.len(), 1);
    let screen = render(&mut app, 160, 40);
    for title in her_eval::score::column_titles() {
        assert!(screen.contains(title), "{title}\n{screen}");
    }
    assert!(screen.contains("lizzy") && screen.contains("base"));
    assert!(screen.contains(" ["), "intervals are shown:\n{screen}");
    update(&mut app, Action::ListDown);
    assert!(matches!(app.overlay, Some(Overlay::Evals { cursor: 0 })));
    update(&mut app, Action::CloseOverlay);
    assert!(app.overlay.is_none());
}
