//! Keys on the list overlays (the yes/no question, training runs,
//! evaluations, the branch tree), each handled in its folder.

use crate::tui::action::Action;
use crate::tui::app::{App, Overlay};
use crate::tui::effect::Effect;
use crate::tui::overlays;

/// Keys on a list overlay; `None` when none is open.
pub fn on_action(app: &mut App, action: Action) -> Option<Vec<Effect>> {
    Some(match &app.overlay {
        Some(Overlay::Confirm { .. }) => overlays::confirm::update::on_action(app, action),
        Some(Overlay::Runs { .. }) => overlays::runs::update::on_action(app, action),
        Some(Overlay::Evals { .. }) => overlays::evals::update::on_action(app, action),
        Some(Overlay::Tree { .. }) => overlays::tree::update::on_action(app, action),
        _ => return None,
    })
}
