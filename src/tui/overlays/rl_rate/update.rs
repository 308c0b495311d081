//! Keys on the stars an RL run waits on: a complete form is sent to the run.

use crate::tui::action::Action;
use crate::tui::app::{App, Overlay};
use crate::tui::effect::Effect;
use crate::tui::overlays::rl_rate::state::RlRateOutcome;

pub fn on_action(app: &mut App, action: Action) -> Vec<Effect> {
    let Some(Overlay::RlRate(form)) = &mut app.overlay else {
        return Vec::new();
    };
    let annotator = app
        .chat
        .as_ref()
        .map(|c| c.annotator.clone())
        .unwrap_or_default();
    match form.handle(action, &annotator) {
        RlRateOutcome::Editing => {}
        RlRateOutcome::Cancelled => app.overlay = Some(Overlay::Runs { cursor: 0 }),
        RlRateOutcome::Incomplete(why) => app.notify(why, true),
        RlRateOutcome::Send(answer) => {
            let run = form.run.clone();
            app.overlay = Some(Overlay::Runs { cursor: 0 });
            return vec![Effect::SendRlAnswer { run, answer }];
        }
    }
    Vec::new()
}
