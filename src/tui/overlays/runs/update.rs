//! Keys on the training runs: enter loads the run's adapter, the rate key
//! opens the stars an RL run waits on.

use crate::tui::action::Action;
use crate::tui::app::{App, Overlay};
use crate::tui::effect::Effect;

pub fn on_action(app: &mut App, action: Action) -> Vec<Effect> {
    let Some(Overlay::Runs { cursor }) = &mut app.overlay else {
        return Vec::new();
    };
    match action {
        Action::ListUp => *cursor = cursor.saturating_sub(1),
        Action::ListDown => *cursor = (*cursor + 1).min(app.runs.len().saturating_sub(1)),
        Action::ListChoose => {
            let run = app.runs.get(*cursor).cloned();
            app.overlay = None;
            return match run {
                Some(run) => vec![Effect::FindRunAdapter(run.path)],
                None => Vec::new(),
            };
        }
        Action::Rate => {
            return match app.runs.get(*cursor) {
                Some(run) => vec![Effect::FindRlAsk(run.path.clone())],
                None => Vec::new(),
            };
        }
        Action::CloseOverlay => app.overlay = None,
        Action::Quit => app.quit = true,
        _ => {}
    }
    Vec::new()
}
