//! Dialogs over the chat: the detailed rating, the arena, the choice for a
//! session another window writes, and the stars an RL run waits on.

use crate::tui::action::Action;
use crate::tui::app::{App, LOCKED_CHOICES, Overlay};
use crate::tui::effect::{Effect, Opening};
use crate::tui::overlays::rate::state::FormOutcome;
use crate::tui::overlays::rl_rate::state::RlRateOutcome;
use crate::tui::screens::chat::update::save_rating;
use crate::tui::update::open_session;

/// Keys for the rating dialog, the arena, the locked-session choice and
/// the RL stars.
pub fn on_action(app: &mut App, action: Action) -> Vec<Effect> {
    if action == Action::Quit {
        app.quit = true;
        return Vec::new();
    }
    match &mut app.overlay {
        Some(Overlay::Rate(form)) => {
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
        Some(Overlay::Arena) => crate::tui::overlays::arena::update::key(app, &action),
        Some(Overlay::Locked { path, cursor, .. }) => {
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
        Some(Overlay::RlRate(form)) => {
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
        _ => Vec::new(),
    }
}
