//! The open session's lore, memory and author's note: prompts built with
//! them, and the session-log events that change them.

use crate::tui::screens::chat::session::ChatSession;
use her_core::character::AuthorNote;
use her_core::prompt::{Additions, HerPrompt, HistoryLayers, Line, PromptOptions};
use her_core::session::{SessionError, new_key, now_rfc3339};
use her_core::story::events::{
    BookEvent, LORE_ATTACH, LORE_DETACH, MEMORY_PIN, MEMORY_UNPIN, NOTE, NoteEvent, PinEvent,
    REPLY_CONTEXT, ReplyContextEvent, SUMMARY, SummaryEvent, UnpinEvent,
};
use her_core::story::{
    Prepared, StoryInput, StoryLog, SummarySource, prepare, session_seed, wanted_books,
};

impl ChatSession {
    /// The story events of this session (and the lines that could not be read).
    pub fn story_log(&self) -> (StoryLog, Vec<String>) {
        StoryLog::read(&self.session)
    }

    /// The lorebooks this session's prompts may use (attached, the cast's,
    /// the scene's, global), for the runtime to load into [`Self::books`].
    pub fn wanted_books(&self) -> Vec<String> {
        let (log, _) = self.story_log();
        let scene_lore = self.scene.as_ref().map_or(&[][..], |s| s.lore.as_slice());
        wanted_books(&self.story, &log, &self.cast, scene_lore)
    }

    /// What lore, memory and note add to `speaker`'s prompt for the reply
    /// after `upto` (`None`: the start).
    pub fn prepare_upto(&self, upto: Option<&str>, speaker: &str) -> (Prepared, Vec<Line>) {
        let (lines, path) = self.path_upto(upto);
        let member = self.member(speaker);
        let (log, _) = self.story_log();
        let scene_lore = self.scene.as_ref().map_or(&[][..], |s| s.lore.as_slice());
        let user_name = member.user_name(&self.user_name).to_string();
        let prepared = prepare(
            &self.story,
            &log,
            &self.books,
            &StoryInput {
                character: member,
                scene_lore,
                user_name: &user_name,
                transcript: &lines,
                path: &path,
                seed: session_seed(self.session.id()),
            },
        );
        (prepared, lines)
    }

    /// `speaker`'s prompt for the reply after `upto`, with what the story
    /// added.
    pub fn build_upto(&self, upto: Option<&str>, speaker: &str) -> (HerPrompt, Prepared) {
        let (prepared, lines) = self.prepare_upto(upto, speaker);
        let member = self.member(speaker);
        let options = PromptOptions::new(self.variant, member.user_name(&self.user_name));
        let prompt = HerPrompt::build_with(member, &options, &lines, &prepared.additions);
        (prompt, prepared)
    }

    /// The prompt reply `key` answered, with the lore, memory, note and
    /// history rule it was generated with, as logged with it. A reply logged
    /// without them had none but HER's history rule (any other is logged),
    /// or is from before they were logged: it gets today's lore.
    pub fn recorded_prompt(&self, key: &str, speaker: &str) -> Result<HerPrompt, SessionError> {
        let parent = self.parent_key(key)?;
        let (log, _) = self.story_log();
        let (additions, lines) = match log.contexts.get(key) {
            Some(context) => (
                context.additions.clone(),
                self.path_upto(parent.as_deref()).0,
            ),
            None => {
                let (prepared, lines) = self.prepare_upto(parent.as_deref(), speaker);
                let additions = Additions {
                    history: HistoryLayers::HER,
                    ..prepared.additions
                };
                (additions, lines)
            }
        };
        let member = self.member(speaker);
        let options = PromptOptions::new(self.variant, member.user_name(&self.user_name));
        Ok(HerPrompt::build_with(member, &options, &lines, &additions))
    }

    /// Records what reply `key`'s prompt added and the timed lore events of
    /// its scan.
    pub(crate) fn log_reply_context(
        &mut self,
        key: &str,
        prepared: &Prepared,
    ) -> Result<(), SessionError> {
        let timed = prepared.timed_events();
        if prepared.additions.is_empty() && timed.is_empty() {
            return Ok(());
        }
        self.log_other(&ReplyContextEvent {
            kind: REPLY_CONTEXT.into(),
            key: key.to_string(),
            additions: prepared.additions.clone(),
            timed,
        })
    }

    pub fn attach_book(&mut self, name: &str, attach: bool) -> Result<(), SessionError> {
        let kind = if attach { LORE_ATTACH } else { LORE_DETACH };
        self.log_other(&BookEvent {
            kind: kind.into(),
            name: name.to_string(),
        })
    }

    /// The note in force: the session's, else the character's default.
    pub fn note(&self) -> Option<AuthorNote> {
        self.story_log()
            .0
            .note
            .or_else(|| self.character.note.clone())
    }

    pub fn set_note(&mut self, note: AuthorNote) -> Result<(), SessionError> {
        self.log_other(&NoteEvent {
            kind: NOTE.into(),
            note,
        })
    }

    /// Pins `text` (of message `key`, when it is one); returns the pin's id.
    pub fn pin(&mut self, text: &str, key: Option<&str>) -> Result<String, SessionError> {
        let id = new_key();
        self.log_other(&PinEvent {
            kind: MEMORY_PIN.into(),
            id: id.clone(),
            text: text.to_string(),
            key: key.map(str::to_string),
            created_at: now_rfc3339(),
        })?;
        Ok(id)
    }

    pub fn unpin(&mut self, id: &str) -> Result<(), SessionError> {
        self.log_other(&UnpinEvent {
            kind: MEMORY_UNPIN.into(),
            id: id.to_string(),
        })
    }

    /// Logs a summary version covering the branch up to `upto`.
    pub fn save_summary(
        &mut self,
        text: &str,
        upto: &str,
        source: SummarySource,
        model: Option<&str>,
    ) -> Result<(), SessionError> {
        let messages = self.path_upto(Some(upto)).1.len();
        self.log_other(&SummaryEvent {
            kind: SUMMARY.into(),
            id: new_key(),
            text: text.to_string(),
            upto: upto.to_string(),
            messages,
            source,
            model: model.map(str::to_string),
            created_at: now_rfc3339(),
        })
    }

    /// The keys of the active branch, oldest first.
    pub fn active_keys(&self) -> Vec<String> {
        self.path_upto(self.leaf_key().as_deref()).1
    }
}
