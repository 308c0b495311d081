//! The rolling summary: asked of the model in the background when a prompt
//! fills the context past `memory.summary_threshold` or turns had to be
//! dropped, logged as a `summary` event once no reply is being written.

use crate::tui::app::App;
use crate::tui::effect::Effect;
use her_core::story::Summarizer;
use her_core::story::SummarySource;
use her_core::story::memory::{SummaryPrompt, clean_summary};
use her_engine::{Event, FinishReason, GenerateRequest};

/// A summary being written.
pub struct SummaryJob {
    /// The newest message it covers.
    pub upto: String,
    /// Messages it covers (the branch up to `upto`).
    pub messages: usize,
    pub text: String,
    /// The cleaned summary, waiting for the reply in progress to be saved.
    pub done: Option<String>,
    /// The model that wrote it.
    pub model: Option<String>,
}

/// Starts a summary of the active branch up to its `memory.keep_recent`
/// newest messages, if something is not summarised yet. `forced`: asked
/// by `/memory summarize` (says why nothing happens).
pub fn request(app: &mut App, forced: bool) -> Vec<Effect> {
    let busy = app.summary.is_some();
    let Some(chat) = &app.chat else {
        return Vec::new();
    };
    if busy || app.engine_loading {
        if forced {
            app.notify("a summary is already being written", false);
        }
        return Vec::new();
    }
    let (lines, keys) = chat.path_upto(chat.leaf_key().as_deref());
    let keep = chat.story.memory.keep_recent as usize;
    let covered = keys.len().saturating_sub(keep);
    let (log, _) = chat.story_log();
    let previous = log.summary_on(&keys);
    let from = previous
        .and_then(|s| keys.iter().position(|k| *k == s.upto))
        .map_or(0, |i| i + 1);
    if covered == 0 || from >= covered {
        if forced {
            app.notify(
                format!("nothing to summarise: the newest {keep} messages stay as they are (memory.keep_recent)"),
                false,
            );
        }
        return Vec::new();
    }
    let prompt = SummaryPrompt {
        previous: previous.map(|s| s.text.clone()),
        lines: lines[from..covered].to_vec(),
    };
    let mut sampling = chat.sampling.clone();
    sampling.max_new_tokens = chat.story.memory.summary_max_tokens;
    let request = GenerateRequest::new(prompt, sampling);
    let new = covered - from;
    app.summary = Some(SummaryJob {
        upto: keys[covered - 1].clone(),
        messages: covered,
        text: String::new(),
        done: None,
        model: None,
    });
    let by = match chat.story.memory.summarizer {
        Summarizer::Chat => "",
        Summarizer::Judge => " (by the judge model, memory.summarizer)",
    };
    app.notify(
        format!("summarising {new} message(s) into the long-term memory{by}…"),
        false,
    );
    vec![Effect::Summarize(request)]
}

/// After a reply: summarise when the context is filling up or turns were
/// dropped (then the status bar says the dropped turns are being kept).
pub fn after_reply(app: &mut App) -> Vec<Effect> {
    commit_ready(app);
    let Some(chat) = &app.chat else {
        return Vec::new();
    };
    let threshold = chat.story.memory.summary_threshold;
    let dropped = chat.dropped_turns;
    let n_ctx = app.status.n_ctx.max(1);
    let filling = threshold > 0.0 && app.status.context_used as f64 >= threshold * n_ctx as f64;
    if dropped == 0 && !filling {
        return Vec::new();
    }
    let effects = request(app, false);
    if dropped > 0 && app.summary.is_some() {
        app.notify(
            format!(
                "the context is full: the oldest {dropped} turn(s) are left out of the prompt and are being summarised into memory"
            ),
            false,
        );
    }
    effects
}

/// One event of the summary's generation.
pub fn on_event(app: &mut App, event: Event) {
    let Some(job) = &mut app.summary else {
        return;
    };
    match event {
        Event::Text(piece) => job.text.push_str(&piece),
        Event::Finished(done) if done.reason == FinishReason::Cancelled => {
            app.summary = None;
            app.notify(
                "the summary was cancelled; it is asked again when the context fills",
                false,
            );
        }
        Event::Finished(done) => {
            job.model = Some(done.provenance.model.clone());
            let text = clean_summary(&job.text);
            if text.is_empty() {
                app.summary = None;
                app.notify("the model wrote an empty summary; nothing was saved", true);
                return;
            }
            job.done = Some(text);
            commit_ready(app);
        }
        Event::Failed(err) => {
            app.summary = None;
            app.notify(format!("the summary could not be written: {err}"), true);
        }
        Event::Started(_) | Event::Stats(_) => {}
    }
}

/// Logs a finished summary once no reply or arena round is in progress (a
/// reply is recorded with the memory its prompt was built from).
pub fn commit_ready(app: &mut App) {
    if app.streaming.is_some() || app.arena.is_some() {
        return;
    }
    let ready = app.summary.as_ref().is_some_and(|j| j.done.is_some());
    if !ready {
        return;
    }
    let Some(job) = app.summary.take() else {
        return;
    };
    let Some(chat) = &mut app.chat else {
        return;
    };
    if chat.session.tree().find(&job.upto).is_none() {
        // Another session was opened meanwhile.
        return;
    }
    let text = job.done.unwrap_or_default();
    match chat.save_summary(&text, &job.upto, SummarySource::Model, job.model.as_deref()) {
        Ok(()) => {
            // The summarised turns leave the prompt: the turns the engine
            // dropped before no longer line up with the history.
            chat.dropped_turns = 0;
            app.notify(
                format!(
                    "summary written: the story's first {} message(s) stay in memory (/memory)",
                    job.messages
                ),
                false,
            );
        }
        Err(err) => app.notify(format!("the summary could not be saved: {err}"), true),
    }
}
