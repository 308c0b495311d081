//! Chats written to session files: the same log for the TUI and the
//! headless front end, so a scripted chat can be resumed, browsed and rated.

use std::path::Path;

use crate::{FinishReason, Finished, ModelInfo};
use her_core::character::Character;
use her_core::generation::SamplingConfig;
use her_core::prompt::Line;
use her_core::session::{
    LoadIssue, Message, MessageMeta, NodeId, Role, Session, SessionError, SessionEvent,
    SessionFile, SessionHeader,
};

/// The header of a new session: "<label> — <date>", who plays, the model
/// and the sampling in force.
pub fn new_header(
    label: &str,
    character: &str,
    scene: Option<&str>,
    model: &ModelInfo,
    sampling: &SamplingConfig,
) -> SessionHeader {
    let now = her_core::session::now_rfc3339();
    let date = now.get(..10).unwrap_or_default();
    let mut header = SessionHeader::new(format!("{label} — {date}"));
    header.character = Some(character.to_string());
    header.scene = scene.map(str::to_string);
    header.model = Some(model.name.clone());
    header.model_fingerprint = Some(model.fingerprint.clone());
    header.config = serde_json::to_value(sampling).unwrap_or_default();
    header
}

/// A new session file in `dir`. A character's greetings become the
/// alternatives of the first message, the first one selected (a scene,
/// `greeter` = None, starts empty).
pub fn start_session(
    dir: &Path,
    header: SessionHeader,
    greeter: Option<&Character>,
) -> Result<(SessionFile, Session), SessionError> {
    let (mut file, mut session) = SessionFile::create(dir, header)?;
    let greetings = greeter.map_or(&[][..], |c| c.greetings.as_slice());
    for greeting in greetings {
        let speaker = greeter.map(|c| c.name.clone()).unwrap_or_default();
        let message = Message::new(speaker, Role::Character, greeting.clone());
        file.commit_with(&mut session, |s| {
            s.tree().append_under_event(NodeId::ROOT, message)
        })?;
    }
    if greetings.len() > 1 {
        file.commit_with(&mut session, |s| s.tree().select_event(NodeId::ROOT, 0))?;
    }
    Ok((file, session))
}

/// The narrator's lines are marked as such in the log.
pub fn role_of_speaker(speaker: &str) -> Role {
    if speaker == her_core::character::ENVIRONMENT {
        Role::Narrator
    } else {
        Role::Character
    }
}

/// A generated reply as the log keeps it: how it ended and where it came
/// from. `done` is None for a reply that failed part-way (kept, incomplete).
pub fn reply_message(speaker: &str, role: Role, raw: &str, done: Option<&Finished>) -> Message {
    let meta = MessageMeta {
        finish_reason: done.map(|d| d.reason.to_string()),
        incomplete: done.is_none_or(|d| matches!(d.reason, FinishReason::ContextFull)),
        provenance: done.and_then(|d| serde_json::to_value(&d.provenance).ok()),
        ..MessageMeta::default()
    };
    Message::new(speaker, role, raw).with_meta(meta)
}

/// The active branch as prompt lines.
pub fn transcript_of(session: &Session) -> Vec<Line> {
    let tree = session.tree();
    tree.active_path()
        .into_iter()
        .filter_map(|id| tree.node(id))
        .map(|n| Line::new(n.message.speaker.clone(), n.message.text.clone()))
        .collect()
}

/// A session being written by the headless chat: every turn appended
/// (fsynced) under the newest message of the active branch.
pub struct Recorder {
    file: SessionFile,
    session: Session,
}

impl Recorder {
    pub fn new(file: SessionFile, session: Session) -> Self {
        Self { file, session }
    }

    /// Reopens `path` for writing (its lock taken); single unreadable lines
    /// are returned as notes.
    pub fn resume(path: &Path) -> Result<(Self, Vec<LoadIssue>), SessionError> {
        let (file, session, issues) = SessionFile::open(path)?;
        Ok((Self { file, session }, issues))
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Who had the session open when they died; their lock is now ours.
    pub fn taken_over(&self) -> Option<&her_core::session::Holder> {
        self.file.taken_over()
    }

    pub fn append(&mut self, message: Message) -> Result<(), SessionError> {
        self.file
            .commit_with(&mut self.session, |s| Ok(s.tree().append_event(message)))
            .map(|_| ())
    }

    /// Appends an event other front ends define (lore, memory, note), as
    /// the TUI logs them.
    pub fn append_other(&mut self, event: &impl serde::Serialize) -> Result<(), SessionError> {
        let value = serde_json::to_value(event)?;
        self.file
            .commit(&mut self.session, SessionEvent::Other(value))
            .map(|_| ())
    }

    /// The message keys of the active branch, oldest first.
    pub fn active_keys(&self) -> Vec<String> {
        let tree = self.session.tree();
        tree.active_path()
            .into_iter()
            .filter_map(|id| tree.node(id))
            .map(|n| n.key.clone())
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use her_core::character::load_character;

    #[test]
    fn greetings_become_alternatives_and_turns_follow_the_active_branch() {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut lizzy = load_character(&root.join("characters/elizabeth-bennet.toml")).unwrap();
        lizzy.greetings = vec!["First.".into(), "Second.".into()];
        let mut header = SessionHeader::new("t");
        header.character = Some(lizzy.name.clone());
        let (file, session) = start_session(dir.path(), header, Some(&lizzy)).unwrap();
        assert_eq!(session.tree().siblings_of(session.tree().leaf()), (0, 2));
        let mut recorder = Recorder::new(file, session);
        recorder
            .append(Message::new("Mr. Darcy", Role::User, "Hello."))
            .unwrap();
        recorder
            .append(reply_message(
                "Elizabeth Bennet",
                Role::Character,
                "Hi.",
                None,
            ))
            .unwrap();
        let lines = transcript_of(recorder.session());
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["First.", "Hello.", "Hi."]);
        let path = recorder.path().to_path_buf();
        drop(recorder);
        let (again, issues) = Recorder::resume(&path).unwrap();
        assert!(issues.is_empty());
        assert_eq!(transcript_of(again.session()).len(), 3);
        let tree = again.session().tree();
        assert!(tree.node(tree.leaf()).unwrap().message.meta.incomplete);
    }
}
