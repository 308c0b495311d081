//! Keys on the detailed rating dialog: a saved form becomes a rating.

use crate::tui::action::Action;
use crate::tui::app::{App, Overlay};
use crate::tui::effect::Effect;
use crate::tui::overlays::rate::state::FormOutcome;
use crate::tui::screens::chat::update::save_rating;

pub fn on_action(app: &mut App, action: Action) -> Vec<Effect> {
    let Some(Overlay::Rate(form)) = &mut app.overlay else {
        return Vec::new();
    };
    let (key, speaker) = (form.key.clone(), form.speaker.clone());
    match form.handle(action) {
        FormOutcome::Editing => {}
        FormOutcome::Cancelled => app.overlay = None,
        FormOutcome::Incomplete(why) => app.notify(why, true),
        FormOutcome::Save(input) => {
            app.overlay = None;
            save_rating(app, &key, &speaker, &input);
        }
    }
    Vec::new()
}
