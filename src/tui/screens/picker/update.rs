//! Keys on the character and session pickers.

use crate::tui::action::Action;
use crate::tui::app::{App, ConfirmAction, Overlay, Screen};
use crate::tui::effect::{Effect, Opening};
use crate::tui::update::open_session;

/// Keys on a picker (no overlay open).
pub fn on_action(app: &mut App, action: Action) -> Vec<Effect> {
    let picker = if app.screen == Screen::Sessions {
        &mut app.sessions
    } else {
        &mut app.characters
    };
    match action {
        Action::ListUp => picker.up(),
        Action::ListDown => picker.down(),
        Action::Backspace => picker.backspace(),
        Action::ListChoose => {
            let Some(item) = picker.current().cloned() else {
                return Vec::new();
            };
            return match app.screen {
                Screen::Characters => vec![Effect::OpenCharacter {
                    name: item.value,
                    then: None,
                }],
                _ if item.value.is_empty() => open_session(app, Opening::New),
                _ => open_session(app, Opening::Resume(item.value.into())),
            };
        }
        Action::DeleteSelected if app.screen == Screen::Sessions => {
            if let Some(item) = picker.current().filter(|i| !i.value.is_empty()) {
                app.overlay = Some(Overlay::Confirm {
                    question: format!("Move the session '{}' to the trash folder?", item.title),
                    on_yes: ConfirmAction::DeleteSession(item.value.clone().into()),
                });
            }
        }
        Action::CloseOverlay if app.screen == Screen::Sessions => app.screen = Screen::Characters,
        Action::CloseOverlay | Action::Quit => app.quit = true,
        Action::ToggleHelp => app.overlay = Some(Overlay::Help { scroll: 0 }),
        _ => {}
    }
    Vec::new()
}

/// Typing into a picker's filter: printable keys arrive as `Insert`.
pub fn picker_type(app: &mut App, c: char) {
    let picker = if app.screen == Screen::Sessions {
        &mut app.sessions
    } else {
        &mut app.characters
    };
    picker.type_char(c);
}
