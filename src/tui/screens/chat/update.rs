//! Keys on the chat: the composer, the transcript, replies and ratings.

use crate::tui::action::Action;
use crate::tui::app::{App, ConfirmAction, Overlay, ReplyTarget};
use crate::tui::effect::Effect;
use crate::tui::keymap::Layer;
use crate::tui::model::Speaker;
use crate::tui::overlays::rate::state::RatingInput;
use crate::tui::screens::chat::reply::{answer, pick_speaker, start_reply};
use her_core::prefs::RatedLayer;
use her_core::prefs::sessions::ChatScore;

/// A key on the chat screen (no overlay open).
pub fn on_action(app: &mut App, action: Action) -> Vec<Effect> {
    let c = &mut app.composer;
    match action {
        Action::Quit => app.quit = true,
        Action::ToggleHelp => app.overlay = Some(Overlay::Help { scroll: 0 }),
        Action::CloseOverlay => app.overlay = None,
        Action::Insert(ch) => c.insert(ch),
        Action::Newline => c.insert('\n'),
        Action::Paste(text) => c.insert_str(&text),
        Action::Backspace => c.backspace(),
        Action::DeleteForward => c.delete_forward(),
        Action::CursorLeft => c.left(),
        Action::CursorRight => c.right(),
        Action::CursorUp => {
            c.up();
        }
        Action::CursorDown => {
            c.down();
        }
        Action::CursorHome => c.home(),
        Action::CursorEnd => c.end(),
        Action::HistoryPrev => {
            if !c.up() {
                c.history_prev();
            }
        }
        Action::HistoryNext => {
            if !c.down() {
                c.history_next();
            }
        }
        Action::OpenEditor => return vec![Effect::OpenEditor(c.text.clone())],
        Action::Submit => return submit(app),
        Action::FocusInput => {
            app.layer_focus = Layer::Input;
            app.selected = None;
            app.scroll = 0;
        }
        Action::FocusTranscript => {
            if app.editing.take().is_some() {
                app.composer.take();
            }
            app.layer_focus = Layer::Transcript;
            app.selected = app.shown_len().checked_sub(1);
            app.scroll = 0;
        }
        Action::SelectPrev => {
            app.selected = Some(app.selected.map_or(0, |i| i.saturating_sub(1)));
            app.scroll = 0;
        }
        Action::SelectNext => {
            let last = app.shown_len().saturating_sub(1);
            app.selected = Some(app.selected.map_or(last, |i| (i + 1).min(last)));
            app.scroll = 0;
        }
        Action::ScrollUp => app.scroll += 1,
        Action::ScrollDown => app.scroll = app.scroll.saturating_sub(1),
        Action::PageUp => app.scroll += app.page.max(1),
        Action::PageDown => app.scroll = app.scroll.saturating_sub(app.page.max(1)),
        Action::ScrollToBottom => {
            app.scroll = 0;
            app.selected = app
                .shown_len()
                .checked_sub(1)
                .filter(|_| app.layer_focus == Layer::Transcript);
        }
        Action::StopGeneration => {
            if app.streaming.is_some() {
                return vec![Effect::Cancel];
            }
        }
        Action::Regenerate => return regenerate(app),
        Action::SwipePrev => return swipe(app, -1),
        Action::SwipeNext => return swipe(app, 1),
        Action::Continue => return continue_reply(app),
        Action::EditSelected => edit_selected(app),
        Action::PinSelected => {
            let message = target_message(app, false);
            crate::tui::screens::chat::story_commands::pin_selected(app, message);
        }
        Action::DeleteSelected => {
            if let Some(msg) = target_message(app, false) {
                app.overlay = Some(Overlay::Confirm {
                    question: format!(
                        "Delete this message from {}? It stays in the session log and the branch tree.",
                        msg.name
                    ),
                    on_yes: ConfirmAction::DeleteMessage(msg.key),
                });
            }
        }
        Action::RateUp => rate(app, ChatScore::Up),
        Action::RateDown => rate(app, ChatScore::Down),
        Action::RateStars(n) => rate(app, ChatScore::Stars { stars: n }),
        Action::Rate => match target_message(app, true) {
            Some(msg) => {
                app.overlay = Some(Overlay::Rate(
                    crate::tui::overlays::rate::state::RateForm::new(msg.key, msg.name),
                ));
            }
            None => app.notify("no reply to rate yet", true),
        },
        Action::Arena => return crate::tui::overlays::arena::update::start(app, &[]),
        Action::TogglePlan => {
            app.modes.plan = app.modes.plan.next();
            app.notify(format!("LLM thinking: {}", app.modes.plan.label()), false);
        }
        Action::ToggleThoughts => {
            app.modes.thoughts = app.modes.thoughts.next();
            app.notify(
                format!("character thinking: {}", app.modes.thoughts.label()),
                false,
            );
        }
        Action::ToggleRaw => app.overlay = Some(Overlay::Raw { scroll: 0 }),
        Action::ShowTokens => crate::tui::overlays::tokens::update::open(app),
        Action::ToggleTree => {
            if let Some(chat) = &app.chat {
                app.tree_rows = chat.tree_rows();
                let cursor = app
                    .tree_rows
                    .iter()
                    .rposition(|r| r.on_active_path)
                    .unwrap_or(0);
                app.overlay = Some(Overlay::Tree { cursor });
            }
        }
        Action::ListUp
        | Action::ListDown
        | Action::ListChoose
        | Action::Confirm
        | Action::Cancel
        | Action::NextField
        | Action::PickLeft
        | Action::PickRight
        | Action::Tie
        | Action::BothBad
        | Action::Skip
        | Action::Undo => {}
    }
    Vec::new()
}

