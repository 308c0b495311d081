//! Keys on the text overlays (help, raw reply, `/prompt`, `/lore`,
//! `/memory`): they scroll and close.

use crate::tui::action::Action;
use crate::tui::app::{App, Overlay};
use crate::tui::effect::Effect;

pub fn on_action(app: &mut App, action: Action) -> Vec<Effect> {
    match (&mut app.overlay, action) {
        (_, Action::Quit) => app.quit = true,
        (_, Action::CloseOverlay | Action::ToggleHelp) => app.overlay = None,
        (Some(Overlay::Raw { .. }), Action::ToggleRaw) => app.overlay = None,
        (
            Some(
                Overlay::Help { scroll } | Overlay::Raw { scroll } | Overlay::Prompt { scroll, .. },
            ),
            a,
        ) => match a {
            Action::ScrollUp => *scroll = scroll.saturating_sub(1),
            Action::ScrollDown => *scroll = scroll.saturating_add(1),
            Action::PageUp => *scroll = scroll.saturating_sub(10),
            Action::PageDown => *scroll = scroll.saturating_add(10),
            _ => {}
        },
        _ => {}
    }
    Vec::new()
}
