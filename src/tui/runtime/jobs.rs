//! Effects become work: engine calls are futures that answer with a
//! message (nothing awaits the engine here, so the screen stays live while
//! an adapter or a model loads); quick file work answers at once.

use std::collections::VecDeque;
use std::path::PathBuf;

use futures::FutureExt;
use futures::future::LocalBoxFuture;
use futures::stream::FuturesUnordered;

use crate::app::AppContext;
use crate::tui::effect::{AdapterFor, Effect};
use crate::tui::message::{Msg, OpenFailure};
use crate::tui::runtime::editor::edit_externally;
use crate::tui::runtime::{books, open};
use crate::tui::screens::annotate::update::candidate_samplings;
use crate::tui::terminal::TerminalGuard;
use her_core::format::PREFILL;
use her_core::prefs::queue::{QueueCandidate, remove_record};
use her_core::prefs::sessions::provenance;
use her_core::session::{ExportOptions, SessionFile, export};
use her_core::story::TokenCounter;
use her_engine::{
    Backend, EngineError, Event, EventStream, Finished, GenerateRequest, LocalEngine, ModelInfo,
};

/// An engine that took the place of the old one (and, when the new model
/// failed, why the old one is back), or why neither loads.
type Loaded = Result<(Box<dyn Backend>, Option<String>), String>;
/// The summariser's backend once started, and the request that waited for it.
pub type SummarizerLoaded = (Result<Box<dyn Backend>, String>, GenerateRequest);

/// Starts the engine when it is first needed.
pub type Starter<'a> = Box<dyn FnOnce() -> Result<Box<dyn Backend>, String> + 'a>;

/// The engine the TUI starts with: loaded, or started on first need
/// (`her annotate` needs one only for items without candidates).
pub enum EngineSlot<'a> {
    Ready(Box<dyn Backend>),
    Lazy(Starter<'a>),
}

pub struct Runtime<'a> {
    cx: &'a AppContext,
    /// None while `/model` loads another model, or before a lazy start.
    engine: Option<Box<dyn Backend>>,
    starter: Option<Starter<'a>>,
    /// Effects that wait for the lazy start.
    waiting: Vec<Effect>,
    /// What the engine runs (the last one, while another loads).
    pub model: Option<ModelInfo>,
    /// The reply (or arena candidate) being generated.
    pub generation: Option<EventStream>,
    /// The rolling summary being generated.
    pub summary: Option<EventStream>,
    /// The judge writing summaries (`memory.summarizer = "judge"`), once
    /// started; it stays for the next summary.
    summarizer: Option<Box<dyn Backend>>,
    /// The judge starting, off the loop, with the summary request it is for.
    pub summarizer_loading: Option<LocalBoxFuture<'static, SummarizerLoaded>>,
    pub jobs: FuturesUnordered<LocalBoxFuture<'static, Msg>>,
    pub loading: Option<LocalBoxFuture<'static, Loaded>>,
    /// Messages for `update`, in order.
    pub inbox: VecDeque<Msg>,
    /// The file of the session open in this window (None: none, or read-only).
    session: Option<SessionFile>,
}

/// Waits for the summariser to start, or forever when none is starting.
pub async fn wait_summarizer(
    loading: &mut Option<LocalBoxFuture<'static, SummarizerLoaded>>,
) -> SummarizerLoaded {
    let loaded = match loading {
        Some(job) => job.await,
        None => std::future::pending().await,
    };
    *loading = None;
    loaded
}

/// Waits for the model `/model` loads, or forever when none is loading.
pub async fn wait_loading(loading: &mut Option<LocalBoxFuture<'static, Loaded>>) -> Loaded {
    let loaded = match loading {
        Some(job) => job.await,
        None => std::future::pending().await,
    };
    *loading = None;
    loaded
}

/// The text of a whole generation and how it ended.
async fn collect(mut stream: EventStream) -> Result<(String, Finished), EngineError> {
    let mut text = String::new();
    while let Some(event) = stream.next().await {
        match event {
            Event::Text(piece) => text.push_str(&piece),
            Event::Finished(finished) => return Ok((text, finished)),
            Event::Failed(err) => return Err(err),
            Event::Started(_) | Event::Stats(_) => {}
        }
    }
    Err(EngineError::EngineStopped)
}

