//! Effects become work: engine calls are futures that answer with a
//! message (nothing awaits the engine here, so the screen stays live while
//! an adapter or a model loads); quick file work answers at once.

use std::collections::VecDeque;
use std::path::PathBuf;

use futures::FutureExt;
use futures::future::LocalBoxFuture;
use futures::stream::FuturesUnordered;

use super::editor::edit_externally;
use super::open;
use crate::app::AppContext;
use crate::engine::{Backend, EngineError, Event, EventStream, LocalEngine, ModelInfo};
use crate::session::{ExportOptions, export};
use crate::tui::effect::{AdapterFor, Effect};
use crate::tui::message::Msg;
use crate::tui::terminal::TerminalGuard;

/// An engine that took the place of the old one (and, when the new model
/// failed, why the old one is back), or why neither loads.
type Loaded = Result<(Box<dyn Backend>, Option<String>), String>;

pub struct Runtime<'a> {
    cx: &'a AppContext,
    /// None while `/model` loads another model.
    engine: Option<Box<dyn Backend>>,
    /// What the engine runs (the last one, while another loads).
    pub model: ModelInfo,
    /// The reply (or arena candidate) being generated.
    pub generation: Option<EventStream>,
    /// The rolling summary being generated.
    pub summary: Option<EventStream>,
    pub jobs: FuturesUnordered<LocalBoxFuture<'static, Msg>>,
    pub loading: Option<LocalBoxFuture<'static, Loaded>>,
    /// Messages for `update`, in order.
    pub inbox: VecDeque<Msg>,
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

/// The text of a whole generation (`None`: it failed).
async fn collect_text(mut stream: EventStream) -> Option<String> {
    let mut text = String::new();
    while let Some(event) = stream.next().await {
        match event {
            Event::Text(piece) => text.push_str(&piece),
            Event::Finished(_) => return Some(text),
            Event::Failed(_) => return None,
            Event::Started(_) | Event::Stats(_) => {}
        }
    }
    None
}

impl<'a> Runtime<'a> {
    pub fn new(cx: &'a AppContext, engine: Box<dyn Backend>) -> Self {
        Self {
            cx,
            model: engine.model_info(),
            engine: Some(engine),
            generation: None,
            summary: None,
            jobs: FuturesUnordered::new(),
            loading: None,
            inbox: VecDeque::new(),
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

    fn start(&mut self, guard: &mut TerminalGuard, effect: Effect) {
        let cx = self.cx;
        let answer = match effect {
            Effect::Generate(request) => {
                self.generation = self.engine.as_ref().map(|e| e.generate(request));
                self.generation
                    .is_none()
                    .then(|| Msg::Engine(Event::Failed(EngineError::EngineStopped)))
            }
            Effect::Summarize(request) => {
                self.summary = self.engine.as_ref().map(|e| e.generate(request));
                self.summary
                    .is_none()
                    .then(|| Msg::Summary(Event::Failed(EngineError::EngineStopped)))
            }
            Effect::AskSpeaker {
                request,
                parent,
                choices,
            } => {
                let stream = self.engine.as_ref().map(|e| e.generate(request));
                self.job(async move {
                    let answer = match stream {
                        Some(stream) => collect_text(stream).await,
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
            } => Some(Msg::SessionOpened {
                result: open::open_session(cx, &self.model, &opening, &cast, open_now.as_deref()),
                opening,
            }),
            Effect::TrashSession { path, reopen } => Some(Msg::SessionTrashed {
                result: open::trash(&path),
                reopen,
            }),
            Effect::ListRuns(dir) => Some(Msg::RunsListed(crate::train::runs::list_runs(&dir))),
            Effect::ListEvals(dir) => Some(Msg::EvalsListed(crate::eval::list_results(&dir))),
            Effect::FindRlAsk(run) => Some(Msg::RlAsk {
                ask: crate::train::rl::human::pending(&run),
                run,
            }),
            Effect::SendRlAnswer { run, answer } => Some(Msg::RlAnswerSent {
                step: answer.step,
                result: crate::train::rl::human::respond(&run, &answer).map_err(|e| e.to_string()),
            }),
            Effect::CheckModel(path) => Some(Msg::ModelChecked {
                result: crate::engine::local::check_model_file(&path)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                path,
            }),
            Effect::SwitchModel(path) => {
                self.switch_model(path);
                None
            }
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
        let previous = self.model.path.clone();
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

    /// The engine is back after `/model`; an error means neither model
    /// loads, which ends the TUI.
    pub fn engine_back(&mut self, loaded: Loaded) -> std::io::Result<()> {
        let (engine, error) = loaded.map_err(std::io::Error::other)?;
        let info = engine.model_info();
        self.model = info.clone();
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
        crate::train::export::adapter_of_run(&path).map_err(|e| e.to_string())
    } else {
        Ok(path)
    }
}
