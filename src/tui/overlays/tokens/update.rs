//! Keys on the token view, and the branch it starts.

use crate::tui::action::Action;
use crate::tui::app::{App, Overlay, ReplyTarget};
use crate::tui::effect::Effect;
use crate::tui::overlays::tokens::TokenView;
use crate::tui::screens::chat::reply::start_reply;
use crate::tui::screens::chat::session::ReplyChoices;
use crate::tui::screens::chat::update::target_message;

/// Opens the view on the selected reply (else the newest), if this window
/// wrote it with candidates.
pub fn open(app: &mut App) {
    let Some(msg) = target_message(app, true) else {
        app.notify("no reply to show yet", true);
        return;
    };
    let known = app
        .chat
        .as_ref()
        .is_some_and(|c| c.choices.contains_key(&msg.key));
    if !known {
        app.notify(
            "token probabilities are kept for replies written in this window by the local engine or llama-server (chat.token_candidates > 0)",
            true,
        );
        return;
    }
    app.overlay = Some(Overlay::Tokens(TokenView {
        key: msg.key,
        cursor: 0,
        pick: 0,
    }));
}

pub fn on_action(app: &mut App, action: Action) -> Vec<Effect> {
    let Some(Overlay::Tokens(view)) = &mut app.overlay else {
        return Vec::new();
    };
    let Some(choices) = app.chat.as_ref().and_then(|c| c.choices.get(&view.key)) else {
        app.overlay = None;
        return Vec::new();
    };
    let count = choices.tokens.len();
    let alternatives = choices
        .tokens
        .get(view.cursor)
        .map_or(0, |t| t.candidates.len());
    match action {
        Action::CursorLeft => {
            view.cursor = view.cursor.saturating_sub(1);
            view.pick = 0;
        }
        Action::CursorRight => {
            view.cursor = (view.cursor + 1).min(count.saturating_sub(1));
            view.pick = 0;
        }
        Action::ListUp => view.pick = view.pick.saturating_sub(1),
        Action::ListDown => view.pick = (view.pick + 1).min(alternatives.saturating_sub(1)),
        Action::Submit => {
            let view = view.clone();
            app.overlay = None;
            return branch(app, &view);
        }
        Action::CloseOverlay | Action::ShowTokens => app.overlay = None,
        _ => {}
    }
    Vec::new()
}

/// The reply's raw text up to the token at `cursor`, then the alternative
/// `pick` in its place: exact bytes, refused where they would split a
/// character.
pub fn branch_prefix(
    raw: &str,
    choices: &ReplyChoices,
    cursor: usize,
    pick: usize,
) -> Result<String, String> {
    let before: usize = choices
        .tokens
        .iter()
        .take(cursor)
        .map(|t| t.bytes.len())
        .sum();
    let at = choices.start + before;
    let candidate = choices
        .tokens
        .get(cursor)
        .and_then(|t| t.candidates.get(pick))
        .ok_or("no such alternative")?;
    if !raw.is_char_boundary(at) {
        return Err("this token starts inside a character: move to the next one".into());
    }
    let piece = std::str::from_utf8(&candidate.bytes)
        .map_err(|_| "that alternative is part of a character: pick another".to_string())?;
    Ok(format!("{}{piece}", &raw[..at]))
}

fn branch(app: &mut App, view: &TokenView) -> Vec<Effect> {
    let Some(msg) = app.messages.iter().find(|m| m.key == view.key).cloned() else {
        app.notify("that reply is not on the active branch any more", true);
        return Vec::new();
    };
    let Some(choices) = app.chat.as_ref().and_then(|c| c.choices.get(&view.key)) else {
        return Vec::new();
    };
    match branch_prefix(&msg.raw, choices, view.cursor, view.pick) {
        Ok(prefix) => {
            let target = ReplyTarget::SteeredFrom {
                of: msg.key.clone(),
                prefix,
                edit: None,
            };
            start_reply(app, target, &msg.name)
        }
        Err(why) => {
            app.notify(why, true);
            Vec::new()
        }
    }
}
