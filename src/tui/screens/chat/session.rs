//! The open session seen from the TUI: shown messages from the active
//! branch, prompts for replies, and every change applied in memory and
//! queued for the session log, which the runtime writes in order.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::SamplingConfig;
use crate::tui::app::{ReplyTarget, TreeRowView};
use crate::tui::model::{ShownMessage, Speaker};
use crate::tui::overlays::rate::state::{RatingInput, layer_label, score_label};
use crate::tui::screens::chat::writes::PendingWrites;
use her_core::character::{Character, Scene};
use her_core::format::PREFILL;
use her_core::prefs::sessions::{ArenaEvent, RATING_EVENT, RatingEvent};
use her_core::prompt::{HerPrompt, Line, PromptVariant};
use her_core::session::{
    ExportFormat, Message, NodeId, Role, Session, SessionError, SessionEvent, TreeError,
};
use her_engine::dialogue::{reply_message, role_of_speaker};
use her_engine::{Finished, PromptSource};

pub struct ChatSession {
    pub path: PathBuf,
    /// Why the session is open read-only (nothing can be written), shown
    /// when a change is refused.
    pub read_only: Option<String>,
    pub session: Session,
    /// Changes applied here and not yet confirmed on disk; the runtime
    /// writes them (see [`crate::tui::writes`]).
    pub writes: PendingWrites,
    /// The character being chatted with; in a scene, the first member.
    pub character: Character,
    /// Everyone the model plays: the character, or a scene's members and narrator.
    pub cast: Vec<Character>,
    pub scene: Option<Scene>,
    pub user_name: String,
    pub variant: PromptVariant,
    pub sampling: SamplingConfig,
    /// Turns dropped from the last prompt; reused so the KV cache stays valid.
    pub dropped_turns: usize,
    /// Who is rating (config prefs.annotator).
    pub annotator: String,
    /// Lore, memory and note settings (config `[lore]`, `[memory]`).
    pub story: her_core::story::StoryConfig,
    /// The books of [`Self::wanted_books`], as the runtime last read them
    /// (`Msg::BooksLoaded`): building a prompt reads no files.
    pub books: her_core::story::Shelf,
    /// The token probabilities of replies written in this window, by key
    /// (kept in memory only: a long reply's candidates are bulky).
    pub choices: std::collections::HashMap<String, ReplyChoices>,
}

/// A reply's generated tokens with their likely alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplyChoices {
    /// Where the tokens begin in the raw reply (after the prefill or the
    /// text that was continued).
    pub start: usize,
    pub tokens: Vec<her_engine::TokenChoice>,
}

/// Who plays and how: everything a session needs besides its file.
pub struct Players {
    /// The character, or a scene's first member.
    pub character: Character,
    /// Everyone the model plays.
    pub cast: Vec<Character>,
    pub scene: Option<Scene>,
    pub user_name: String,
    pub variant: PromptVariant,
    pub sampling: SamplingConfig,
}

/// A prompt whose final assistant turn is left open after `partial`, so the
/// model continues an existing reply.
struct ContinuePrompt {
    base: HerPrompt,
    partial: String,
}

impl PromptSource for ContinuePrompt {
    fn render(&self, skip: usize) -> String {
        let mut parts = self.base.parts(skip);
        if let Some(last) = parts.last_mut() {
            last.text = format!("{}{}", her_core::chatml::open("assistant"), self.partial);
        }
        parts.into_iter().map(|p| p.text).collect()
    }

    fn droppable_turns(&self) -> usize {
        self.base.droppable()
    }
}

impl ChatSession {
    /// The session read from (or written to) `path`, in memory: the
    /// runtime owns the file and writes what [`ChatSession::writes`] queues.
    pub fn new(path: PathBuf, session: Session, players: Players) -> Self {
        Self {
            path,
            read_only: None,
            session,
            writes: PendingWrites::default(),
            character: players.character,
            cast: players.cast,
            scene: players.scene,
            user_name: players.user_name,
            variant: players.variant,
            sampling: players.sampling,
            dropped_turns: 0,
            annotator: "me".into(),
            story: her_core::story::StoryConfig::default(),
            books: her_core::story::Shelf::default(),
            choices: std::collections::HashMap::new(),
        }
    }

