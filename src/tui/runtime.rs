//! The event loop: terminal input, engine events and ticks in one queue;
//! `update` decides, this file carries out the effects and draws.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use ratatui::crossterm::event::{
    Event as TermEvent, EventStream, KeyCode, KeyEventKind, KeyModifiers, MouseEventKind,
};

use super::action::Action;
use super::app::ReplyTarget;
use super::app::{App, Overlay, Screen};
use super::chat::{ChatSession, Players};
use super::effect::{Effect, Opening};
use super::keymap::Layer;
use super::picker::{Picker, PickerItem};
use super::terminal::TerminalGuard;
use super::update::{on_engine, picker_type, refresh, start_reply, update};
use super::view;
use crate::app::AppContext;
use crate::character::{Character, Scene, list_characters};
use crate::chat::new_header;
use crate::engine::{Backend, EventStream as EngineStream};
use crate::session::{
    Holder, SessionError, SessionLock, SessionSummary, list_sessions, trash_session,
};

/// What the loop needs besides the app state.
pub struct Context<'a> {
    pub app: &'a AppContext,
    pub engine: &'a dyn Backend,
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
    // The rolling summary, written by the engine between replies.
    let mut summary: Option<EngineStream> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut dirty = true;
    loop {
        if let Some(request) = app.summary.as_mut().and_then(|j| j.request.take()) {
            summary = Some(cx.engine.generate(request));
        }
        super::summary::commit_ready(app);
        if dirty {
            guard.terminal.draw(|frame| view::draw(frame, app))?;
            dirty = false;
        }
        if app.quit || app.switch_model.is_some() {
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
                        if done {
                            generation = None;
                        }
                        let effects = on_engine(app, event);
                        run_effects(app, guard, cx, effects, &mut generation).await;
                    }
                    None => {
                        generation = None;
                        let stopped = crate::engine::Event::Failed(crate::engine::EngineError::EngineStopped);
                        let effects = on_engine(app, stopped);
                        run_effects(app, guard, cx, effects, &mut generation).await;
                    }
                }
                dirty = true;
            }
            event = next_engine(&mut summary) => {
                let event = event.unwrap_or(crate::engine::Event::Failed(
                    crate::engine::EngineError::EngineStopped,
                ));
                if matches!(event, crate::engine::Event::Finished(_) | crate::engine::Event::Failed(_)) {
                    summary = None;
                }
                super::summary::on_event(app, event);
                dirty = true;
            }
            _ = tick.tick() => {
                dirty |= app.streaming.is_some() || app.arena.is_some();
                if matches!(app.overlay, Some(Overlay::Runs { .. })) {
                    // A run training in another process: follow its metrics.
                    app.runs = crate::train::runs::list_runs(&app.runs_dir);
                    dirty = true;
                }
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
    // Effects can lead to more effects (a picked speaker starts a reply).
    let mut queue: std::collections::VecDeque<Effect> = effects.into();
    while let Some(effect) = queue.pop_front() {
        match effect {
            Effect::Generate(request) => *generation = Some(cx.engine.generate(request)),
            Effect::ChooseSpeaker { parent } => {
                let name = choose_speaker(app, cx).await;
                match name {
                    Some(name) => queue.extend(start_reply(app, ReplyTarget::After(parent), &name)),
                    None => app.notify("nobody in this scene can speak", true),
                }
            }
            Effect::Cancel => cx.engine.cancel(),
            Effect::OpenEditor => match edit_externally(guard, &app.composer.text) {
                Ok(text) => app.composer.set(text.trim_end_matches('\n')),
                Err(err) => app.notify(format!("editor: {err}"), true),
            },
            Effect::LoadAdapter { path, scale } => {
                match cx.engine.load_adapter(path.clone(), scale).await {
                    Ok(info) => {
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
                    Err(err) => app.notify(err.to_string(), true),
                }
            }
            Effect::ClearAdapter => match cx.engine.clear_adapter().await {
                Ok(()) => {
                    app.adapter = None;
                    app.status.adapter = None;
                    app.notify("adapter removed", false);
                }
                Err(err) => app.notify(err.to_string(), true),
            },
            Effect::LoadRun(run) => match crate::train::export::adapter_of_run(&run) {
                Ok(path) => queue.push_back(Effect::LoadAdapter { path, scale: 1.0 }),
                Err(err) => app.notify(err.to_string(), true),
            },
            Effect::ArenaAdapter(adapter) => {
                let result = match adapter {
                    Some((path, scale)) => cx.engine.load_adapter(path, scale).await.map(|_| ()),
                    None => cx.engine.clear_adapter().await,
                };
                if let Err(err) = result {
                    // Generating with the wrong adapter would mislabel the
                    // candidates: stop the round (and what it queued).
                    queue.retain(|e| !matches!(e, Effect::Generate(_)));
                    queue.extend(super::arena_flow::abort(app, &format!("arena: {err}")));
                }
            }
            Effect::ShowPrompt => {
                if let Some(chat) = &app.chat {
                    let speaker = chat.character.name.clone();
                    let (prompt, prepared) = chat.build_upto(chat.leaf_key().as_deref(), &speaker);
                    let parts = prompt.parts(chat.dropped_turns);
                    let mut table = format!(
                        "lore, memory and note (/lore explains):\n{}\n\ntokens  section\n",
                        crate::chat::story::explain(&prepared)
                    );
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
                        title: "the next prompt, with tokens per section".into(),
                        text: format!("{table}{text}"),
                        scroll: 0,
                    });
                }
            }
            Effect::OpenCharacter(name) => open_character(app, cx, &name),
            Effect::OpenSession(opening) => open_session(app, cx, opening),
            Effect::DeleteSession(path) => {
                match delete_session(app, &path) {
                    Ok(to) => app.notify(format!("moved to {}", to.display()), false),
                    Err(err) => app.notify(err, true),
                }
                let name = app.character_name.clone();
                open_character(app, cx, &name);
            }
        }
    }
}

