//! Reading characters, scenes and sessions for the pickers, and opening
//! (or creating, or forking) a session file, which the runtime keeps to
//! write the session's changes to. Each answers with a message.

use her_core::fsutil::IoError;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::app::AppContext;
use crate::tui::effect::{Cast, Opening};
use crate::tui::message::{Msg, OpenFailure, OpenedCharacter, OpenedSession};
use crate::tui::screens::chat::session::{ChatSession, Players};
use crate::tui::screens::picker::state::{Picker, PickerItem};
use her_core::character::{Character, Scene, list_characters};
use her_core::session::{
    Holder, LoadIssue, SessionError, SessionFile, SessionHeader, SessionLock, SessionSummary,
    fork_session, list_sessions, load_session, trash_session,
};
use her_core::story::Shelf;
use her_engine::ModelInfo;
use her_engine::dialogue::{new_header, start_session};

/// The character picker: every character file and scene in the studio.
/// Files that cannot be read are left out and said in a notice.
pub fn list_characters_msg(cx: &AppContext) -> Msg {
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
    Msg::CharactersListed {
        picker: Picker::new(items),
        problems,
    }
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
    let Ok(paths) = her_core::fsutil::toml_files(&cx.scenes_dir()) else {
        return Vec::new();
    };
    paths
        .into_iter()
        .filter_map(|path| {
            let scene = her_core::character::load_scene(&path)
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

/// The character's sessions (newest first) after a "new session" entry;
/// `scene:STEM` names a scene.
pub fn open_character(cx: &AppContext, name: &str) -> Result<OpenedCharacter, String> {
    if let Some(stem) = name.strip_prefix("scene:") {
        return open_scene(cx, stem);
    }
    let character = cx.character(Some(name)).map_err(|e| e.to_string())?;
    let preview = character.greetings.first().cloned().unwrap_or_default();
    let (sessions, problem) = session_picker(cx, preview, |s| {
        s.scene.is_none() && s.character.as_deref() == Some(character.name.as_str())
    });
    Ok(OpenedCharacter {
        name: character.name.clone(),
        scene_stem: None,
        sessions,
        problem,
    })
}

/// The scene's sessions after a "new session" entry.
fn open_scene(cx: &AppContext, stem: &str) -> Result<OpenedCharacter, String> {
    let scene = cx.scene(stem).map_err(|e| e.to_string())?;
    let (sessions, problem) = session_picker(cx, scene.scenario.clone(), |s| {
        s.scene.as_deref() == Some(scene.title.as_str())
    });
    Ok(OpenedCharacter {
        name: scene.title.clone(),
        scene_stem: Some(stem.to_string()),
        sessions,
        problem,
    })
}

/// "New session" first, then the matching sessions, newest first; and why
/// the saved ones could not be listed.
fn session_picker(
    cx: &AppContext,
    preview: String,
    belongs: impl Fn(&SessionSummary) -> bool,
) -> (Picker, Option<String>) {
    let dir = cx.config().sessions_dir(&cx.studio.root);
    let mut items = vec![PickerItem {
        title: "＋ new session".into(),
        subtitle: String::new(),
        preview,
        value: String::new(),
    }];
    let mut problem = None;
    match list_sessions(&dir) {
        Ok(list) => items.extend(list.into_iter().filter(|s| belongs(s)).map(|s| PickerItem {
            title: s.title.clone(),
            subtitle: format!("{} messages · {}", s.messages, s.created_at),
            preview: format!("{}\n\n{}", s.path.display(), s.title),
            value: s.path.display().to_string(),
        })),
        Err(err) => problem = Some(format!("the saved sessions cannot be listed: {err}")),
    }
    (Picker::new(items), problem)
}

/// The characters a session plays: one, or a scene's members and narrator.
fn cast_for(
    cx: &AppContext,
    cast: &Cast,
) -> Result<(Character, Vec<Character>, Option<Scene>, String), String> {
    let config = cx.config();
    if let Some(stem) = &cast.scene_stem {
        let scene = cx.scene(stem).map_err(|e| e.to_string())?;
        let mut members = scene
            .cast(&config.characters_dir(&cx.studio.root))
            .map_err(|e| e.to_string())?;
        if scene.environment {
            let narrator = scene.environment_character(&members);
            members.push(narrator);
        }
        let lead = members.first().cloned().ok_or("the scene has no members")?;
        let user = scene
            .user
            .as_ref()
            .map_or(config.chat.user_name.clone(), |p| p.name.clone());
        return Ok((lead, members, Some(scene), user));
    }
    let character = cx
        .character(Some(&cast.character))
        .map_err(|e| e.to_string())?;
    let user = character.user_name(&config.chat.user_name).to_string();
    Ok((character.clone(), vec![character], None, user))
}

/// A session for the chat screen, and the file the runtime writes its
/// changes to (None: read-only).
pub struct Opened {
    pub chat: ChatSession,
    pub file: Option<SessionFile>,
    /// Lines of the log that could not be read, and similar notes.
    pub notes: Vec<String>,
}

fn notes_of(issues: &[LoadIssue]) -> Vec<String> {
    issues.iter().map(|i| i.to_string()).collect()
}

/// A new session file; a character's greetings become the alternatives of
/// the first message (a scene starts empty).
pub fn create(dir: &Path, players: Players, header: SessionHeader) -> Result<Opened, SessionError> {
    let greeter = players.scene.is_none().then_some(&players.character);
    let (file, session) = start_session(dir, header, greeter)?;
    let chat = ChatSession::new(file.path().to_path_buf(), session, players);
    Ok(Opened {
        chat,
        file: Some(file),
        notes: Vec::new(),
    })
}

/// Reopens a session file for writing; problems with single lines are
/// returned as notes. A file this user may not write opens read-only
/// (said in the first note); one another window writes is
/// [`SessionError::Locked`], for the caller to offer read-only or a fork.
pub fn resume(path: &Path, players: Players) -> Result<Opened, SessionError> {
    match SessionFile::open(path) {
        Ok((file, session, issues)) => {
            let mut notes = notes_of(&issues);
            if let Some(dead) = file.taken_over() {
                notes.insert(
                    0,
                    format!(
                        "the session was left open by {}, which has ended; it is yours now",
                        Holder::describe(Some(dead))
                    ),
                );
            }
            let chat = ChatSession::new(path.to_path_buf(), session, players);
            Ok(Opened {
                chat,
                file: Some(file),
                notes,
            })
        }
        Err(SessionError::Io(IoError { cause, .. }))
            if matches!(
                cause.kind(),
                ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            let reason = format!("you may not write to this file ({cause})");
            let mut opened = read_only(path, players, reason.clone())?;
            opened
                .notes
                .insert(0, format!("opened read-only: {reason}"));
            Ok(opened)
        }
        Err(err) => Err(err),
    }
}

/// Opens a session to read only: every change is refused with `reason`.
pub fn read_only(path: &Path, players: Players, reason: String) -> Result<Opened, SessionError> {
    let (session, issues) = load_session(path)?;
    let mut chat = ChatSession::new(path.to_path_buf(), session, players);
    chat.read_only = Some(reason);
    Ok(Opened {
        chat,
        file: None,
        notes: notes_of(&issues),
    })
}

/// Copies the session at `path` into a new file in `dir` and opens that.
pub fn fork(path: &Path, dir: &Path, players: Players) -> Result<Opened, SessionError> {
    let (file, session, issues) = fork_session(path, dir)?;
    let chat = ChatSession::new(file.path().to_path_buf(), session, players);
    Ok(Opened {
        chat,
        file: Some(file),
        notes: notes_of(&issues),
    })
}

/// Opens a session (or starts one) for `cast`, with the file its changes
/// go to. A session another window writes to asks whether to read it only
/// or fork it.
pub fn open_session(
    cx: &AppContext,
    model: &ModelInfo,
    opening: &Opening,
    cast: &Cast,
    open_now: Option<&Path>,
) -> Result<(OpenedSession, Option<SessionFile>), OpenFailure> {
    if let (Opening::Resume(path), Some(open)) = (opening, open_now)
        && same_file(open, path)
    {
        return Err(OpenFailure::AlreadyOpen);
    }
    let config = cx.config();
    let (character, cast, scene, user) = cast_for(cx, cast).map_err(OpenFailure::Failed)?;
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
    let dir = config.sessions_dir(&cx.studio.root);
    let result = match opening {
        Opening::Resume(path) => resume(path, players),
        Opening::ReadOnly(path) => {
            read_only(path, players, "another her window writes to it".to_string())
        }
        Opening::Fork(path) => fork(path, &dir, players),
        Opening::New => {
            let header = new_header(
                &label,
                &character.name,
                scene_title.as_deref(),
                model,
                &config.sampling,
            );
            create(&dir, players, header)
        }
    };
    match result {
        Ok(Opened {
            mut chat,
            file,
            mut notes,
        }) => {
            chat.annotator = config.prefs.annotator_id();
            chat.story = config.story_config(&cx.studio.root);
            let wanted = chat.wanted_books();
            chat.books = Shelf::load(&chat.story.lore_dir, wanted.iter().map(String::as_str));
            let (_, story_notes) = chat.story_log();
            notes.extend(story_notes);
            Ok((OpenedSession { chat, notes }, file))
        }
        Err(SessionError::Locked { path, holder }) => {
            let message = format!(
                "{}; open it read-only or fork it",
                SessionError::Locked {
                    path: path.clone(),
                    holder: holder.clone(),
                }
            );
            Err(OpenFailure::Locked {
                path,
                holder: Holder::describe(holder.as_ref()),
                message,
            })
        }
        Err(err) => {
            let what = match opening {
                Opening::New => "cannot start a new session",
                Opening::Fork(_) => "cannot fork the session",
                Opening::Resume(_) | Opening::ReadOnly(_) => "cannot open the session",
            };
            Err(OpenFailure::Failed(format!(
                "{what}: {err}{}",
                fix_hint(&err, &dir)
            )))
        }
    }
}

/// What to do about a file-system refusal.
fn fix_hint(err: &SessionError, dir: &Path) -> String {
    match err {
        SessionError::Io(IoError { cause, .. })
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
pub fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

/// Moves a session to the trash, unless another window writes to it.
pub fn trash(path: &Path) -> Result<PathBuf, String> {
    // Held while moving, so nobody opens it half-way.
    let _lock = SessionLock::acquire(path).map_err(|e| match e {
        SessionError::Locked { .. } => format!("{e}: close it there first"),
        other => other.to_string(),
    })?;
    trash_session(path).map_err(|e| e.to_string())
}
