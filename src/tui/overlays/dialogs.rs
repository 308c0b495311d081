//! Keys on the dialogs over the chat (the detailed rating, the arena, the
//! choice for a session another window writes, the stars an RL run waits
//! on), each handled in its folder.

use crate::tui::action::Action;
use crate::tui::app::{App, Overlay};
use crate::tui::effect::Effect;
use crate::tui::overlays;

pub fn on_action(app: &mut App, action: Action) -> Vec<Effect> {
    if action == Action::Quit {
        app.quit = true;
        return Vec::new();
    }
    match &app.overlay {
        Some(Overlay::Rate(_)) => overlays::rate::update::on_action(app, action),
        Some(Overlay::Arena) => overlays::arena::update::key(app, &action),
        Some(Overlay::Locked { .. }) => overlays::locked::update::on_action(app, action),
        Some(Overlay::RlRate(_)) => overlays::rl_rate::update::on_action(app, action),
        Some(Overlay::Tokens(_)) => overlays::tokens::update::on_action(app, action),
        _ => Vec::new(),
    }
}