    /// Applies the event in memory and queues it for the log. Read-only,
    /// moving between alternatives and branches still works, in memory only.
    pub(crate) fn commit(&mut self, event: &SessionEvent) -> Result<Option<NodeId>, SessionError> {
        if let Some(reason) = &self.read_only {
            if !matches!(event, SessionEvent::Select { .. }) {
                return Err(SessionError::ReadOnly {
                    path: self.path.clone(),
                    reason: reason.clone(),
                });
            }
            return self.session.apply(event).map_err(|e| self.tree_error(e));
        }
        let id = self.session.apply(event).map_err(|e| self.tree_error(e))?;
        self.writes.push(event.clone());
        Ok(id)
    }

    fn tree_error(&self, cause: TreeError) -> SessionError {
        SessionError::Event {
            path: self.path.clone(),
            cause,
        }
    }

    /// The cast member called `name`, else the lead character.
    pub fn member(&self, name: &str) -> &Character {
        self.cast
            .iter()
            .find(|c| c.name == name)
            .unwrap_or(&self.character)
    }

    /// The speaker of a saved message.
    pub fn speaker_of(&self, key: &str) -> Option<String> {
        let id = self.session.tree().find(key)?;
        self.session
            .tree()
            .node(id)
            .map(|n| n.message.speaker.clone())
    }

    /// The names of the AI speakers, in cast order.
    pub fn speakers(&self) -> Vec<String> {
        self.cast.iter().map(|c| c.name.clone()).collect()
    }

    pub fn title(&self) -> String {
        self.session.title().to_string()
    }

    pub(crate) fn id_of(&self, key: &str) -> Result<NodeId, SessionError> {
        self.session
            .tree()
            .find(key)
            .ok_or_else(|| self.tree_error(TreeError::UnknownKey(key.to_string())))
    }

    fn key_of(&self, id: NodeId) -> String {
        self.session
            .tree()
            .node(id)
            .map(|n| n.key.clone())
            .unwrap_or_default()
    }

    /// The active branch as the transcript shows it.
    pub fn shown(&self) -> Vec<ShownMessage> {
        let tree = self.session.tree();
        let ratings = self.ratings();
        tree.active_path()
            .into_iter()
            .filter_map(|id| {
                let node = tree.node(id)?;
                let speaker = match node.message.role {
                    Role::User => Speaker::User,
                    Role::Narrator | Role::System => Speaker::Narrator,
                    Role::Character => Speaker::Character,
                };
                let mut shown = ShownMessage::new(
                    node.key.clone(),
                    node.message.speaker.clone(),
                    speaker,
                    node.message.text.clone(),
                    tree.siblings_of(id),
                );
                shown.incomplete = node.message.meta.incomplete;
                shown.rating = ratings.get(&node.key).cloned();
                Some(shown)
            })
            .collect()
    }

    pub fn is_user(&self, key: &str) -> bool {
        self.id_of(key)
            .ok()
            .and_then(|id| self.session.tree().node(id))
            .is_some_and(|n| n.message.role == Role::User)
    }

    /// Transcript lines of the active branch up to and including `key`.
    fn lines_upto(&self, key: Option<&str>) -> Vec<Line> {
        self.path_upto(key).0
    }

    /// Transcript lines up to and including `key`, with their keys.
    pub(crate) fn path_upto(&self, key: Option<&str>) -> (Vec<Line>, Vec<String>) {
        let Some(key) = key else {
            return (Vec::new(), Vec::new());
        };
        let tree = self.session.tree();
        let Some(id) = tree.find(key) else {
            return (Vec::new(), Vec::new());
        };
        // A placeholder for an unreadable line is for the reader, not the model.
        tree.path_to(id)
            .into_iter()
            .filter_map(|id| tree.node(id))
            .filter(|n| !n.unreadable)
            .map(|n| {
                (
                    Line::new(n.message.speaker.clone(), n.message.text.clone()),
                    n.key.clone(),
                )
            })
            .unzip()
    }

    pub(crate) fn parent_key(&self, key: &str) -> Result<Option<String>, SessionError> {
        let id = self.id_of(key)?;
        Ok(self
            .session
            .tree()
            .node(id)
            .and_then(|n| n.parent)
            .filter(|p| *p != NodeId::ROOT)
            .map(|p| self.key_of(p)))
    }