/// Asks the model who speaks next, constrained to the cast's names; round
/// robin when the answer is unusable.
async fn choose_speaker(app: &App, cx: &Context<'_>) -> Option<String> {
    use crate::prompt::next_speaker::{
        next_speaker_prompt, parse_next_speaker, round_robin, speaker_grammar,
    };
    let chat = app.chat.as_ref()?;
    let scene = chat.scene.as_ref()?;
    let speakers = chat.speakers();
    let last = app.messages.last().map(|m| m.name.clone());
    let choices: Vec<String> = if speakers.len() > 1 {
        speakers
            .iter()
            .filter(|s| Some(*s) != last.as_ref())
            .cloned()
            .collect()
    } else {
        speakers.clone()
    };
    let prompt = next_speaker_prompt(
        &scene.book,
        &scene.scenario,
        &choices,
        &chat.active_lines(),
        8,
    );
    let mut sampling = chat.sampling.clone();
    sampling.max_new_tokens = 16;
    let mut request = crate::engine::GenerateRequest::new(prompt, sampling);
    request.grammar = Some(speaker_grammar(&choices));
    let answer = crate::chat::stream_reply(cx.engine, request, |_| {})
        .await
        .ok()?;
    parse_next_speaker(&answer.reply, &choices).or_else(|| round_robin(&speakers, last.as_deref()))
}

fn adapter_label(path: &Path, scale: f32) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{name} ×{scale}")
}

/// The character picker: every character file and scene in the studio.
/// Files that cannot be read are left out and said in a notice.
pub fn character_picker(app: &mut App, cx: &AppContext) -> Picker {
    let dir = cx.config().characters_dir(&cx.studio.root);
    let mut problems = Vec::new();
    let mut items = Vec::new();
    match list_characters(&dir) {
        Ok(list) => {
            for (path, loaded) in list {
                match loaded {
                    Ok(c) => items.push(character_item(&path, &c)),
                    Err(err) => problems.push(err.to_string()),
                }
            }
        }
        Err(err) => problems.push(err.to_string()),
    }
    items.extend(scene_items(cx, &mut problems));
    if let Some(first) = problems.first() {
        let more = match problems.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        app.notify(format!("left out of the list: {first}{more}"), true);
    }
    Picker::new(items)
}

