//! Keys on the evaluations: move, close.

use crate::tui::action::Action;
use crate::tui::app::{App, Overlay};
use crate::tui::effect::Effect;

pub fn on_action(app: &mut App, action: Action) -> Vec<Effect> {
    let Some(Overlay::Evals { cursor }) = &mut app.overlay else {
        return Vec::new();
    };
    match action {
        Action::ListUp => *cursor = cursor.saturating_sub(1),
        Action::ListDown => *cursor = (*cursor + 1).min(app.evals.len().saturating_sub(1)),
        Action::CloseOverlay | Action::ListChoose => app.overlay = None,
        Action::Quit => app.quit = true,
        _ => {}
    }
    Vec::new()
}