    /// The prompt for a reply at `target`, and the text the reply starts with
    /// (the prefill, or the reply being continued).
    pub fn prompt_for(
        &self,
        target: &ReplyTarget,
        speaker: &str,
    ) -> Result<(Arc<dyn PromptSource>, String), SessionError> {
        let build = |upto: Option<&str>| self.build_upto(upto, speaker).0;
        Ok(match target {
            ReplyTarget::After(parent) => (Arc::new(build(parent.as_deref())), PREFILL.to_string()),
            ReplyTarget::AlternativeOf(key) => {
                let parent = self.parent_key(key)?;
                (Arc::new(build(parent.as_deref())), PREFILL.to_string())
            }
            ReplyTarget::ContinuationOf { key, raw: partial }
            | ReplyTarget::SteeredFrom {
                of: key,
                prefix: partial,
                ..
            } => {
                let parent = self.parent_key(key)?;
                let prompt = ContinuePrompt {
                    base: build(parent.as_deref()),
                    partial: partial.clone(),
                };
                (Arc::new(prompt), partial.clone())
            }
        })
    }

    /// The whole active branch as transcript lines.
    pub fn active_lines(&self) -> Vec<Line> {
        self.lines_upto(self.leaf_key().as_deref())
    }

    /// Key of the newest message on the active branch.
    pub fn leaf_key(&self) -> Option<String> {
        Some(self.key_of(self.session.tree().leaf())).filter(|k| !k.is_empty())
    }

    /// The prompt the next reply would get, for `/prompt`.
    pub fn next_prompt(&self) -> HerPrompt {
        self.build_upto(self.leaf_key().as_deref(), &self.character.name)
            .0
    }

    pub fn append_user(&mut self, text: &str) -> Result<String, SessionError> {
        let message = Message::new(self.user_name.clone(), Role::User, text);
        let event = self.session.tree().append_event(message);
        let id = self.commit(&event)?;
        Ok(id.map(|id| self.key_of(id)).unwrap_or_default())
    }

    /// Saves a finished (or failed) reply where `target` says.
    pub fn save_reply(
        &mut self,
        target: &ReplyTarget,
        speaker: &str,
        raw: &str,
        done: Option<&Finished>,
    ) -> Result<String, SessionError> {
        let message = reply_message(speaker, role_of_speaker(speaker), raw, done);
        let meta = message.meta.clone();
        // What this reply's prompt added; nothing in the log changes while a
        // reply is written (story commands wait, a summary is kept back), so
        // it is the context the prompt was built with.
        let parent = self.parent_of(target)?;
        let (_, prepared) = self.build_upto(parent.as_deref(), speaker);
        let tree = self.session.tree();
        let event = match target {
            ReplyTarget::After(parent) => {
                let parent = match parent {
                    Some(key) => self.id_of(key)?,
                    None => NodeId::ROOT,
                };
                tree.append_under_event(parent, message)
            }
            ReplyTarget::AlternativeOf(key) => tree.swipe_event(self.id_of(key)?, message),
            ReplyTarget::SteeredFrom { of, edit, .. } => {
                let mut message = message;
                message.meta.thinking_edit = edit.clone().map(Box::new);
                tree.swipe_event(self.id_of(of)?, message)
            }
            ReplyTarget::ContinuationOf { key, raw: old } => {
                let addition = raw.strip_prefix(old.as_str()).unwrap_or(raw);
                tree.continue_event(self.id_of(key)?, addition, meta)
            }
        }
        .map_err(|e| self.tree_error(e))?;
        let id = self.commit(&event)?;
        let key = id.map(|id| self.key_of(id)).unwrap_or_default();
        self.log_reply_context(&key, &prepared)?;
        Ok(key)
    }

