//! Work that `update` asks the runtime to do: anything that touches the
//! engine, the terminal, the file system or another program. Each answers
//! with a [`Msg`](crate::tui::message::Msg) (named on the variant).

use std::path::PathBuf;

use crate::config::SamplingConfig;
use her_core::prefs::PreferenceRecord;
use her_core::prompt::PromptPart;
use her_core::session::{ExportFormat, Session, SessionEvent};
use her_engine::GenerateRequest;
use her_train::rl::human::Answer;

/// How a session is opened.
#[derive(Debug, Clone, PartialEq)]
pub enum Opening {
    /// A new session for the chosen character or scene.
    New,
    /// An existing session, to write to; if another window writes to it,
    /// the user chooses between the two below.
    Resume(PathBuf),
    /// An existing session, to read: nothing is written.
    ReadOnly(PathBuf),
    /// A copy of an existing session in a new file, to write to.
    Fork(PathBuf),
}

/// Who asked for an adapter change: the chat (shown in the status bar) or
/// an arena round (candidate `n` is written once it is in place; a restore
/// puts back what the chat had).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AdapterFor {
    Chat,
    ArenaCandidate(usize),
    ArenaRestore,
}

/// Whose sessions to open: a character by name, or a scene by file stem.
#[derive(Debug, Clone, PartialEq)]
pub struct Cast {
    pub character: String,
    pub scene_stem: Option<String>,
}

#[derive(Debug)]
// One effect at a time goes through the runtime; boxing the request buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum Effect {
    /// Stream a reply (→ `Msg::Engine` events).
    Generate(GenerateRequest),
    /// Stream the rolling summary (→ `Msg::Summary` events).
    Summarize(GenerateRequest),
    /// Ask the model who speaks next (→ `Msg::SpeakerAnswer`).
    AskSpeaker {
        request: GenerateRequest,
        parent: Option<String>,
        choices: Vec<String>,
    },
    Cancel,
    /// Suspend the TUI and edit this text in $EDITOR (→ `Msg::EditorClosed`).
    OpenEditor(String),
    /// → `Msg::AdapterLoaded` or `Msg::AdapterFailed`.
    LoadAdapter {
        path: PathBuf,
        scale: f32,
        for_: AdapterFor,
    },
    /// → `Msg::AdapterCleared` or `Msg::AdapterFailed`.
    ClearAdapter {
        for_: AdapterFor,
    },
    /// The adapter of a training run: its final adapter, or its newest
    /// checkpoint exported for llama.cpp (→ `Msg::RunAdapter`).
    FindRunAdapter(PathBuf),
    /// Count the tokens of each part of a prompt (→ `Msg::PromptCounted`).
    CountTokens {
        preface: String,
        parts: Vec<PromptPart>,
    },
    /// Every character and scene (→ `Msg::CharactersListed`).
    ListCharacters,
    /// The sessions of a character or scene (→ `Msg::CharacterOpened`), then
    /// `then`, if it listed.
    OpenCharacter {
        name: String,
        then: Option<Opening>,
    },
    /// → `Msg::SessionOpened`.
    OpenSession {
        opening: Opening,
        cast: Cast,
        /// The session open in this window now, if any.
        open_now: Option<PathBuf>,
    },
    /// Move a session file to the trash (→ `Msg::SessionTrashed`).
    TrashSession {
        path: PathBuf,
        reopen: String,
    },
    /// → `Msg::RunsListed`.
    ListRuns(PathBuf),
    /// → `Msg::EvalsListed`.
    ListEvals(PathBuf),
    /// What an RL run waits on (→ `Msg::RlAsk`).
    FindRlAsk(PathBuf),
    /// → `Msg::RlAnswerSent`.
    SendRlAnswer {
        run: PathBuf,
        answer: Answer,
    },
    /// Read a GGUF's header before switching to it (→ `Msg::ModelChecked`).
    CheckModel(PathBuf),
    /// Replace the engine's model (→ `Msg::ModelLoaded` or `Msg::ModelLoadFailed`).
    SwitchModel(PathBuf),
    /// Read the vocabulary of the local model at the path, for lore and
    /// memory budgets (→ `Msg::TokensReady`).
    LoadVocab(PathBuf),
    /// Two candidates with different seeds for an annotation item that has
    /// none; the engine starts now if it has not (→ `Msg::CandidatesWritten`).
    WriteCandidates {
        item: String,
        prompt: String,
        sampling: SamplingConfig,
    },
    /// Append an answer to the annotator's log (→ `Msg::RecordAppendFailed`
    /// if it could not be).
    AppendRecord {
        log: PathBuf,
        record: Box<PreferenceRecord>,
    },
    /// Remove a record from the log, for undo (→ `Msg::RecordRetractFailed`
    /// if it could not be).
    RetractRecord {
        log: PathBuf,
        id: String,
    },
    /// Append the open session's queued changes to its file, in order
    /// (→ `Msg::Appended`, or `Msg::WriteFailed` with how many made it).
    Append {
        path: PathBuf,
        events: Vec<SessionEvent>,
    },
    /// Read the lorebooks the session at `session` may use; with `attach`,
    /// first check that the book to attach exists (→ `Msg::BooksLoaded`).
    LoadBooks {
        session: PathBuf,
        lore_dir: PathBuf,
        names: Vec<String>,
        attach: Option<String>,
    },
    /// The books in the lore folder, for `/lore books` (→ `Msg::BooksListed`).
    ListBooks(PathBuf),
    /// Write the active branch to a file (→ `Msg::Exported`).
    Export {
        session: Box<Session>,
        format: ExportFormat,
        to: PathBuf,
    },
}

impl Effect {
    /// Whether the effect talks to the engine (which `her annotate` starts
    /// only when it is first needed).
    pub fn needs_engine(&self) -> bool {
        matches!(
            self,
            Effect::Generate(_)
                | Effect::Summarize(_)
                | Effect::AskSpeaker { .. }
                | Effect::LoadAdapter { .. }
                | Effect::ClearAdapter { .. }
                | Effect::CountTokens { .. }
                | Effect::WriteCandidates { .. }
        )
    }
}