fn character_item(path: &Path, c: &Character) -> PickerItem {
    PickerItem {
        title: c.name.clone(),
        subtitle: c.book.clone(),
        preview: format!(
            "{}\n{}\n\n{}\n\nScenario: {}",
            c.name,
            c.description,
            c.profile.trim(),
            c.scenario.trim()
        ),
        value: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

/// Scenes in `characters/scenes/`, listed after the characters.
fn scene_items(cx: &AppContext, problems: &mut Vec<String>) -> Vec<PickerItem> {
    let Ok(paths) = crate::fsutil::toml_files(&cx.scenes_dir()) else {
        return Vec::new();
    };
    paths
        .into_iter()
        .filter_map(|path| {
            let scene = crate::character::load_scene(&path)
                .map_err(|e| problems.push(e.to_string()))
                .ok()?;
            let stem = path.file_stem()?.to_string_lossy().into_owned();
            let members: Vec<String> = scene
                .members
                .iter()
                .map(|m| m.name.clone().or_else(|| m.character.clone()).unwrap_or_default())
                .collect();
            Some(PickerItem {
                title: format!("scene: {}", scene.title),
                subtitle: scene.book.clone(),
                preview: format!(
                    "{}\n{}\n\nWith: {}\n\n{}\n\nType @Name to choose who speaks; otherwise the scene picks ({:?}).",
                    scene.title,
                    scene.description,
                    members.join(", "),
                    scene.scenario.trim(),
                    scene.next_speaker
                ),
                value: format!("scene:{stem}"),
            })
        })
        .collect()
}

/// Lists the character's sessions (newest first) after a "new session" entry.
pub fn open_character(app: &mut App, cx: &Context<'_>, name: &str) {
    if let Some(stem) = name.strip_prefix("scene:") {
        return open_scene(app, cx, stem);
    }
    app.scene_stem = None;
    let character = match cx.app.character(Some(name)) {
        Ok(c) => c,
        Err(err) => {
            app.fail(err.to_string());
            return;
        }
    };
    app.character_name = character.name.clone();
    let preview = character.greetings.first().cloned().unwrap_or_default();
    app.sessions = session_picker(app, cx, preview, |s| {
        s.scene.is_none() && s.character.as_deref() == Some(character.name.as_str())
    });
    app.screen = Screen::Sessions;
}

/// Lists the scene's sessions after a "new session" entry.
fn open_scene(app: &mut App, cx: &Context<'_>, stem: &str) {
    let scene = match cx.app.scene(stem) {
        Ok(s) => s,
        Err(err) => {
            app.fail(err.to_string());
            return;
        }
    };
    app.scene_stem = Some(stem.to_string());
    app.character_name = scene.title.clone();
    app.sessions = session_picker(app, cx, scene.scenario.clone(), |s| {
        s.scene.as_deref() == Some(scene.title.as_str())
    });
    app.screen = Screen::Sessions;
}

/// "New session" first, then the matching sessions, newest first.
fn session_picker(
    app: &mut App,
    cx: &Context<'_>,
    preview: String,
    belongs: impl Fn(&SessionSummary) -> bool,
) -> Picker {
    let dir = cx.app.config().sessions_dir(&cx.app.studio.root);
    let mut items = vec![PickerItem {
        title: "＋ new session".into(),
        subtitle: String::new(),
        preview,
        value: String::new(),
    }];
    match list_sessions(&dir) {
        Ok(list) => items.extend(list.into_iter().filter(|s| belongs(s)).map(|s| PickerItem {
            title: s.title.clone(),
            subtitle: format!("{} messages · {}", s.messages, s.created_at),
            preview: format!("{}\n\n{}", s.path.display(), s.title),
            value: s.path.display().to_string(),
        })),
        Err(err) => app.notify(format!("the saved sessions cannot be listed: {err}"), true),
    }
    Picker::new(items)
}

/// The characters a session plays: one, or a scene's members and narrator.
fn cast_for(
    app: &App,
    cx: &Context<'_>,
) -> Result<(Character, Vec<Character>, Option<Scene>, String), String> {
    let config = cx.app.config();
    if let Some(stem) = &app.scene_stem {
        let scene = cx.app.scene(stem).map_err(|e| e.to_string())?;
        let mut cast = scene
            .cast(&config.characters_dir(&cx.app.studio.root))
            .map_err(|e| e.to_string())?;
        if scene.environment {
            let narrator = scene.environment_character(&cast);
            cast.push(narrator);
        }
        let lead = cast.first().cloned().ok_or("the scene has no members")?;
        let user = scene
            .user
            .as_ref()
            .map_or(config.chat.user_name.clone(), |p| p.name.clone());
        return Ok((lead, cast, Some(scene), user));
    }
    let character = cx
        .app
        .character(Some(&app.character_name))
        .map_err(|e| e.to_string())?;
    let user = character.user_name(&config.chat.user_name).to_string();
    Ok((character.clone(), vec![character], None, user))
}

/// Opens a session (or starts one) for the current character. Whatever
/// fails is said on the screen; a session another window writes to asks
/// whether to read it only or fork it.
pub fn open_session(app: &mut App, cx: &Context<'_>, opening: Opening) {
    if let Opening::Resume(path) = &opening
        && let Some(chat) = &app.chat
        && same_file(&chat.path, path)
    {
        // Already open here: this window holds its lock.
        app.screen = Screen::Chat;
        return;
    }
    let config = cx.app.config();
    let (character, cast, scene, user) = match cast_for(app, cx) {
        Ok(c) => c,
        Err(err) => {
            app.fail(err);
            return;
        }
    };
    // Per-character sampling overrides apply per speaker when a reply starts.
    let sampling = config.sampling.clone();
    let variant = config.chat.prompt_variant;
    let label = scene
        .as_ref()
        .map_or(character.name.clone(), |s| s.title.clone());
    let scene_title = scene.as_ref().map(|s| s.title.clone());
    let players = Players {
        character: character.clone(),
        cast,
        scene,
        user_name: user,
        variant,
        sampling,
    };
    let dir = config.sessions_dir(&cx.app.studio.root);
    let result = match &opening {
        Opening::Resume(path) => ChatSession::open(path, players),
        Opening::ReadOnly(path) => ChatSession::open_read_only(
            path,
            players,
            "another her window writes to it".to_string(),
        ),
        Opening::Fork(path) => ChatSession::fork(path, &dir, players),
        Opening::New => {
            let header = new_header(
                &label,
                &character.name,
                scene_title.as_deref(),
                &cx.engine.model_info(),
                &config.sampling,
            );
            ChatSession::create(&dir, players, header).map(|c| (c, Vec::new()))
        }
    };
    match result {
        Ok((mut chat, notes)) => {
            chat.annotator = config.prefs.annotator_id();
            chat.story = config.story_config(&cx.app.studio.root);
            let (_, story_notes) = chat.story_log();
            let mut notes = notes;
            notes.extend(story_notes);
            app.runs_dir = config.runs_dir(&cx.app.studio.root);
            app.evals_dir = config.evals_dir(&cx.app.studio.root);
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
        Err(SessionError::Locked { path, holder }) => {
            let message = format!(
                "{}; open it read-only or fork it",
                SessionError::Locked {
                    path: path.clone(),
                    holder: holder.clone(),
                }
            );
            app.failure = Some(message);
            app.overlay = Some(Overlay::Locked {
                path,
                holder: Holder::describe(holder.as_ref()),
                cursor: 0,
            });
        }
        Err(err) => {
            let what = match &opening {
                Opening::New => "cannot start a new session",
                Opening::Fork(_) => "cannot fork the session",
                Opening::Resume(_) | Opening::ReadOnly(_) => "cannot open the session",
            };
            app.fail(format!("{what}: {err}{}", fix_hint(&err, &dir)));
        }
    }
}

/// What to do about a file-system refusal.
fn fix_hint(err: &SessionError, dir: &Path) -> String {
    match err {
        SessionError::Io { cause, .. }
            if matches!(
                cause.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            format!(
                "; make '{}' writable, or set paths.sessions to a folder you can write",
                dir.display()
            )
        }
        _ => String::new(),
    }
}

/// Two names of one file (a relative and an absolute path, say).
fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

/// Moves a session to the trash, unless another window writes to it. The
/// session open in this window is closed first.
pub(super) fn delete_session(app: &mut App, path: &Path) -> Result<PathBuf, String> {
    if app.chat.as_ref().is_some_and(|c| same_file(&c.path, path)) {
        app.chat = None;
        app.messages.clear();
    }
    // Held while moving, so nobody opens it half-way.
    let _lock = SessionLock::acquire(path).map_err(|e| match e {
        SessionError::Locked { .. } => format!("{e}: close it there first"),
        other => other.to_string(),
    })?;
    trash_session(path).map_err(|e| e.to_string())
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
    let edited = crate::fsutil::read::text(&path, crate::fsutil::read::Kind::Text)
        .map_err(|e| std::io::Error::other(e.to_string()));
    let _ = std::fs::remove_file(&path);
    let edited = edited?;
    if status.success() {
        Ok(edited)
    } else {
        Err(std::io::Error::other(format!(
            "'{editor}' exited with {status}"
        )))
    }
}