/// Two generations for an annotation item, as queue candidates.
async fn write_candidates(
    prompt: String,
    streams: Vec<EventStream>,
) -> Result<(QueueCandidate, QueueCandidate), String> {
    let mut written = Vec::new();
    for stream in streams {
        let (text, finished) = collect(stream).await.map_err(|e| e.to_string())?;
        written.push(QueueCandidate {
            text: format!("{PREFILL}{text}"),
            label: Some(format!("seed {}", finished.provenance.seed)),
            provenance: Some(provenance(prompt.clone(), &finished.provenance)),
        });
    }
    let second = written.pop();
    let first = written.pop();
    match (first, second) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err("the model wrote no candidates".into()),
    }
}

impl<'a> Runtime<'a> {
    pub fn new(cx: &'a AppContext, engine: EngineSlot<'a>) -> Self {
        let (engine, starter) = match engine {
            EngineSlot::Ready(engine) => (Some(engine), None),
            EngineSlot::Lazy(start) => (None, Some(start)),
        };
        Self {
            cx,
            model: engine.as_ref().map(|e| e.model_info()),
            engine,
            starter,
            waiting: Vec::new(),
            generation: None,
            summary: None,
            summarizer: None,
            summarizer_loading: None,
            jobs: FuturesUnordered::new(),
            loading: None,
            inbox: VecDeque::new(),
            session: None,
        }
    }

    /// Stops what is generating, before the TUI closes.
    pub fn stop(&mut self) {
        if self.generation.take().is_some()
            && let Some(engine) = &self.engine
        {
            engine.cancel();
        }
    }

    pub fn start_all(&mut self, guard: &mut TerminalGuard, effects: Vec<Effect>) {
        for effect in effects {
            self.start(guard, effect);
        }
    }

    fn job(&mut self, future: impl Future<Output = Msg> + 'static) {
        self.jobs.push(future.boxed_local());
    }

    /// File work that may take a while (exporting a checkpoint), off the loop.
    fn blocking(&mut self, work: impl FnOnce() -> Msg + Send + 'static, failed: fn(String) -> Msg) {
        let handle = tokio::task::spawn_blocking(work);
        self.job(async move { handle.await.unwrap_or_else(|e| failed(e.to_string())) });
    }

    /// Starts the engine that effects wait for (after a draw, so the screen
    /// says what is being done). A start that fails ends the TUI.
    pub fn start_lazy_engine(&mut self, guard: &mut TerminalGuard) -> std::io::Result<()> {
        if self.waiting.is_empty() {
            return Ok(());
        }
        let Some(start) = self.starter.take() else {
            return Ok(());
        };
        let engine = start().map_err(std::io::Error::other)?;
        self.model = Some(engine.model_info());
        self.engine = Some(engine);
        let waiting = std::mem::take(&mut self.waiting);
        self.start_all(guard, waiting);
        Ok(())
    }

