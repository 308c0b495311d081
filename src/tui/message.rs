//! Everything that reaches `update`: the user's intents, the clock, the
//! generation stream, and the answers of the work the runtime did for an
//! [`Effect`](crate::tui::effect::Effect).

use std::path::PathBuf;

use crate::tui::action::Action;
use crate::tui::effect::{AdapterFor, Opening};
use crate::tui::screens::chat::session::ChatSession;
use crate::tui::screens::picker::state::Picker;
use her_core::prefs::queue::QueueCandidate;
use her_core::prompt::PromptPart;
use her_core::story::Shelf;
use her_engine::{AdapterInfo, Event, ModelInfo};
use her_eval::EvalResults;
use her_train::rl::human::Ask;
use her_train::runs::RunSummary;

#[derive(Debug)]
// Messages are handled one at a time; boxing the big ones buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum Msg {
    /// A key, a paste or a mouse event, through the keymap.
    Action(Action),
    /// A printable key on a picker: it goes into the filter.
    Typed(char),
    /// Rows the transcript has on screen, measured before a draw.
    Layout {
        transcript_rows: usize,
    },
    /// The 250 ms clock, with the time it ticked.
    Tick(std::time::Instant),
    /// An event of the reply (or arena candidate) being generated.
    Engine(Event),
    /// An event of the rolling summary being generated.
    Summary(Event),
    /// The judge could not start to write the summary (`memory.summarizer`).
    SummarizerFailed(String),
    /// The engine the TUI talks to is ready (`switched`: after `/model`).
    ModelLoaded {
        info: ModelInfo,
        switched: bool,
    },
    /// How lore and memory budgets count tokens from now on (the model's
    /// vocabulary, or the estimate with why the vocabulary could not be read).
    TokensReady(her_core::story::TokenCounter, Option<String>),
    /// `/model` could not load the new model; the previous one is back.
    ModelLoadFailed {
        error: String,
        kept: ModelInfo,
    },
    /// The GGUF file `/model` named was read and looks usable (or not).
    ModelChecked {
        path: PathBuf,
        result: Result<(), String>,
    },
    /// Every character and scene, and the files left out with why.
    CharactersListed {
        picker: Picker,
        problems: Vec<String>,
    },
    /// A character's (or scene's) sessions were listed.
    CharacterOpened {
        result: Result<OpenedCharacter, String>,
        /// The session to open right after (a start that names one).
        then: Option<Opening>,
    },
    SessionOpened {
        opening: Opening,
        result: Result<OpenedSession, OpenFailure>,
    },
    /// A session moved to the trash (or why not); `reopen` lists the
    /// sessions again.
    SessionTrashed {
        result: Result<PathBuf, String>,
        reopen: String,
    },
    /// The model picked who speaks next in a scene (`None`: no usable answer).
    SpeakerAnswer {
        parent: Option<String>,
        answer: Option<String>,
        choices: Vec<String>,
    },
    /// Token counts of the prompt's parts, for `/prompt`.
    PromptCounted {
        preface: String,
        parts: Vec<PromptPart>,
        counts: Vec<usize>,
    },
    AdapterLoaded {
        info: AdapterInfo,
        scale: f32,
        for_: AdapterFor,
    },
    AdapterCleared {
        for_: AdapterFor,
    },
    AdapterFailed {
        for_: AdapterFor,
        error: String,
    },
    /// The adapter file of a training run (exported from a checkpoint if needed).
    RunAdapter(Result<PathBuf, String>),
    EditorClosed(Result<String, String>),
    RunsListed(Vec<RunSummary>),
    EvalsListed(Vec<EvalResults>),
    /// What an RL run waits on (`None`: nothing).
    RlAsk {
        run: PathBuf,
        ask: Option<Ask>,
    },
    /// The stars for one RL step reached the trainer (or not).
    RlAnswerSent {
        step: u64,
        result: Result<(), String>,
    },
    Exported(Result<PathBuf, String>),
    /// The lorebooks of the session at `session`, as read now; with the
    /// book `/lore attach` named and whether it exists.
    BooksLoaded {
        session: PathBuf,
        books: Shelf,
        attach: Option<(String, Result<(), String>)>,
    },
    /// The books in the lore folder (file stems), for `/lore books`.
    BooksListed {
        lore_dir: PathBuf,
        names: Vec<String>,
    },
    /// The first `count` queued changes of the session at `path` are on disk.
    Appended {
        path: PathBuf,
        count: usize,
    },
    /// A session write failed after `written` events; the rest stay queued.
    WriteFailed {
        path: PathBuf,
        written: usize,
        error: String,
    },
    /// Two candidates for an annotation item (or why there are none).
    CandidatesWritten {
        item: String,
        result: Result<(QueueCandidate, QueueCandidate), String>,
    },
    /// An annotation answer could not be appended to the log.
    RecordAppendFailed(String),
    /// An undone answer could not be removed from the log.
    RecordRetractFailed(String),
}

impl From<Action> for Msg {
    fn from(action: Action) -> Self {
        Msg::Action(action)
    }
}

/// A character or scene chosen in the picker, with its sessions.
#[derive(Debug)]
pub struct OpenedCharacter {
    /// The character's name, or the scene's title.
    pub name: String,
    /// The scene's file stem, when a scene was chosen.
    pub scene_stem: Option<String>,
    pub sessions: Picker,
    /// Why the saved sessions could not be listed.
    pub problem: Option<String>,
}

/// A session ready for the chat screen.
pub struct OpenedSession {
    pub chat: ChatSession,
    /// Lines of the log that could not be read, and similar notes.
    pub notes: Vec<String>,
}

impl std::fmt::Debug for OpenedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedSession")
            .field("path", &self.chat.path)
            .field("notes", &self.notes)
            .finish()
    }
}

/// Why a session did not open.
#[derive(Debug)]
pub enum OpenFailure {
    /// It is already the open session of this window.
    AlreadyOpen,
    /// Another window writes to it: read it only, or fork it.
    Locked {
        path: PathBuf,
        holder: String,
        message: String,
    },
    Failed(String),
}
