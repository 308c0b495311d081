//! The whole TUI state. `update` mutates it; views and the runtime only
//! borrow it.

use crate::tui::keymap::{Keymap, Layer};
use crate::tui::model::{PaneModes, ShownMessage};
use crate::tui::screens::chat::composer::Composer;
use crate::tui::screens::chat::session::ChatSession;
use crate::tui::screens::picker::state::Picker;
use crate::tui::theme::Theme;
use std::time::Instant;

pub use crate::tui::overlays::confirm::state::ConfirmAction;
pub use crate::tui::overlays::locked::state::LOCKED_CHOICES;

use her_core::format::{Finding, StreamedReply};
use her_core::rng::SplitMix64;
use her_engine::LiveStats;

/// Which full screen is showing.
#[derive(Debug, Clone, PartialEq)]
pub enum Screen {
    /// Choosing a character.
    Characters,
    /// Choosing a session of the chosen character (or a new one).
    Sessions,
    Chat,
    /// Answering an annotation queue (`her annotate`).
    Annotate,
}

/// Something drawn over the screen.
#[derive(Debug, Clone, PartialEq)]
pub enum Overlay {
    Help {
        scroll: u16,
    },
    /// The selected reply exactly as generated.
    Raw {
        scroll: u16,
    },
    /// The exact prompt with token counts per section (or another text
    /// report: `/lore`, `/memory`).
    Prompt {
        title: String,
        text: String,
        scroll: u16,
    },
    /// The branch tree; `cursor` indexes its rows.
    Tree {
        cursor: usize,
    },
    /// The detailed rating dialog.
    Rate(crate::tui::overlays::rate::state::RateForm),
    /// The blind A/B round in `App::arena`.
    Arena,
    /// Training runs with their loss curves; `cursor` indexes `App::runs`.
    Runs {
        cursor: usize,
    },
    /// Stars for the replies an RL run waits on.
    RlRate(crate::tui::overlays::rl_rate::state::RlRateForm),
    /// Evaluations with their scores per dimension; `cursor` indexes `App::evals`.
    Evals {
        cursor: usize,
    },
    /// Another window writes to the session being opened: read it only,
    /// fork it, or go back. `cursor` indexes [`LOCKED_CHOICES`].
    Locked {
        path: std::path::PathBuf,
        holder: String,
        cursor: usize,
    },
    /// The tokens of a reply coloured by probability, with the likely
    /// alternatives at the cursor.
    Tokens(crate::tui::overlays::tokens::TokenView),
    /// A yes/no question.
    Confirm {
        question: String,
        on_yes: ConfirmAction,
    },
}

/// Where a reply being generated goes when it finishes.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyTarget {
    /// A new message under this parent key (None: top level).
    After(Option<String>),
    /// A new alternative of this message.
    AlternativeOf(String),
    /// A longer version of this message (text appended to its raw text).
    ContinuationOf { key: String, raw: String },
    /// A new alternative of `of` that starts with `prefix` and goes on from
    /// there: the reply up to a rewritten thinking block and the block as
    /// the writer wrote it (`edit`, recorded), or the reply up to a token and
    /// another token in its place (the probability view).
    SteeredFrom {
        of: String,
        prefix: String,
        edit: Option<her_core::format::ThinkingEdit>,
    },
}

#[derive(Debug, Clone)]
pub struct Streaming {
    pub target: ReplyTarget,
    pub speaker: String,
    pub reply: StreamedReply,
    /// Bytes of the raw reply that were there before generation (the
    /// prefill, or the text continued): where the generated tokens begin.
    pub prefix_len: usize,
    /// When it started, by the clock of the last tick (see `App::now`).
    pub started: Instant,
}

/// Engine and session facts for the status bar.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    pub model: String,
    pub adapter: Option<String>,
    pub context_used: usize,
    pub n_ctx: usize,
    pub tokens_per_second: f64,
    pub session: String,
    /// Findings of the selected or last reply.
    pub findings: Vec<Finding>,
    /// A message for the user, cleared on the next key.
    pub notice: Option<(String, bool /* error */)>,
}