    fn start(&mut self, guard: &mut TerminalGuard, effect: Effect) {
        if effect.needs_engine() && self.engine.is_none() && self.starter.is_some() {
            self.waiting.push(effect);
            return;
        }
        let cx = self.cx;
        let answer = match effect {
            Effect::Generate(request) => {
                self.generation = self.engine.as_ref().map(|e| e.generate(request));
                self.generation
                    .is_none()
                    .then_some(Msg::Engine(Event::Failed(EngineError::EngineStopped)))
            }
            Effect::Summarize(request) => self.summarize(request),
            Effect::AskSpeaker {
                request,
                parent,
                choices,
            } => {
                let stream = self.engine.as_ref().map(|e| e.generate(request));
                self.job(async move {
                    let answer = match stream {
                        Some(stream) => collect(stream).await.ok().map(|(text, _)| text),
                        None => None,
                    };
                    Msg::SpeakerAnswer {
                        parent,
                        answer,
                        choices,
                    }
                });
                None
            }
            Effect::Cancel => {
                if let Some(engine) = &self.engine {
                    engine.cancel();
                }
                None
            }
            Effect::OpenEditor(text) => Some(Msg::EditorClosed(
                edit_externally(guard, &text).map_err(|e| e.to_string()),
            )),
            Effect::LoadAdapter { path, scale, for_ } => {
                let pending = self.engine.as_ref().map(|e| e.load_adapter(path, scale));
                self.job(async move {
                    match pending {
                        Some(pending) => match pending.await {
                            Ok(info) => Msg::AdapterLoaded { info, scale, for_ },
                            Err(err) => adapter_failed(for_, &err),
                        },
                        None => adapter_failed(for_, &EngineError::EngineStopped),
                    }
                });
                None
            }
            Effect::ClearAdapter { for_ } => {
                let pending = self.engine.as_ref().map(|e| e.clear_adapter());
                self.job(async move {
                    match pending {
                        Some(pending) => match pending.await {
                            Ok(()) => Msg::AdapterCleared { for_ },
                            Err(err) => adapter_failed(for_, &err),
                        },
                        None => adapter_failed(for_, &EngineError::EngineStopped),
                    }
                });
                None
            }
            Effect::FindRunAdapter(path) => {
                self.blocking(
                    move || Msg::RunAdapter(run_adapter(path)),
                    |e| Msg::RunAdapter(Err(e)),
                );
                None
            }
            Effect::CountTokens { preface, parts } => {
                let pending: Option<Vec<_>> = self
                    .engine
                    .as_ref()
                    .map(|e| parts.iter().map(|p| e.tokenize(p.text.clone())).collect());
                self.job(async move {
                    let mut counts = Vec::new();
                    for tokens in pending.unwrap_or_default() {
                        counts.push(tokens.await.map_or(0, |t| t.len()));
                    }
                    counts.resize(parts.len(), 0);
                    Msg::PromptCounted {
                        preface,
                        parts,
                        counts,
                    }
                });
                None
            }
            Effect::ListCharacters => Some(open::list_characters_msg(cx)),
            Effect::OpenCharacter { name, then } => Some(Msg::CharacterOpened {
                result: open::open_character(cx, &name),
                then,
            }),
            Effect::OpenSession {
                opening,
                cast,
                open_now,
            } => {
                let result = match &self.model {
                    Some(model) => {
                        open::open_session(cx, model, &opening, &cast, open_now.as_deref())
                    }
                    None => Err(OpenFailure::Failed("no model is loaded".into())),
                };
                // The new session's file replaces the old one (and its lock).
                let result = result.map(|(opened, file)| {
                    self.session = file;
                    opened
                });
                Some(Msg::SessionOpened { result, opening })
            }
            Effect::TrashSession { path, reopen } => {
                // Closed first: this window's lock would keep it in place.
                if self
                    .session
                    .as_ref()
                    .is_some_and(|f| open::same_file(f.path(), &path))
                {
                    self.session = None;
                }
                Some(Msg::SessionTrashed {
                    result: open::trash(&path),
                    reopen,
                })
            }
            Effect::Append { path, events } => Some(crate::tui::runtime::append::append(
                self.session.as_mut(),
                path,
                &events,
            )),
            Effect::ListRuns(dir) => Some(Msg::RunsListed(her_train::runs::list_runs(&dir))),
            Effect::ListEvals(dir) => Some(Msg::EvalsListed(her_eval::list_results(&dir))),
            Effect::FindRlAsk(run) => Some(Msg::RlAsk {
                ask: her_train::rl::human::pending(&run),
                run,
            }),
            Effect::SendRlAnswer { run, answer } => Some(Msg::RlAnswerSent {
                step: answer.step,
                result: her_train::rl::human::respond(&run, &answer).map_err(|e| e.to_string()),
            }),
            Effect::CheckModel(path) => Some(Msg::ModelChecked {
                result: her_engine::local::check_model_file(&path)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                path,
            }),
            Effect::SwitchModel(path) => {
                self.switch_model(path);
                None
            }
            Effect::LoadVocab(path) => {
                self.blocking(
                    move || match her_engine::local::Vocab::load(&path) {
                        Ok(vocab) => Msg::TokensReady(std::sync::Arc::new(vocab).counter(), None),
                        Err(err) => {
                            Msg::TokensReady(TokenCounter::estimate(), Some(err.to_string()))
                        }
                    },
                    |err| Msg::TokensReady(TokenCounter::estimate(), Some(err)),
                );
                None
            }
            Effect::WriteCandidates {
                item,
                prompt,
                sampling,
            } => {
                let streams: Option<Vec<EventStream>> = self.engine.as_ref().map(|e| {
                    candidate_samplings(&sampling)
                        .into_iter()
                        .map(|s| e.generate(GenerateRequest::new(prompt.clone(), s)))
                        .collect()
                });
                self.job(async move {
                    let result = match streams {
                        Some(streams) => write_candidates(prompt, streams).await,
                        None => Err(EngineError::EngineStopped.to_string()),
                    };
                    Msg::CandidatesWritten { item, result }
                });
                None
            }
            Effect::AppendRecord { log, record } => {
                her_core::prefs::append_to_log(&log, std::slice::from_ref(&*record))
                    .err()
                    .map(|e| Msg::RecordAppendFailed(e.to_string()))
            }
            Effect::RetractRecord { log, id } => remove_record(&log, &id)
                .err()
                .map(|e| Msg::RecordRetractFailed(e.to_string())),
            Effect::LoadBooks {
                session,
                lore_dir,
                names,
                attach,
            } => Some(books::load(session, &lore_dir, &names, attach)),
            Effect::ListBooks(lore_dir) => Some(books::list(lore_dir)),
            Effect::Export {
                session,
                format,
                to,
            } => Some(Msg::Exported(
                export(&session, format, ExportOptions::default(), &to)
                    .map(|_| to)
                    .map_err(|e| e.to_string()),
            )),
        };
        self.inbox.extend(answer);
    }

