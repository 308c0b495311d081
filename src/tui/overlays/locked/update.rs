//! Keys on the locked-session choice: read it only, fork it, or go back.

use crate::tui::action::Action;
use crate::tui::app::{App, Overlay};
use crate::tui::effect::{Effect, Opening};
use crate::tui::overlays::locked::state::LOCKED_CHOICES;
use crate::tui::update::open_session;

pub fn on_action(app: &mut App, action: Action) -> Vec<Effect> {
    let Some(Overlay::Locked { path, cursor, .. }) = &mut app.overlay else {
        return Vec::new();
    };
    let last = LOCKED_CHOICES.len() - 1;
    let chosen = match action {
        Action::ListUp => {
            *cursor = cursor.saturating_sub(1);
            None
        }
        Action::ListDown => {
            *cursor = (*cursor + 1).min(last);
            None
        }
        Action::Submit => Some(*cursor),
        Action::Insert(c) => LOCKED_CHOICES.iter().position(|(key, _)| *key == c),
        Action::CloseOverlay => Some(last),
        _ => None,
    };
    let path = path.clone();
    match chosen {
        Some(0) => {
            app.overlay = None;
            open_session(app, Opening::ReadOnly(path))
        }
        Some(1) => {
            app.overlay = None;
            open_session(app, Opening::Fork(path))
        }
        Some(_) => {
            app.overlay = None;
            Vec::new()
        }
        None => Vec::new(),
    }
}