pub struct App {
    pub screen: Screen,
    pub overlay: Option<Overlay>,
    pub layer_focus: Layer,
    pub keymap: Keymap,
    pub theme: Theme,
    pub composer: Composer,
    /// Key of the message being edited through the composer.
    pub editing: Option<String>,
    /// Key of the reply whose thinking block `/plan` or `/thought` put into
    /// the composer (the command that rewrites it applies to that reply).
    pub steering: Option<String>,
    pub modes: PaneModes,
    pub messages: Vec<ShownMessage>,
    pub selected: Option<usize>,
    pub scroll: usize,
    pub streaming: Option<Streaming>,
    pub status: Status,
    pub characters: Picker,
    pub sessions: Picker,
    pub character_name: String,
    /// The scene chosen in the picker (file stem), instead of a character.
    pub scene_stem: Option<String>,
    /// `/model` is loading another model: nothing can be generated.
    pub engine_loading: bool,
    /// The model is picking who speaks next in a scene.
    pub choosing_speaker: bool,
    /// The engine runs here (llama.cpp), so `/model` can switch it.
    pub backend_local: bool,
    pub quit: bool,
    /// Quit was asked once while session changes could not be saved: the
    /// next quit leaves without them (and the exit reports them).
    pub leave_unsaved: bool,
    /// Height of the transcript at the last draw, for page scrolling.
    pub page: usize,
    /// Rows of the branch tree while the tree overlay is open.
    pub tree_rows: Vec<TreeRowView>,
    /// The open session, on the chat screen.
    pub chat: Option<ChatSession>,
    /// The blind A/B round in progress.
    pub arena: Option<crate::tui::overlays::arena::state::ArenaRound>,
    /// The LoRA adapter the engine has loaded (path, scale).
    pub adapter: Option<(std::path::PathBuf, f32)>,
    /// Likely tokens to keep per generated token (config
    /// `chat.token_candidates`).
    pub token_candidates: usize,
    /// How sessions count tokens for lore and memory budgets: the local
    /// model's vocabulary once read (`Msg::TokensReady`), else the estimate.
    pub tokens: her_core::story::TokenCounter,
    /// Training runs, re-read while the runs overlay is open.
    pub runs: Vec<her_train::runs::RunSummary>,
    /// Where training runs live (paths.runs).
    pub runs_dir: std::path::PathBuf,
    /// Evaluations, read when the evaluations overlay opens.
    pub evals: Vec<her_eval::EvalResults>,
    /// Where evaluations live (paths.evals).
    pub evals_dir: std::path::PathBuf,
    /// Sampling presets for `/preset` (the studio's `presets/`, then the
    /// shipped `assets/presets/`), read at start.
    pub presets: Vec<her_core::sampling_edit::Preset>,
    /// The error that keeps the user from a session (a start or an open that
    /// failed); cleared when a session opens. Quitting without a session
    /// while it is set exits non-zero with it on stderr.
    pub failure: Option<String>,
    /// The rolling summary being written in the background.
    pub summary: Option<crate::tui::screens::chat::summary::SummaryJob>,
    /// The annotation queue, on the annotate screen.
    pub annotate: Option<Box<crate::tui::screens::annotate::AnnotateScreen>>,
    /// Arena seeds and blind order. Seeded by the runtime (fixed in tests),
    /// so `update` is a function of the state and the message.
    pub rng: SplitMix64,
    /// The time of the last clock tick (`Msg::Tick`): `update` reads no clock.
    pub now: Instant,
}

/// A row of the branch tree overlay.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeRowView {
    pub key: String,
    pub depth: usize,
    pub on_active_path: bool,
    pub label: String,
    pub alternatives: usize,
}