    /// One model in memory at a time: the old one goes, the new one loads
    /// off the loop (the previous one again if the new one fails).
    fn switch_model(&mut self, path: PathBuf) {
        self.generation = None;
        self.summary = None;
        let old = self.engine.take();
        if let Some(engine) = &old {
            engine.cancel();
        }
        let mut options = self.cx.engine_options();
        let previous = self
            .model
            .as_ref()
            .map(|m| m.path.clone())
            .unwrap_or_default();
        let handle = tokio::task::spawn_blocking(move || {
            drop(old);
            options.model_path = path;
            match LocalEngine::start(options.clone()) {
                Ok(new) => Ok((Box::new(new) as Box<dyn Backend>, None)),
                Err(err) => {
                    options.model_path = previous;
                    let old = LocalEngine::start(options).map_err(|e| e.to_string())?;
                    Ok((Box::new(old) as Box<dyn Backend>, Some(err.to_string())))
                }
            }
        });
        self.loading =
            Some(async move { handle.await.unwrap_or_else(|e| Err(e.to_string())) }.boxed_local());
    }

    /// The rolling summary, by the chat model or (`memory.summarizer =
    /// "judge"`) by the judge, which starts off the loop the first time.
    fn summarize(&mut self, request: GenerateRequest) -> Option<Msg> {
        if let Some(judge) = &self.summarizer {
            self.summary = Some(judge.generate(request));
            return None;
        }
        let Some(start) = self.cx.summarizer_starter() else {
            self.summary = self.engine.as_ref().map(|e| e.generate(request));
            return self
                .summary
                .is_none()
                .then_some(Msg::Summary(Event::Failed(EngineError::EngineStopped)));
        };
        if self.summarizer_loading.is_some() {
            return None;
        }
        let handle = tokio::task::spawn_blocking(move || start().map_err(|e| e.to_string()));
        self.summarizer_loading = Some(
            async move {
                let started = handle.await.unwrap_or_else(|e| Err(e.to_string()));
                (started, request)
            }
            .boxed_local(),
        );
        None
    }

    /// The judge started for a summary: it writes the one that waited.
    pub fn summarizer_back(&mut self, (started, request): SummarizerLoaded) {
        match started {
            Ok(judge) => {
                self.summary = Some(judge.generate(request));
                self.summarizer = Some(judge);
            }
            Err(error) => self.inbox.push_back(Msg::SummarizerFailed(format!(
                "the judge model could not start: {error}"
            ))),
        }
    }

    /// The engine is back after `/model`; an error means neither model
    /// loads, which ends the TUI.
    pub fn engine_back(&mut self, loaded: Loaded) -> std::io::Result<()> {
        let (engine, error) = loaded.map_err(std::io::Error::other)?;
        let info = engine.model_info();
        self.model = Some(info.clone());
        self.engine = Some(engine);
        self.inbox.push_back(match error {
            None => Msg::ModelLoaded {
                info,
                switched: true,
            },
            Some(error) => Msg::ModelLoadFailed { error, kept: info },
        });
        Ok(())
    }
}

fn adapter_failed(for_: AdapterFor, err: &EngineError) -> Msg {
    Msg::AdapterFailed {
        for_,
        error: err.to_string(),
    }
}

/// A LoRA GGUF as it is; a training run or checkpoint folder: its adapter.
fn run_adapter(path: PathBuf) -> Result<PathBuf, String> {
    if path.is_dir() {
        her_train::export::adapter_of_run(&path).map_err(|e| e.to_string())
    } else {
        Ok(path)
    }
}
