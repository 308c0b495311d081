//! Keys on the yes/no question: yes does what was asked.

use crate::tui::action::Action;
use crate::tui::app::{App, Overlay};
use crate::tui::effect::Effect;
use crate::tui::overlays::confirm::state::ConfirmAction;
use crate::tui::screens::chat::update::refresh;
use crate::tui::update::cast_name;

pub fn on_action(app: &mut App, action: Action) -> Vec<Effect> {
    let Some(Overlay::Confirm { on_yes, .. }) = &app.overlay else {
        return Vec::new();
    };
    let on_yes = on_yes.clone();
    match action {
        Action::Confirm => {
            app.overlay = None;
            match on_yes {
                ConfirmAction::DeleteMessage(key) => {
                    if let Some(chat) = &mut app.chat
                        && let Err(err) = chat.delete(&key)
                    {
                        app.notify(err.to_string(), true);
                    }
                    refresh(app);
                }
                ConfirmAction::DeleteSession(path) => {
                    // Closed first (the runtime drops its file and lock);
                    // changes waiting for the disk are said, not dropped.
                    if let Some(chat) = app.chat.as_ref().filter(|c| c.path == path) {
                        if chat.writes.unsaved() > 0 {
                            app.notify(
                                "this session has changes not saved yet: wait for them before moving it to the trash",
                                true,
                            );
                            return Vec::new();
                        }
                        app.chat = None;
                        app.messages.clear();
                    }
                    let reopen = cast_name(app);
                    return vec![Effect::TrashSession { path, reopen }];
                }
            }
        }
        Action::Cancel | Action::CloseOverlay => app.overlay = None,
        Action::Quit => app.quit = true,
        _ => {}
    }
    Vec::new()
}
