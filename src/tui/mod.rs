//! The studio TUI: pickers, the chat with panes for both thinking layers,
//! swipes and branches, all on top of crash-safe session logs.
//!
//! State lives in [`app::App`]. Keys, engine events and the answers of the
//! runtime's jobs arrive as [`message::Msg`]; [`update::update`] is the only
//! code that changes the state, and returns [`effect::Effect`]s that the
//! [`runtime`] carries out and answers with further messages (session-log
//! writes included). Views borrow the state.
//!
//! Each screen ([`screens`]: pickers, chat, annotate) and overlay
//! ([`overlays`]: arena, rating, RL stars, runs, evaluations, lists) keeps
//! its state, its update and its view together; `update` routes a key to
//! the open overlay, else to the screen.

pub mod action;
pub mod app;
pub mod effect;
pub mod highlight;
pub mod keymap;
pub mod message;
pub mod model;
pub mod overlays;
mod reports;
pub mod runtime;
pub mod screens;
pub mod terminal;
pub mod theme;
pub mod update;
pub mod view;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_messages;
#[cfg(test)]
mod tests_sampling;
#[cfg(test)]
mod tests_sessions;
#[cfg(test)]
mod tests_steer;
#[cfg(test)]
mod tests_story;

use std::path::PathBuf;

use app::App;
use keymap::Keymap;
use model::PaneModes;
use theme::Theme;

use crate::app::AppContext;
use crate::config::BackendKind;
use her_engine::Backend;

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
        .and_then(|p| her_core::fsutil::read::text(&p, her_core::fsutil::read::Kind::Config).ok())
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

/// The presets shipped with the binary (assets/presets), there whatever
/// the studio folder.
const SHIPPED_PRESETS: [(&str, &str); 3] = [
    (
        "creative",
        include_str!("../../assets/presets/creative.toml"),
    ),
    ("her", include_str!("../../assets/presets/her.toml")),
    ("steady", include_str!("../../assets/presets/steady.toml")),
];

/// `/preset`'s presets: the studio's `presets/` and `assets/presets/`
/// files, then the shipped ones they do not replace.
fn sampling_presets(studio: &std::path::Path) -> Vec<her_core::sampling_edit::Preset> {
    let (mut presets, warnings) = her_core::sampling_edit::read_presets(&[
        &studio.join("presets"),
        &studio.join("assets").join("presets"),
    ]);
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    for (name, text) in SHIPPED_PRESETS {
        if !presets.iter().any(|p| p.name == name) {
            presets.push(her_core::sampling_edit::Preset {
                name: name.into(),
                text: text.into(),
            });
        }
    }
    presets.sort_by(|a, b| a.name.cmp(&b.name));
    presets
}

/// Runs the TUI until the user quits. The engine is already loaded; `/model`
/// swaps it for another model, keeping the session. Returns, once the
/// terminal is restored, the error that kept the user from any session (a
/// start that could not proceed), for a non-zero exit.
pub fn run(
    cx: &AppContext,
    engine: Box<dyn Backend>,
    start: Start,
    keymap: Keymap,
    theme: Theme,
) -> std::io::Result<Option<String>> {
    let mut app = App::new(keymap, theme, load_modes());
    let config = cx.config();
    app.backend_local = config.backend.kind == BackendKind::Local;
    // llama-server reports them too; other servers' replies come without.
    app.token_candidates = config.chat.token_candidates as usize;
    app.runs_dir = config.runs_dir(&cx.studio.root);
    app.evals_dir = config.evals_dir(&cx.studio.root);
    app.presets = sampling_presets(&cx.studio.root);
    app.rng = her_core::rng::SplitMix64::new(fresh_seed());
    let mut first = vec![effect::Effect::ListCharacters];
    first.extend(start_effects(cx, start));
    let result = in_terminal(&mut app, cx, runtime::EngineSlot::Ready(engine), first);
    save_modes(app.modes);
    result.map(|()| app.exit_failure())
}

/// Runs the annotate screen over `screen` until the annotator quits;
/// returns (answered, total). The engine starts only if an item needs two
/// candidates written; a start that fails is the error.
pub fn annotate(
    cx: &AppContext,
    screen: screens::annotate::AnnotateScreen,
    keymap: Keymap,
    theme: Theme,
    start_engine: runtime::Starter<'_>,
) -> std::io::Result<(usize, usize)> {
    let mut app = App::new(keymap, theme, PaneModes::default());
    app.screen = app::Screen::Annotate;
    app.annotate = Some(Box::new(screen));
    let engine = runtime::EngineSlot::Lazy(start_engine);
    in_terminal(&mut app, cx, engine, Vec::new())?;
    Ok(app.annotate.map_or((0, 0), |s| s.run.progress()))
}

/// Fresh randomness for the arena's seeds and blind order, without an RNG
/// crate: the runtime's input to `update`, never read inside it.
fn fresh_seed() -> u64 {
    let id = uuid::Uuid::new_v4().as_u128();
    (id as u64) ^ ((id >> 64) as u64)
}

/// The loop in the terminal, which is restored however it ends.
fn in_terminal(
    app: &mut App,
    cx: &AppContext,
    engine: runtime::EngineSlot<'_>,
    first: Vec<effect::Effect>,
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut guard = terminal::TerminalGuard::enter()?;
    let result = rt.block_on(runtime::run(app, &mut guard, cx, engine, first));
    drop(guard);
    result
}

/// What the start asks for: a character's sessions, then a session.
fn start_effects(cx: &AppContext, start: Start) -> Vec<effect::Effect> {
    let (name, opening) = match start {
        Start::Picker => return Vec::new(),
        Start::Character(name) => (name, effect::Opening::New),
        Start::Session {
            character,
            path,
            fork,
        } => {
            // A scene's session reopens with the whole cast.
            let scene = her_core::session::load_session(&path)
                .ok()
                .and_then(|(s, _)| s.header().scene.clone())
                .and_then(|title| cx.scene_titled(&title));
            let pick = scene.map_or(character, |stem| format!("scene:{stem}"));
            let opening = if fork {
                effect::Opening::Fork(path)
            } else {
                effect::Opening::Resume(path)
            };
            (pick, opening)
        }
    };
    vec![effect::Effect::OpenCharacter {
        name,
        then: Some(opening),
    }]
}
