//! The studio TUI: pickers, the chat with panes for both thinking layers,
//! swipes and branches, all on top of crash-safe session logs.
//!
//! State lives in [`app::App`]; [`update::update`] is the only mutation;
//! views borrow the state; [`runtime`] runs the loop and the side effects.

pub mod action;
pub mod app;
pub mod arena;
mod arena_flow;
pub mod chat;
mod chat_story;
pub mod commands;
pub mod composer;
pub mod effect;
pub mod highlight;
pub mod keymap;
pub mod model;
pub mod picker;
pub mod rating;
pub mod rl_rating;
pub mod runtime;
pub mod story_commands;
mod summary;
pub mod terminal;
pub mod theme;
pub mod update;
pub mod view;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_sessions;
#[cfg(test)]
mod tests_story;

use std::path::PathBuf;

use app::App;
use keymap::Keymap;
use model::PaneModes;
use theme::Theme;

use crate::app::AppContext;
use crate::config::BackendKind;
use crate::engine::{Backend, LocalEngine};

/// Where the TUI opens.
#[derive(Debug, Clone)]
pub enum Start {
    /// The character picker.
    Picker,
    /// A new session with this character.
    Character(String),
    /// An existing session file (`fork`: a new copy of it).
    Session {
        character: String,
        path: PathBuf,
        fork: bool,
    },
}

/// The remembered pane choices live in the user's data folder.
fn modes_file() -> Option<PathBuf> {
    crate::config::user_data_dir().map(|d| d.join("tui-panes.json"))
}

pub fn load_modes() -> PaneModes {
    modes_file()
        .and_then(|p| crate::fsutil::read::text(&p, crate::fsutil::read::Kind::Config).ok())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn save_modes(modes: PaneModes) {
    if let Some(path) = modes_file()
        && let Ok(text) = serde_json::to_string(&modes)
    {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::write(path, text);
    }
}

/// Runs the TUI until the user quits. The engine is already loaded; `/model`
/// swaps it for another model between runs of the event loop, keeping the session.
/// Returns, once the terminal is restored, the error that kept the user from
/// any session (a start that could not proceed), for a non-zero exit.
pub fn run(
    cx: &AppContext,
    engine: Box<dyn Backend>,
    start: Start,
    keymap: Keymap,
    theme: Theme,
) -> std::io::Result<Option<String>> {
    let mut app = App::new(keymap, theme, load_modes());
    show_model(&mut app, engine.as_ref());
    app.characters = runtime::character_picker(&mut app, cx);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut guard = terminal::TerminalGuard::enter()?;
    let mut engine = engine;
    {
        let context = runtime::Context {
            app: cx,
            engine: engine.as_ref(),
        };
        match start {
            Start::Picker => {}
            Start::Character(name) => {
                runtime::open_character(&mut app, &context, &name);
                if app.failure.is_none() {
                    runtime::open_session(&mut app, &context, effect::Opening::New);
                }
            }
            Start::Session {
                character,
                path,
                fork,
            } => {
                // A scene's session reopens with the whole cast.
                let scene = crate::session::load_session(&path)
                    .ok()
                    .and_then(|(s, _)| s.header().scene.clone())
                    .and_then(|title| cx.scene_titled(&title));
                let pick = scene.map_or(character, |stem| format!("scene:{stem}"));
                runtime::open_character(&mut app, &context, &pick);
                if app.failure.is_none() {
                    let opening = if fork {
                        effect::Opening::Fork(path)
                    } else {
                        effect::Opening::Resume(path)
                    };
                    runtime::open_session(&mut app, &context, opening);
                }
            }
        }
    }
    loop {
        let context = runtime::Context {
            app: cx,
            engine: engine.as_ref(),
        };
        let result = rt.block_on(runtime::run(&mut app, &mut guard, &context));
        let Some(path) = app
            .switch_model
            .take()
            .filter(|_| result.is_ok() && !app.quit)
        else {
            save_modes(app.modes);
            drop(guard);
            return result.map(|()| app.exit_failure());
        };
        if cx.config().backend.kind != BackendKind::Local {
            // A server's model is chosen where it runs (or by `/adapter` for a vLLM LoRA).
            app.notify(
                "/model loads a local GGUF; with backend.kind = \"openai\" the server chooses the model",
                true,
            );
            continue;
        }
        app.notify(format!("loading {} …", path.display()), false);
        guard.terminal.draw(|frame| view::draw(frame, &mut app))?;
        let previous = engine.model_info().path;
        // One model in memory at a time: the old one goes first.
        drop(engine);
        let mut options = cx.engine_options();
        options.model_path = path;
        engine = match LocalEngine::start(options.clone()) {
            Ok(new) => {
                app.notify(format!("model loaded: {}", new.model_info().name), false);
                Box::new(new)
            }
            Err(err) => {
                options.model_path = previous;
                let old = LocalEngine::start(options)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                app.notify(format!("{err}; kept the previous model"), true);
                Box::new(old)
            }
        };
        show_model(&mut app, engine.as_ref());
        if let Some(chat) = &mut app.chat {
            // The cache of the old model means nothing to the new one.
            chat.dropped_turns = 0;
        }
        // A summary the old model was writing is gone with it.
        app.summary = None;
    }
}

fn show_model(app: &mut App, engine: &dyn Backend) {
    let info = engine.model_info();
    app.status.model = info.name.clone();
    app.status.n_ctx = info.n_ctx as usize;
    app.status.adapter = None;
}
