//! What `update` does with the runtime's answers: a session opened, an
//! adapter loaded, a list read, a write that failed.

use std::path::Path;

use crate::tui::app::{App, Overlay, Screen};
use crate::tui::effect::{AdapterFor, Effect, Opening};
use crate::tui::keymap::Layer;
use crate::tui::message::{Msg, OpenFailure, OpenedCharacter, OpenedSession};
use crate::tui::screens::chat::update::refresh;
use crate::tui::update::open_session;
use her_core::story::TokenCounter;
use her_engine::{AdapterInfo, ModelInfo};

/// Applies a message that is not a key or an engine event.
pub fn on_report(app: &mut App, msg: Msg) -> Vec<Effect> {
    match msg {
        // Routed by `update` before this.
        Msg::Action(_) | Msg::Typed(_) | Msg::Layout { .. } | Msg::Engine(_) => Vec::new(),
        Msg::Tick(now) => {
            app.now = now;
            tick(app)
        }
        Msg::Summary(event) => {
            crate::tui::screens::chat::summary::on_event(app, event);
            Vec::new()
        }
        Msg::SummarizerFailed(error) => {
            app.summary = None;
            app.notify(
                format!("the summary could not be written: {error} (memory.summarizer = \"judge\"; [judge] in config.toml)"),
                true,
            );
            Vec::new()
        }
        Msg::ModelLoaded { info, switched } => model_loaded(app, &info, switched),
        Msg::TokensReady(tokens, problem) => {
            if let Some(problem) = problem {
                tracing::warn!("lore and memory budgets estimate tokens: {problem}");
            }
            if let Some(chat) = &mut app.chat {
                chat.story.tokens = tokens.clone();
            }
            app.tokens = tokens;
            Vec::new()
        }
        Msg::ModelLoadFailed { error, kept } => {
            let effects = model_loaded(app, &kept, true);
            app.notify(format!("{error}; kept the previous model"), true);
            effects
        }
        Msg::ModelChecked { path, result } => match result {
            Ok(()) => {
                app.engine_loading = true;
                app.notify(format!("loading {} …", path.display()), false);
                vec![Effect::SwitchModel(path)]
            }
            Err(err) => {
                app.notify(err, true);
                Vec::new()
            }
        },
        Msg::CharactersListed { picker, problems } => {
            app.characters = picker;
            if let Some(first) = problems.first() {
                let more = match problems.len() {
                    1 => String::new(),
                    n => format!(" (and {} more)", n - 1),
                };
                app.notify(format!("left out of the list: {first}{more}"), true);
            }
            Vec::new()
        }
        Msg::CharacterOpened { result, then } => match result {
            Ok(opened) => character_opened(app, opened, then),
            Err(err) => {
                app.fail(err);
                Vec::new()
            }
        },
        Msg::SessionOpened { opening, result } => {
            session_opened(app, &opening, result);
            Vec::new()
        }
        Msg::SessionTrashed { result, reopen } => {
            match result {
                Ok(to) => app.notify(format!("moved to {}", to.display()), false),
                Err(err) => app.notify(err, true),
            }
            vec![Effect::OpenCharacter {
                name: reopen,
                then: None,
            }]
        }
        Msg::SpeakerAnswer {
            parent,
            answer,
            choices,
        } => crate::tui::screens::chat::reply::speaker_chosen(app, parent, answer, &choices),
        Msg::PromptCounted {
            preface,
            parts,
            counts,
        } => {
            crate::tui::screens::chat::commands::prompt_counted(app, preface, &parts, &counts);
            Vec::new()
        }
        Msg::AdapterLoaded { info, scale, for_ } => match for_ {
            AdapterFor::Chat => {
                adapter_loaded(app, &info, scale);
                Vec::new()
            }
            _ => crate::tui::overlays::arena::update::adapter_ready(app, for_),
        },
        Msg::AdapterCleared { for_ } => match for_ {
            AdapterFor::Chat => {
                app.adapter = None;
                app.status.adapter = None;
                app.notify("adapter removed", false);
                Vec::new()
            }
            _ => crate::tui::overlays::arena::update::adapter_ready(app, for_),
        },
        Msg::AdapterFailed { for_, error } => match for_ {
            AdapterFor::Chat => {
                app.notify(error, true);
                Vec::new()
            }
            _ => crate::tui::overlays::arena::update::adapter_failed(app, &error),
        },
        Msg::RunAdapter(found) => match found {
            Ok(path) => vec![Effect::LoadAdapter {
                path,
                scale: 1.0,
                for_: AdapterFor::Chat,
            }],
            Err(err) => {
                app.notify(err, true);
                Vec::new()
            }
        },
        Msg::EditorClosed(result) => {
            match result {
                Ok(text) => app.composer.set(text.trim_end_matches('\n')),
                Err(err) => app.notify(format!("editor: {err}"), true),
            }
            Vec::new()
        }
        Msg::RunsListed(runs) => {
            app.runs = runs;
            if let Some(Overlay::Runs { cursor }) = &mut app.overlay {
                *cursor = (*cursor).min(app.runs.len().saturating_sub(1));
            }
            Vec::new()
        }
        Msg::EvalsListed(evals) => {
            app.evals = evals;
            Vec::new()
        }
        Msg::RlAsk { run, ask } => {
            match ask {
                // Only over the list it was asked from.
                Some(ask) if matches!(app.overlay, Some(Overlay::Runs { .. })) => {
                    let form = crate::tui::overlays::rl_rate::state::RlRateForm::new(run, ask);
                    app.overlay = Some(Overlay::RlRate(form));
                }
                Some(_) => {}
                None => app.notify("this run is not waiting for ratings", true),
            }
            Vec::new()
        }
        Msg::RlAnswerSent { step, result } => {
            match result {
                Ok(()) => app.notify(
                    format!("ratings for step {step} sent to the trainer"),
                    false,
                ),
                Err(err) => app.notify(err, true),
            }
            Vec::new()
        }
        Msg::CandidatesWritten { item, result } => match app.annotate.as_deref_mut() {
            Some(screen) => {
                crate::tui::screens::annotate::update::candidates_written(screen, &item, result)
            }
            None => Vec::new(),
        },
        Msg::RecordAppendFailed(error) => {
            if let Some(screen) = app.annotate.as_deref_mut() {
                crate::tui::screens::annotate::update::record_not_saved(screen, error);
            }
            Vec::new()
        }
        Msg::RecordRetractFailed(error) => {
            if let Some(screen) = app.annotate.as_deref_mut() {
                screen.notice = Some((error, true));
            }
            Vec::new()
        }
        Msg::Appended { path, count } => {
            crate::tui::screens::chat::writes::appended(app, &path, count);
            Vec::new()
        }
        Msg::WriteFailed {
            path,
            written,
            error,
        } => {
            crate::tui::screens::chat::writes::write_failed(app, &path, written, error);
            Vec::new()
        }
        Msg::BooksLoaded {
            session,
            books,
            attach,
        } => {
            crate::tui::screens::chat::story_commands::books_loaded(app, &session, books, attach);
            Vec::new()
        }
        Msg::BooksListed { lore_dir, names } => {
            crate::tui::screens::chat::story_commands::books_listed(app, &lore_dir, &names);
            Vec::new()
        }
        Msg::Exported(result) => {
            match result {
                Ok(path) => app.notify(format!("exported to {}", path.display()), false),
                Err(err) => app.notify(err, true),
            }
            Vec::new()
        }
    }
}

