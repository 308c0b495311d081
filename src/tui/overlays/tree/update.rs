//! Keys on the branch tree: enter jumps to the branch.

use crate::tui::action::Action;
use crate::tui::app::{App, Overlay};
use crate::tui::effect::Effect;
use crate::tui::screens::chat::update::refresh;

pub fn on_action(app: &mut App, action: Action) -> Vec<Effect> {
    let Some(Overlay::Tree { cursor }) = &mut app.overlay else {
        return Vec::new();
    };
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
    Vec::new()
}
