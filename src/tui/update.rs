//! `update`: the only place the app state changes. Takes one message,
//! returns effects for the runtime; never blocks and never touches the
//! terminal or the engine. Keys go to the open overlay, else the screen
//! (each in its own module under `overlays/` and `screens/`); the
//! runtime's answers go to `reports`.

use crate::tui::action::Action;
use crate::tui::app::App;
use crate::tui::effect::{Cast, Effect, Opening};
use crate::tui::keymap::Layer;
use crate::tui::message::Msg;

/// The part of `update` that takes the generation's events, for callers
/// that play the engine themselves (the remote backend's tests).
pub use crate::tui::screens::chat::reply::on_engine;

/// Applies one message; an `Action` converts into one.
pub fn update(app: &mut App, msg: impl Into<Msg>) -> Vec<Effect> {
    let mut effects = match msg.into() {
        Msg::Action(action) => on_action(app, action),
        Msg::Typed(c) => {
            crate::tui::screens::picker::update::picker_type(app, c);
            Vec::new()
        }
        Msg::Layout { transcript_rows } => {
            app.page = transcript_rows;
            Vec::new()
        }
        Msg::Engine(event) => crate::tui::screens::chat::reply::on_engine(app, event),
        report => crate::tui::reports::on_report(app, report),
    };
    // A summary that finished while a reply was written is logged once the
    // reply is saved.
    crate::tui::screens::chat::summary::commit_ready(app);
    crate::tui::screens::chat::writes::hold_quit(app);
    // What this message changed in the session goes to the log first.
    crate::tui::screens::chat::writes::flush(app, &mut effects);
    effects
}

/// Whose sessions the pickers show: `scene:STEM` or the character's name.
pub fn cast_name(app: &App) -> String {
    match &app.scene_stem {
        Some(stem) => format!("scene:{stem}"),
        None => app.character_name.clone(),
    }
}

/// Opens a session for the chosen character or scene; not while the open
/// one has changes that could not be saved (they would be lost with it).
pub fn open_session(app: &mut App, opening: Opening) -> Vec<Effect> {
    if let Some(error) = app.chat.as_ref().and_then(|c| c.writes.failure()) {
        let text = format!(
            "this session has changes that could not be saved ({error}); they are tried again — open another session once they are written"
        );
        app.notify(text, true);
        return Vec::new();
    }
    vec![Effect::OpenSession {
        opening,
        cast: Cast {
            character: app.character_name.clone(),
            scene_stem: app.scene_stem.clone(),
        },
        open_now: app.chat.as_ref().map(|c| c.path.clone()),
    }]
}

fn on_action(app: &mut App, action: Action) -> Vec<Effect> {
    app.status.notice = None;
    match app.layer() {
        Layer::Annotate => return crate::tui::screens::annotate::update::on_action(app, &action),
        Layer::List => {
            if let Some(effects) = crate::tui::overlays::lists::on_action(app, action.clone()) {
                return effects;
            }
            return crate::tui::screens::picker::update::on_action(app, action);
        }
        Layer::Overlay => return crate::tui::overlays::scroll::on_action(app, action),
        Layer::Dialog => return crate::tui::overlays::dialogs::on_action(app, action),
        _ => {}
    }
    crate::tui::screens::chat::update::on_action(app, action)
}
