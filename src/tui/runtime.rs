//! The event loop: terminal input, engine events and ticks in one queue;
//! `update` decides, this file carries out the effects and draws.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use ratatui::crossterm::event::{
    Event as TermEvent, EventStream, KeyCode, KeyEventKind, KeyModifiers, MouseEventKind,
};

use super::action::Action;
use super::app::{App, Overlay, Screen};
use super::chat::ChatSession;
use super::effect::Effect;
use super::keymap::Layer;
use super::picker::{Picker, PickerItem};
use super::terminal::TerminalGuard;
use super::update::{on_engine, picker_type, refresh, update};
use super::view;
use crate::app::AppContext;
use crate::character::list_characters;
use crate::engine::{Backend, EventStream as EngineStream, LocalEngine};
use crate::session::{SessionHeader, list_sessions, trash_session};

/// What the loop needs besides the app state.
pub struct Context<'a> {
    pub app: &'a AppContext,
    pub engine: &'a LocalEngine,
}

/// Waits for the next engine event, or forever when nothing is generating.
async fn next_engine(stream: &mut Option<EngineStream>) -> Option<crate::engine::Event> {
    match stream {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

pub async fn run(
    app: &mut App,
    guard: &mut TerminalGuard,
    cx: &Context<'_>,
) -> std::io::Result<()> {
    let mut input = EventStream::new();
    let mut generation: Option<EngineStream> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut dirty = true;
    loop {
        if dirty {
            guard.terminal.draw(|frame| view::draw(frame, app))?;
            dirty = false;
        }
        if app.quit {
            if let Some(s) = generation.take() {
                drop(s);
                cx.engine.cancel();
            }
            return Ok(());
        }
        tokio::select! {
            event = input.next() => {
                let Some(event) = event else { return Ok(()) };
                let event = event?;
                for action in actions_for(app, &event) {
                    let effects = update(app, action);
                    run_effects(app, guard, cx, effects, &mut generation).await;
                }
                dirty = true;
            }
            event = next_engine(&mut generation) => {
                match event {
                    Some(event) => {
                        let done = matches!(event, crate::engine::Event::Finished(_) | crate::engine::Event::Failed(_));
                        on_engine(app, event);
                        if done {
                            generation = None;
                        }
                    }
                    None => {
                        generation = None;
                        on_engine(app, crate::engine::Event::Failed(crate::engine::EngineError::EngineStopped));
                    }
                }
                dirty = true;
            }
            _ = tick.tick() => {
                dirty |= app.streaming.is_some();
            }
        }
    }
}

/// Terminal events to actions, through the keymap of the current layer.
fn actions_for(app: &mut App, event: &TermEvent) -> Vec<Action> {
    match event {
        TermEvent::Key(key) if key.kind != KeyEventKind::Release => {
            let picker_screen = matches!(app.screen, Screen::Characters | Screen::Sessions)
                && app.overlay.is_none();
            if picker_screen {
                match key.code {
                    KeyCode::Char(c)
                        if !key
                            .modifiers
                            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) =>
                    {
                        picker_type(app, c);
                        return Vec::new();
                    }
                    KeyCode::Backspace => return vec![Action::Backspace],
                    KeyCode::Delete => return vec![Action::DeleteSelected],
                    _ => {}
                }
            }
            app.keymap.action(app.layer(), key).into_iter().collect()
        }
        TermEvent::Paste(text) => match app.layer() {
            Layer::Input => vec![Action::Paste(text.clone())],
            _ => Vec::new(),
        },
        TermEvent::Mouse(mouse) => match mouse.kind {
            MouseEventKind::ScrollUp => vec![Action::ScrollUp, Action::ScrollUp, Action::ScrollUp],
            MouseEventKind::ScrollDown => {
                vec![Action::ScrollDown, Action::ScrollDown, Action::ScrollDown]
            }
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

async fn run_effects(
    app: &mut App,
    guard: &mut TerminalGuard,
    cx: &Context<'_>,
    effects: Vec<Effect>,
    generation: &mut Option<EngineStream>,
) {
    for effect in effects {
        match effect {
            Effect::Generate(request) => *generation = Some(cx.engine.generate(request)),
            Effect::Cancel => cx.engine.cancel(),
            Effect::OpenEditor => match edit_externally(guard, &app.composer.text) {
                Ok(text) => app.composer.set(text.trim_end_matches('\n')),
                Err(err) => app.notify(format!("editor: {err}"), true),
            },
            Effect::LoadAdapter { path, scale } => {
                match cx.engine.load_adapter(path.clone(), scale).await {
                    Ok(info) => {
                        app.status.adapter = Some(adapter_label(&info.path, scale));
                        app.notify(
                            format!(
                                "adapter loaded: {} (sha256 {}…)",
                                info.path.display(),
                                &info.sha256[..12]
                            ),
                            false,
                        );
                    }
                    Err(err) => app.notify(err.to_string(), true),
                }
            }
            Effect::ClearAdapter => match cx.engine.clear_adapter().await {
                Ok(()) => {
                    app.status.adapter = None;
                    app.notify("adapter removed", false);
                }
                Err(err) => app.notify(err.to_string(), true),
            },
            Effect::ShowPrompt => {
                if let Some(chat) = &app.chat {
                    let parts = chat.next_prompt().parts(chat.dropped_turns);
                    let mut table = String::from("tokens  section\n");
                    let mut total = 0;
                    for part in &parts {
                        let n = cx
                            .engine
                            .tokenize(part.text.clone())
                            .await
                            .map(|t| t.len())
                            .unwrap_or(0);
                        total += n;
                        table.push_str(&format!("{n:>6}  {}\n", part.label));
                    }
                    table.push_str(&format!(
                        "{total:>6}  total (n_ctx {})\n\n",
                        cx.engine.model_info().n_ctx
                    ));
                    let text: String = parts.iter().map(|p| p.text.as_str()).collect();
                    app.overlay = Some(Overlay::Prompt {
                        text: format!("{table}{text}"),
                        scroll: 0,
                    });
                }
            }
            Effect::OpenCharacter(name) => open_character(app, cx, &name),
            Effect::OpenSession(path) => open_session(app, cx, path.as_deref()),
            Effect::DeleteSession(path) => {
                match trash_session(&path) {
                    Ok(to) => app.notify(format!("moved to {}", to.display()), false),
                    Err(err) => app.notify(err.to_string(), true),
                }
                let name = app.character_name.clone();
                open_character(app, cx, &name);
            }
        }
    }
}

fn adapter_label(path: &Path, scale: f32) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{name} ×{scale}")
}

/// The character picker: every character file in the studio.
pub fn character_picker(cx: &AppContext) -> Picker {
    let dir = cx.config().characters_dir(&cx.studio.root);
    let items = list_characters(&dir)
        .map(|list| {
            list.into_iter()
                .filter_map(|(path, c)| {
                    let c = c.ok()?;
                    let stem = path.file_stem()?.to_string_lossy().into_owned();
                    Some(PickerItem {
                        title: c.name.clone(),
                        subtitle: c.book.clone(),
                        preview: format!(
                            "{}\n{}\n\n{}\n\nScenario: {}",
                            c.name,
                            c.description,
                            c.profile.trim(),
                            c.scenario.trim()
                        ),
                        value: stem,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Picker::new(items)
}

/// Lists the character's sessions (newest first) after a "new session" entry.
pub fn open_character(app: &mut App, cx: &Context<'_>, name: &str) {
    let character = match cx.app.character(Some(name)) {
        Ok(c) => c,
        Err(err) => {
            app.notify(err.to_string(), true);
            return;
        }
    };
    app.character_name = character.name.clone();
    let dir = cx.app.config().sessions_dir(&cx.app.studio.root);
    let mut items = vec![PickerItem {
        title: "＋ new session".into(),
        subtitle: String::new(),
        preview: character.greetings.first().cloned().unwrap_or_default(),
        value: String::new(),
    }];
    if let Ok(list) = list_sessions(&dir) {
        items.extend(
            list.into_iter()
                .filter(|s| s.character.as_deref() == Some(character.name.as_str()))
                .map(|s| PickerItem {
                    title: s.title.clone(),
                    subtitle: format!("{} messages · {}", s.messages, s.created_at),
                    preview: format!("{}\n\n{}", s.path.display(), s.title),
                    value: s.path.display().to_string(),
                }),
        );
    }
    app.sessions = Picker::new(items);
    app.screen = Screen::Sessions;
}

/// Opens a session (or starts one) for the current character.
pub fn open_session(app: &mut App, cx: &Context<'_>, path: Option<&Path>) {
    let config = cx.app.config();
    let character = match cx.app.character(Some(&app.character_name)) {
        Ok(c) => c,
        Err(err) => {
            app.notify(err.to_string(), true);
            return;
        }
    };
    let user = character.user_name(&config.chat.user_name).to_string();
    let sampling = crate::chat::character_sampling(config.sampling.clone(), &character);
    let variant = config.chat.prompt_variant;
    let result = match path {
        Some(path) => ChatSession::open(path, character, user, variant, sampling),
        None => {
            let info = cx.engine.model_info();
            let mut header = SessionHeader::new(format!(
                "{} — {}",
                character.name,
                crate::session::now_rfc3339().get(..10).unwrap_or_default()
            ));
            header.character = Some(character.name.clone());
            header.model = Some(info.name.clone());
            header.model_fingerprint = Some(info.fingerprint.clone());
            header.config = serde_json::to_value(&config.sampling).unwrap_or_default();
            let dir = config.sessions_dir(&cx.app.studio.root);
            ChatSession::create(&dir, character, user, variant, sampling, header)
                .map(|c| (c, Vec::new()))
        }
    };
    match result {
        Ok((chat, notes)) => {
            app.chat = Some(chat);
            app.screen = Screen::Chat;
            app.layer_focus = Layer::Input;
            app.streaming = None;
            refresh(app);
            if !notes.is_empty() {
                app.notify(
                    format!(
                        "{} line(s) of the session log were skipped: {}",
                        notes.len(),
                        notes.join("; ")
                    ),
                    true,
                );
            }
        }
        Err(err) => app.notify(err.to_string(), true),
    }
}

/// Suspends the TUI, edits `text` in $VISUAL/$EDITOR, and comes back.
fn edit_externally(guard: &mut TerminalGuard, text: &str) -> std::io::Result<String> {
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    let path: PathBuf = std::env::temp_dir().join(format!("her-message-{}.md", std::process::id()));
    std::fs::write(&path, text)?;
    super::terminal::restore();
    let mut parts = editor.split_whitespace();
    let program = parts.next().unwrap_or("vi");
    let status = std::process::Command::new(program)
        .args(parts)
        .arg(&path)
        .status();
    let back = super::terminal::reenter();
    guard.terminal.clear()?;
    back?;
    let status = status?;
    let edited = std::fs::read_to_string(&path)?;
    let _ = std::fs::remove_file(&path);
    if status.success() {
        Ok(edited)
    } else {
        Err(std::io::Error::other(format!(
            "'{editor}' exited with {status}"
        )))
    }
}