/// The message an action applies to: the selected one in the transcript,
/// else the newest (the newest reply when `reply_only`).
pub(crate) fn target_message(
    app: &App,
    reply_only: bool,
) -> Option<crate::tui::model::ShownMessage> {
    let shown = &app.messages;
    if app.layer_focus == Layer::Transcript
        && let Some(m) = app.selected.and_then(|i| shown.get(i))
    {
        return (!reply_only || m.speaker != Speaker::User).then(|| m.clone());
    }
    shown
        .iter()
        .rev()
        .find(|m| !reply_only || m.speaker != Speaker::User)
        .cloned()
}

/// Rates the selected (or newest) reply as a whole, with one key.
fn rate(app: &mut App, score: ChatScore) {
    let Some(msg) = target_message(app, true) else {
        app.notify("no reply to rate yet", true);
        return;
    };
    let input = RatingInput {
        score,
        layer: RatedLayer::Whole,
        tags: Vec::new(),
        rationale: None,
    };
    save_rating(app, &msg.key, &msg.name, &input);
}

/// Writes a rating to the session log (where the preference export finds it).
pub(crate) fn save_rating(app: &mut App, key: &str, speaker: &str, input: &RatingInput) {
    let Some(chat) = &mut app.chat else {
        return;
    };
    match chat.rate(key, speaker, input) {
        Ok(()) => {
            refresh(app);
            let label = crate::tui::overlays::rate::state::score_label(input.score);
            app.notify(format!("rated {speaker}: {label}"), false);
        }
        Err(err) => app.notify(err.to_string(), true),
    }
}