impl App {
    pub fn new(keymap: Keymap, theme: Theme, modes: PaneModes) -> Self {
        Self {
            screen: Screen::Characters,
            overlay: None,
            layer_focus: Layer::Input,
            keymap,
            theme,
            composer: Composer::default(),
            editing: None,
            steering: None,
            modes,
            messages: Vec::new(),
            selected: None,
            scroll: 0,
            streaming: None,
            status: Status::default(),
            characters: Picker::default(),
            sessions: Picker::default(),
            character_name: String::new(),
            scene_stem: None,
            engine_loading: false,
            choosing_speaker: false,
            backend_local: true,
            quit: false,
            leave_unsaved: false,
            page: 20,
            tree_rows: Vec::new(),
            chat: None,
            arena: None,
            adapter: None,
            tokens: her_core::story::TokenCounter::estimate(),
            token_candidates: 0,
            runs: Vec::new(),
            runs_dir: std::path::PathBuf::from("runs"),
            evals: Vec::new(),
            evals_dir: std::path::PathBuf::from("evals"),
            presets: Vec::new(),
            failure: None,
            summary: None,
            annotate: None,
            rng: SplitMix64::new(0),
            now: Instant::now(),
        }
    }

    /// The layer that receives keys now.
    pub fn layer(&self) -> Layer {
        match (&self.overlay, &self.screen) {
            (
                Some(
                    Overlay::Tree { .. }
                    | Overlay::Confirm { .. }
                    | Overlay::Runs { .. }
                    | Overlay::Evals { .. },
                ),
                _,
            ) => Layer::List,
            (
                Some(
                    Overlay::Rate(_)
                    | Overlay::Arena
                    | Overlay::RlRate(_)
                    | Overlay::Locked { .. }
                    | Overlay::Tokens(_),
                ),
                _,
            ) => Layer::Dialog,
            (Some(_), _) => Layer::Overlay,
            (None, Screen::Characters | Screen::Sessions) => Layer::List,
            (None, Screen::Chat) => self.layer_focus,
            (None, Screen::Annotate) => Layer::Annotate,
        }
    }

    /// What the transcript shows without copying the history: the saved
    /// messages up to a cut, then the reply being generated (if any).
    pub fn view(&self) -> (&[ShownMessage], Option<ShownMessage>) {
        let Some(s) = &self.streaming else {
            return (&self.messages, None);
        };
        let tail = ShownMessage::streaming(s.speaker.clone(), &s.reply);
        let cut = match &s.target {
            ReplyTarget::After(_) => self.messages.len(),
            ReplyTarget::AlternativeOf(key)
            | ReplyTarget::ContinuationOf { key, .. }
            | ReplyTarget::SteeredFrom { of: key, .. } => self
                .messages
                .iter()
                .position(|m| &m.key == key)
                .unwrap_or(self.messages.len()),
        };
        (&self.messages[..cut], Some(tail))
    }

    /// How many messages the transcript shows.
    pub fn shown_len(&self) -> usize {
        let (saved, tail) = self.view();
        saved.len() + usize::from(tail.is_some())
    }

    /// The reply the panes describe: the selected one, else the newest reply.
    pub fn focused_reply(&self) -> Option<ShownMessage> {
        let (saved, tail) = self.view();
        if let Some(i) = self.selected {
            if let Some(m) = saved.get(i) {
                return Some(m.clone());
            }
            if i == saved.len() {
                return tail;
            }
        }
        if tail.is_some() {
            return tail;
        }
        saved
            .iter()
            .rev()
            .find(|m| m.speaker != crate::tui::model::Speaker::User)
            .cloned()
    }

    pub fn notify(&mut self, text: impl Into<String>, error: bool) {
        self.status.notice = Some((text.into(), error));
    }

    /// An error that leaves the user without a session: shown now, and
    /// reported on exit if no session opens before the user quits.
    pub fn fail(&mut self, text: impl Into<String>) {
        let text = text.into();
        tracing::warn!("{text}");
        self.failure = Some(text.clone());
        self.notify(text, true);
    }

    /// What to report on exit: session changes that could not be saved,
    /// or the failure, unless a session opened after it.
    pub fn exit_failure(&self) -> Option<String> {
        crate::tui::screens::chat::writes::lost_on_exit(self)
            .or_else(|| self.failure.clone().filter(|_| self.chat.is_none()))
    }

    pub fn update_stats(&mut self, stats: &LiveStats) {
        self.status.context_used = stats.context_used;
        self.status.n_ctx = stats.n_ctx;
        self.status.tokens_per_second = stats.tokens_per_second;
    }
}
