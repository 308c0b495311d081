//! Keys on the list overlays: the yes/no question, training runs,
//! evaluations and the branch tree.

use crate::tui::action::Action;
use crate::tui::app::{App, ConfirmAction, Overlay};
use crate::tui::effect::Effect;
use crate::tui::screens::chat::update::refresh;
use crate::tui::update::cast_name;

/// Keys on a list overlay (confirm, runs, evaluations, branch tree);
/// `None` when none is open.
pub fn on_action(app: &mut App, action: Action) -> Option<Vec<Effect>> {
    if let Some(Overlay::Confirm { on_yes, .. }) = &app.overlay {
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
                                return Some(Vec::new());
                            }
                            app.chat = None;
                            app.messages.clear();
                        }
                        let reopen = cast_name(app);
                        return Some(vec![Effect::TrashSession { path, reopen }]);
                    }
                }
            }
            Action::Cancel | Action::CloseOverlay => app.overlay = None,
            Action::Quit => app.quit = true,
            _ => {}
        }
        return Some(Vec::new());
    }
    if let Some(Overlay::Runs { cursor }) = &mut app.overlay {
        match action {
            Action::ListUp => *cursor = cursor.saturating_sub(1),
            Action::ListDown => *cursor = (*cursor + 1).min(app.runs.len().saturating_sub(1)),
            Action::ListChoose => {
                let run = app.runs.get(*cursor).cloned();
                app.overlay = None;
                return Some(match run {
                    Some(run) => vec![Effect::FindRunAdapter(run.path)],
                    None => Vec::new(),
                });
            }
            Action::Rate => {
                return Some(match app.runs.get(*cursor) {
                    Some(run) => vec![Effect::FindRlAsk(run.path.clone())],
                    None => Vec::new(),
                });
            }
            Action::CloseOverlay => app.overlay = None,
            Action::Quit => app.quit = true,
            _ => {}
        }
        return Some(Vec::new());
    }
    if let Some(Overlay::Evals { cursor }) = &mut app.overlay {
        match action {
            Action::ListUp => *cursor = cursor.saturating_sub(1),
            Action::ListDown => *cursor = (*cursor + 1).min(app.evals.len().saturating_sub(1)),
            Action::CloseOverlay | Action::ListChoose => app.overlay = None,
            Action::Quit => app.quit = true,
            _ => {}
        }
        return Some(Vec::new());
    }
    if let Some(Overlay::Tree { cursor }) = &mut app.overlay {
        match action {
            Action::ListUp => *cursor = cursor.saturating_sub(1),
            Action::ListDown => *cursor = (*cursor + 1).min(app.tree_rows.len().saturating_sub(1)),
            Action::ListChoose => {
                let key = app.tree_rows.get(*cursor).map(|r| r.key.clone());
                app.overlay = None;
                if let (Some(key), Some(chat)) = (key, &mut app.chat) {
                    if let Err(err) = chat.jump_to(&key) {
                        app.notify(err.to_string(), true);
                    }
                    refresh(app);
                }
            }
            Action::CloseOverlay | Action::ToggleTree => app.overlay = None,
            Action::Quit => app.quit = true,
            _ => {}
        }
        return Some(Vec::new());
    }
    None
}
