//! `her annotate QUEUE.jsonl`: a keyboard-only annotation screen. Each
//! answer is appended to the annotator's own log as it is given, so quitting
//! (or a crash) loses nothing and the next sitting resumes where this one
//! stopped; several annotators label the same queue into separate logs.

mod state;
mod view;

use std::collections::HashSet;
use std::path::PathBuf;

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

pub use state::{AnnotateState, Step};

use crate::config::SamplingConfig;
use crate::engine::{Backend, GenerateRequest};
use crate::format::PREFILL;
use crate::prefs::queue::{AnnotationRun, QueueCandidate, read_queue, remove_record};
use crate::prefs::sessions::provenance;
use crate::prefs::{ContextMessage, append_to_log, read_log};
use crate::tui::terminal::TerminalGuard;
use crate::tui::theme::Theme;

/// What `run` needs from the studio.
pub struct AnnotateSetup {
    pub queue: PathBuf,
    pub annotator: String,
    pub log: PathBuf,
    pub theme: Theme,
    pub sampling: SamplingConfig,
}

/// How the sitting ended, for the line printed afterwards.
pub struct Sitting {
    pub answered: usize,
    pub total: usize,
    pub log: PathBuf,
}

/// Runs the annotation screen. `start_engine` is called only if an item
/// has no candidates and two must be written.
pub fn run(
    setup: &AnnotateSetup,
    start_engine: impl FnOnce() -> anyhow::Result<Box<dyn Backend>>,
) -> anyhow::Result<Sitting> {
    let items = read_queue(&setup.queue)?;
    if let Some(dir) = setup.log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let already = if setup.log.exists() {
        let contents = read_log(&setup.log)?;
        // Printed before the screen opens, so they are there after it closes.
        for note in contents.notes(&setup.log) {
            eprintln!("note: {note}");
            tracing::warn!("{note}");
        }
        contents.records
    } else {
        Vec::new()
    };
    let run = AnnotationRun::new(items, &setup.annotator, &already);
    let name = setup
        .queue
        .file_name()
        .map_or("queue".into(), |n| n.to_string_lossy().into_owned());
    let mut state = AnnotateState::new(run, name);
    let mut engine = Some(start_engine);
    let mut started: Option<Box<dyn Backend>> = None;
    // Items whose candidates could not be written are not retried.
    let mut failed: HashSet<String> = HashSet::new();
    let mut guard = TerminalGuard::enter()?;
    loop {
        let waiting = state
            .run
            .current()
            .filter(|i| i.candidates.is_empty())
            .map(|i| i.id.clone());
        if let Some(id) = waiting.filter(|id| !failed.contains(id)) {
            guard.terminal.draw(|f| {
                view::draw(
                    f,
                    &state,
                    &setup.theme,
                    Some("writing two candidates for this context …"),
                )
            })?;
            if started.is_none()
                && let Some(start) = engine.take()
            {
                started = Some(start()?);
            }
            if let Some(engine) = &started
                && !supply(&mut state, engine.as_ref(), &setup.sampling)
            {
                failed.insert(id);
            }
            continue;
        }
        let status = state.needs_candidates().then_some(
            "No candidates could be written for the items left (see below). s: skip · q: quit",
        );
        guard
            .terminal
            .draw(|f| view::draw(f, &state, &setup.theme, status))?;
        let Some(key) = next_key()? else {
            continue;
        };
        match state.key(key) {
            Step::Nothing => {}
            Step::Quit => break,
            Step::Save(record) => {
                if let Err(err) = append_to_log(&setup.log, std::slice::from_ref(&*record)) {
                    // Not saved: take the answer back so the screen does not lie.
                    state.run.undo();
                    state.notice = Some((err.to_string(), true));
                }
            }
            Step::Retract(id) => {
                if let Err(err) = remove_record(&setup.log, &id) {
                    state.notice = Some((err.to_string(), true));
                }
            }
        }
    }
    drop(guard);
    let (answered, total) = state.run.progress();
    Ok(Sitting {
        answered,
        total,
        log: setup.log.clone(),
    })
}

/// A key as the state machine's character (arrows are the A/B keys).
fn next_key() -> std::io::Result<Option<char>> {
    let Event::Key(key) = event::read()? else {
        return Ok(None);
    };
    if key.kind == KeyEventKind::Release {
        return Ok(None);
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Ok(Some('q'));
    }
    Ok(match key.code {
        KeyCode::Char(c) => Some(c),
        KeyCode::Esc => Some('\u{1b}'),
        KeyCode::Left => Some('a'),
        KeyCode::Right => Some('b'),
        KeyCode::Down => Some('j'),
        KeyCode::Up => Some('k'),
        _ => None,
    })
}

/// Writes two candidates with different seeds for the current item; on
/// failure the item is skipped with a notice and `false` returned.
fn supply(state: &mut AnnotateState, engine: &dyn Backend, sampling: &SamplingConfig) -> bool {
    let Some(item) = state.run.current() else {
        return true;
    };
    let prompt = chatml_prompt(&item.context);
    let result = (|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut candidates = Vec::new();
        for offset in [0u32, 1] {
            let sampling = SamplingConfig {
                seed: sampling.seed.wrapping_add(offset.wrapping_mul(7919)),
                // Greedy decoding would write the same reply twice.
                temperature: if sampling.temperature > 0.0 {
                    sampling.temperature
                } else {
                    0.7
                },
                ..sampling.clone()
            };
            let request = GenerateRequest::new(prompt.clone(), sampling);
            let outcome = runtime.block_on(crate::chat::stream_reply(engine, request, |_| {}))?;
            candidates.push(QueueCandidate {
                text: format!("{PREFILL}{}", outcome.reply),
                label: Some(format!("seed {}", outcome.finished.provenance.seed)),
                provenance: Some(provenance(prompt.clone(), &outcome.finished.provenance)),
            });
        }
        let second = candidates.pop();
        let first = candidates.pop();
        match (first, second) {
            (Some(a), Some(b)) => state
                .run
                .supply_candidates(a, b)
                .map_err(anyhow::Error::from),
            _ => Err(anyhow::anyhow!("the model wrote no candidates")),
        }
    })();
    match result {
        Ok(()) => true,
        Err(err) => {
            state.run.skip();
            state.notice = Some((
                format!("could not write candidates: {err:#}; skipped"),
                true,
            ));
            false
        }
    }
}

/// The context as a ChatML prompt with HER's assistant prefill.
pub fn chatml_prompt(context: &[ContextMessage]) -> String {
    let mut out = String::new();
    for m in context {
        out.push_str(&format!(
            "<|im_start|>{}\n{}<|im_end|>\n",
            m.role.as_str(),
            m.content
        ));
    }
    out.push_str("<|im_start|>assistant\n");
    out.push_str(PREFILL);
    out
}