    /// Logs a rating of `key` with the exact prompt it answered and the
    /// reply's provenance, for the preference exports.
    pub fn rate(
        &mut self,
        key: &str,
        speaker: &str,
        input: &RatingInput,
    ) -> Result<(), SessionError> {
        let id = self.id_of(key)?;
        let node = self.session.tree().node(id);
        // The prompt as the engine saw it: the same turns left out.
        let skip = node
            .and_then(|n| n.message.meta.provenance.as_ref())
            .and_then(|p| p.get("dropped_turns"))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0) as usize;
        let prompt = self.recorded_prompt(key, speaker)?.render_with_skip(skip);
        let event = RatingEvent {
            kind: RATING_EVENT.into(),
            id: her_core::session::new_key(),
            key: key.to_string(),
            annotator: self.annotator.clone(),
            score: input.score,
            layer: input.layer,
            tags: input.tags.clone(),
            rationale: input.rationale.clone(),
            prompt_sha256: her_core::hashing::sha256_hex(prompt.as_bytes()),
            prompt: Some(prompt),
            created_at: her_core::session::now_rfc3339(),
        };
        self.log_other(&event)
    }

    /// Logs a finished arena round.
    pub fn log_arena(&mut self, event: &ArenaEvent) -> Result<(), SessionError> {
        self.log_other(event)
    }

    pub(crate) fn log_other(&mut self, event: &impl serde::Serialize) -> Result<(), SessionError> {
        let value = serde_json::to_value(event)?;
        self.commit(&SessionEvent::Other(value)).map(|_| ())
    }

    /// The key of the message a reply at `target` answers (`None`: the start).
    pub fn parent_of(&self, target: &ReplyTarget) -> Result<Option<String>, SessionError> {
        match target {
            ReplyTarget::After(parent) => Ok(parent.clone()),
            ReplyTarget::AlternativeOf(key)
            | ReplyTarget::ContinuationOf { key, .. }
            | ReplyTarget::SteeredFrom { of: key, .. } => self.parent_key(key),
        }
    }

    /// This annotator's latest rating of each message, as a label.
    fn ratings(&self) -> std::collections::HashMap<String, String> {
        let mut out = std::collections::HashMap::new();
        for e in self.session.other_events() {
            let Ok(event) = serde_json::from_value::<RatingEvent>(e.value.clone()) else {
                continue;
            };
            if event.kind != RATING_EVENT || event.annotator != self.annotator {
                continue;
            }
            let mut label = score_label(event.score);
            if event.layer != her_core::prefs::RatedLayer::Whole {
                label.push_str(&format!(" ({})", layer_label(event.layer)));
            }
            out.insert(event.key, label);
        }
        out
    }

    pub fn rename(&mut self, title: &str) -> Result<(), SessionError> {
        let event = self.session.rename_event(title);
        self.commit(&event).map(|_| ())
    }

    pub fn cycle(&mut self, key: &str, delta: i32) -> Result<(), SessionError> {
        let id = self.id_of(key)?;
        let event = self
            .session
            .tree()
            .cycle_event(id, delta as isize)
            .map_err(|e| self.tree_error(e))?;
        if let Some(event) = event {
            self.commit(&event)?;
        }
        Ok(())
    }

    pub fn edit(&mut self, key: &str, text: &str) -> Result<String, SessionError> {
        let event = self
            .session
            .tree()
            .edit_event(self.id_of(key)?, text)
            .map_err(|e| self.tree_error(e))?;
        let id = self.commit(&event)?;
        Ok(id.map(|id| self.key_of(id)).unwrap_or_default())
    }

    pub fn delete(&mut self, key: &str) -> Result<(), SessionError> {
        let event = self
            .session
            .tree()
            .delete_event(self.id_of(key)?)
            .map_err(|e| self.tree_error(e))?;
        self.commit(&event)?;
        Ok(())
    }

    pub fn jump_to(&mut self, key: &str) -> Result<(), SessionError> {
        let events = self
            .session
            .tree()
            .jump_to_events(self.id_of(key)?)
            .map_err(|e| self.tree_error(e))?;
        for event in events {
            self.commit(&event)?;
        }
        Ok(())
    }

    pub fn tree_rows(&self) -> Vec<TreeRowView> {
        let tree = self.session.tree();
        tree.rows()
            .into_iter()
            .map(|r| TreeRowView {
                key: self.key_of(r.node),
                depth: r.depth,
                on_active_path: r.on_active_path,
                label: r.label,
                alternatives: r.alternatives,
            })
            .collect()
    }

    /// Where and how `/export FORMAT [PATH]` writes the active branch: txt,
    /// md or st (SillyTavern JSONL), beside the session file by default.
    pub fn export_target(
        &self,
        format: &str,
        path: Option<PathBuf>,
    ) -> Result<(ExportFormat, PathBuf), String> {
        let stem = self.path.with_extension("");
        let (ext, out) = match format {
            "txt" | "text" => ("txt", ExportFormat::PlainText),
            "md" | "markdown" => ("md", ExportFormat::Markdown),
            "st" | "sillytavern" | "jsonl" => ("st.jsonl", ExportFormat::SillyTavern),
            other => {
                return Err(format!(
                    "/export: unknown format '{other}'; use txt, md or st"
                ));
            }
        };
        let path = path.unwrap_or_else(|| PathBuf::from(format!("{}.{ext}", stem.display())));
        Ok((out, path))
    }
}