/// While the runs overlay is open, a run training in another process is
/// followed: its list is read again. The annotate screen asks for
/// candidates its current item lacks; a session write that failed is
/// tried again every few seconds.
fn tick(app: &mut App) -> Vec<Effect> {
    if let Some(chat) = &mut app.chat {
        chat.writes.tick();
    }
    if let Some(screen) = app.annotate.as_deref_mut() {
        return crate::tui::screens::annotate::update::candidates_needed(screen);
    }
    match app.overlay {
        Some(Overlay::Runs { .. }) => vec![Effect::ListRuns(app.runs_dir.clone())],
        _ => Vec::new(),
    }
}

/// The model in use changed: the status bar says so, and a local model's
/// vocabulary is read for lore and memory budgets (a server's is not here).
fn model_loaded(app: &mut App, info: &ModelInfo, switched: bool) -> Vec<Effect> {
    app.engine_loading = false;
    app.status.model = info.name.clone();
    app.status.n_ctx = info.n_ctx as usize;
    app.status.adapter = None;
    let effects = if !app.backend_local {
        app.tokens = TokenCounter::estimate();
        if let Some(chat) = &mut app.chat {
            chat.story.tokens = TokenCounter::estimate();
        }
        Vec::new()
    } else {
        vec![Effect::LoadVocab(info.path.clone())]
    };
    if !switched {
        return effects;
    }
    app.notify(format!("model loaded: {}", info.name), false);
    if let Some(chat) = &mut app.chat {
        // The cache of the old model means nothing to the new one.
        chat.dropped_turns = 0;
    }
    // A summary the old model was writing is gone with it.
    app.summary = None;
    effects
}

fn adapter_loaded(app: &mut App, info: &AdapterInfo, scale: f32) {
    app.adapter = Some((info.path.clone(), scale));
    app.status.adapter = Some(adapter_label(&info.path, scale));
    app.notify(
        format!(
            "adapter loaded: {} (sha256 {}…)",
            info.path.display(),
            info.sha256.get(..12).unwrap_or("unknown")
        ),
        false,
    );
}

fn adapter_label(path: &Path, scale: f32) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{name} ×{scale}")
}

fn character_opened(app: &mut App, opened: OpenedCharacter, then: Option<Opening>) -> Vec<Effect> {
    app.character_name = opened.name;
    app.scene_stem = opened.scene_stem;
    app.sessions = opened.sessions;
    app.screen = Screen::Sessions;
    if let Some(problem) = opened.problem {
        app.notify(problem, true);
    }
    match then {
        Some(opening) => open_session(app, opening),
        None => Vec::new(),
    }
}

fn session_opened(app: &mut App, opening: &Opening, result: Result<OpenedSession, OpenFailure>) {
    match result {
        Ok(OpenedSession { mut chat, notes }) => {
            chat.story.tokens = app.tokens.clone();
            let forked = matches!(opening, Opening::Fork(_)).then(|| chat.path.clone());
            app.chat = Some(chat);
            app.failure = None;
            app.screen = Screen::Chat;
            app.layer_focus = Layer::Input;
            app.streaming = None;
            refresh(app);
            if let Some(path) = forked {
                app.notify(format!("forked into {}", path.display()), false);
            }
            if !notes.is_empty() {
                app.notify(
                    format!(
                        "{} note(s) on the session log: {}",
                        notes.len(),
                        notes.join("; ")
                    ),
                    true,
                );
            }
        }
        // Already open here: this window holds its lock.
        Err(OpenFailure::AlreadyOpen) => app.screen = Screen::Chat,
        Err(OpenFailure::Locked {
            path,
            holder,
            message,
        }) => {
            app.failure = Some(message);
            app.overlay = Some(Overlay::Locked {
                path,
                holder,
                cursor: 0,
            });
        }
        Err(OpenFailure::Failed(text)) => app.fail(text),
    }
}