fn submit(app: &mut App) -> Vec<Effect> {
    if app.composer.text.trim().is_empty() {
        return Vec::new();
    }
    if app.streaming.is_some() || app.choosing_speaker {
        app.notify(
            "a reply is being written: wait or press ctrl+c to stop it",
            true,
        );
        return Vec::new();
    }
    let text = app.composer.take();
    let steers = ["/plan", "/thought"]
        .iter()
        .any(|c| text.trim_start().starts_with(c));
    if !steers {
        // A block loaded into the composer and then replaced by other text.
        app.steering = None;
    }
    if let Some(command) = text.trim().strip_prefix('/') {
        return crate::tui::screens::chat::commands::run(app, command);
    }
    let Some(chat) = &mut app.chat else {
        return Vec::new();
    };
    if let Some(key) = app.editing.take() {
        let was_user = chat.is_user(&key);
        let result = chat.edit(&key, &text);
        refresh(app);
        return match result {
            Ok(new_key) if was_user => answer(app, Some(new_key)),
            Ok(_) => Vec::new(),
            Err(err) => {
                app.notify(err.to_string(), true);
                Vec::new()
            }
        };
    }
    // In a scene, "@Name …" picks who answers (the rest, if any, is the user's line).
    let (picked, text) = pick_speaker(&chat.speakers(), &text);
    if text.trim().is_empty() {
        let parent = chat.leaf_key();
        return match picked {
            Some(name) => start_reply(app, ReplyTarget::After(parent), &name),
            None => answer(app, parent),
        };
    }
    match chat.append_user(&text) {
        Ok(key) => {
            refresh(app);
            match picked {
                Some(name) => start_reply(app, ReplyTarget::After(Some(key)), &name),
                None => answer(app, Some(key)),
            }
        }
        Err(err) => {
            app.composer.set(&text);
            app.notify(err.to_string(), true);
            Vec::new()
        }
    }
}

fn regenerate(app: &mut App) -> Vec<Effect> {
    if app.streaming.is_some() {
        return Vec::new();
    }
    match target_message(app, true) {
        Some(msg) => start_reply(app, ReplyTarget::AlternativeOf(msg.key), &msg.name),
        // Only user messages so far: answer the newest.
        None => {
            let parent = app.messages.last().map(|m| m.key.clone());
            answer(app, parent)
        }
    }
}

fn swipe(app: &mut App, delta: i32) -> Vec<Effect> {
    if app.streaming.is_some() {
        return Vec::new();
    }
    let Some(msg) = target_message(app, true) else {
        return Vec::new();
    };
    let (index, count) = msg.alternative;
    let is_newest = app.messages.last().is_some_and(|m| m.key == msg.key);
    // Past the last alternative of the newest reply: write a new one (as SillyTavern does).
    if delta > 0 && index + 1 >= count && is_newest {
        return start_reply(app, ReplyTarget::AlternativeOf(msg.key), &msg.name);
    }
    if let Some(chat) = &mut app.chat
        && let Err(err) = chat.cycle(&msg.key, delta)
    {
        app.notify(err.to_string(), true);
    }
    refresh(app);
    Vec::new()
}

fn continue_reply(app: &mut App) -> Vec<Effect> {
    if app.streaming.is_some() {
        return Vec::new();
    }
    match target_message(app, true) {
        Some(msg) => {
            let name = msg.name.clone();
            let target = ReplyTarget::ContinuationOf {
                key: msg.key,
                raw: msg.raw,
            };
            start_reply(app, target, &name)
        }
        None => Vec::new(),
    }
}

fn edit_selected(app: &mut App) {
    if let Some(msg) = target_message(app, false) {
        app.composer.set(&msg.raw);
        app.editing = Some(msg.key);
        app.layer_focus = Layer::Input;
    }
}

/// What a refused change says in a read-only session.
pub fn read_only_notice(reason: &str) -> String {
    format!("read-only: {reason}; /fork continues in a new session file")
}

/// Rebuilds the shown messages from the session's active branch.
pub fn refresh(app: &mut App) {
    if let Some(chat) = &app.chat {
        app.messages = chat.shown();
        app.status.session = match (&chat.read_only, chat.writes.failure()) {
            (Some(_), _) => format!("{} (read-only)", chat.title()),
            (None, Some(_)) => format!("{} ({} unsaved)", chat.title(), chat.writes.unsaved()),
            (None, None) => chat.title(),
        };
    }
    if let Some(i) = app.selected {
        app.selected = Some(i.min(app.messages.len().saturating_sub(1)));
    }
}
