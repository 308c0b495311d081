//! A reply: who answers, the request the engine gets, the stream as it
//! arrives, and the finished reply saved where its target says.

use crate::tui::app::{App, ReplyTarget, Streaming};
use crate::tui::effect::Effect;
use crate::tui::screens::chat::session::ReplyChoices;
use crate::tui::screens::chat::update::refresh;
use her_core::format::{Ending, LintContext, StreamedReply, lint, parse_reply};
use her_core::prompt::next_speaker::{
    next_speaker_prompt, parse_next_speaker, round_robin, speaker_grammar,
};
use her_engine::{Event, FinishReason, GenerateRequest};

/// `@Name rest` → (the speaker whose name starts with `Name`, rest).
pub(crate) fn pick_speaker(speakers: &[String], text: &str) -> (Option<String>, String) {
    let Some(rest) = text.trim_start().strip_prefix('@') else {
        return (None, text.to_string());
    };
    let lower = rest.to_lowercase();
    // The longest name that the text starts with wins ("Mr. Darcy" over "Mr.").
    let found = speakers
        .iter()
        .filter(|s| lower.starts_with(&s.to_lowercase()))
        .max_by_key(|s| s.len())
        .or_else(|| {
            let word = lower.split_whitespace().next().unwrap_or_default();
            // Or any word of a name: "@darcy" finds "Mr. Darcy".
            speakers.iter().find(|s| {
                !word.is_empty()
                    && s.to_lowercase()
                        .split_whitespace()
                        .any(|w| w.trim_matches('.').starts_with(word))
            })
        });
    match found {
        Some(name) => {
            let skip = if lower.starts_with(&name.to_lowercase()) {
                name.len()
            } else {
                lower.split_whitespace().next().map_or(0, str::len)
            };
            (
                Some(name.clone()),
                rest[skip.min(rest.len())..].trim_start().to_string(),
            )
        }
        None => (None, text.to_string()),
    }
}

/// Someone answers after `parent`: the character, or in a scene whoever the
/// scene's policy picks (the model-picked case needs the engine: an effect).
pub fn answer(app: &mut App, parent: Option<String>) -> Vec<Effect> {
    let Some(chat) = &app.chat else {
        return Vec::new();
    };
    let Some(scene) = &chat.scene else {
        let name = chat.character.name.clone();
        return start_reply(app, ReplyTarget::After(parent), &name);
    };
    if scene.next_speaker == her_core::character::NextSpeaker::Model {
        return ask_speaker(app, parent);
    }
    let last = app.messages.last().map(|m| m.name.clone());
    let next = round_robin(&chat.speakers(), last.as_deref());
    match next {
        Some(name) => start_reply(app, ReplyTarget::After(parent), &name),
        None => Vec::new(),
    }
}

/// Asks the model who speaks next, constrained to the cast's names (not
/// the one who spoke last, when there is a choice).
fn ask_speaker(app: &mut App, parent: Option<String>) -> Vec<Effect> {
    let Some(chat) = &app.chat else {
        return Vec::new();
    };
    let Some(scene) = &chat.scene else {
        return Vec::new();
    };
    let speakers = chat.speakers();
    let last = app.messages.last().map(|m| m.name.clone());
    let choices: Vec<String> = if speakers.len() > 1 {
        speakers
            .iter()
            .filter(|s| Some(*s) != last.as_ref())
            .cloned()
            .collect()
    } else {
        speakers
    };
    let prompt = next_speaker_prompt(
        &scene.book,
        &scene.scenario,
        &choices,
        &chat.active_lines(),
        8,
    );
    let mut sampling = chat.sampling.clone();
    sampling.max_new_tokens = 16;
    let mut request = GenerateRequest::new(prompt, sampling);
    request.grammar = Some(speaker_grammar(&choices));
    app.choosing_speaker = true;
    vec![Effect::AskSpeaker {
        request,
        parent,
        choices,
    }]
}

/// The model's answer to "who speaks next": the named speaker answers, or
/// the next in turn when the answer names nobody.
pub fn speaker_chosen(
    app: &mut App,
    parent: Option<String>,
    answer: Option<String>,
    choices: &[String],
) -> Vec<Effect> {
    app.choosing_speaker = false;
    let Some(chat) = &app.chat else {
        return Vec::new();
    };
    let last = app.messages.last().map(|m| m.name.clone());
    let name = answer.and_then(|answer| {
        parse_next_speaker(&answer, choices)
            .or_else(|| round_robin(&chat.speakers(), last.as_deref()))
    });
    match name {
        Some(name) => start_reply(app, ReplyTarget::After(parent), &name),
        None => {
            app.notify("nobody in this scene can speak", true);
            Vec::new()
        }
    }
}

/// Builds the prompt for `target` and asks the runtime to generate.
pub fn start_reply(app: &mut App, target: ReplyTarget, speaker: &str) -> Vec<Effect> {
    let Some(chat) = &app.chat else {
        return Vec::new();
    };
    if app.engine_loading {
        app.notify("a model is loading: wait for it before generating", true);
        return Vec::new();
    }
    // A reply that could not be saved would be lost: refuse before generating.
    if let Some(reason) = &chat.read_only {
        let text = crate::tui::screens::chat::update::read_only_notice(reason);
        app.notify(text, true);
        return Vec::new();
    }
    let (prompt, prefix) = match chat.prompt_for(&target, speaker) {
        Ok(p) => p,
        Err(err) => {
            app.notify(err.to_string(), true);
            return Vec::new();
        }
    };
    let sampling =
        her_engine::dialogue::character_sampling(chat.sampling.clone(), chat.member(speaker));
    let request = GenerateRequest {
        prompt,
        sampling,
        min_skip: chat.dropped_turns,
        grammar: None,
        candidates: app.token_candidates,
    };
    let mut reply = StreamedReply::default();
    reply.push(&prefix);
    app.streaming = Some(Streaming {
        target,
        speaker: speaker.to_string(),
        reply,
        prefix_len: prefix.len(),
        started: app.now,
    });
    app.selected = None;
    app.scroll = 0;
    vec![Effect::Generate(request)]
}

/// Applies one engine event to the reply being generated (or to the arena
/// candidate being written); returns what to do next.
pub fn on_engine(app: &mut App, event: Event) -> Vec<Effect> {
    if app.streaming.is_none() && app.arena.is_some() {
        return crate::tui::overlays::arena::update::on_engine(app, event);
    }
    match event {
        Event::Started(s) => {
            app.status.context_used = s.prompt_tokens;
            if let Some(chat) = &mut app.chat {
                chat.dropped_turns = s.dropped_turns;
            }
            if s.dropped_turns > 0 {
                app.notify(
                    format!(
                        "the context is full: the oldest {} turns are left out of the prompt",
                        s.dropped_turns
                    ),
                    false,
                );
            }
        }
        Event::Text(piece) => {
            if let Some(s) = &mut app.streaming {
                s.reply.push(&piece);
            }
        }
        Event::Stats(stats) => app.update_stats(&stats),
        Event::Finished(done) => {
            app.status.context_used = done.stats.context_used;
            app.status.tokens_per_second = done.stats.tokens_per_second;
            if let Some(notice) = unapplied_notice(&done.provenance.unapplied) {
                app.notify(notice, true);
            }
            finish_reply(app, Some(done));
            return crate::tui::screens::chat::summary::after_reply(app);
        }
        Event::Failed(err) => {
            app.notify(err.to_string(), true);
            finish_reply(app, None);
        }
    }
    Vec::new()
}

/// The status bar's word on settings the backend did not apply to a reply.
pub fn unapplied_notice(unapplied: &[String]) -> Option<String> {
    (!unapplied.is_empty()).then(|| {
        format!(
            "the server did not apply {}: the reply was sampled without them",
            unapplied.join(", ")
        )
    })
}

fn finish_reply(app: &mut App, done: Option<her_engine::Finished>) {
    let Some(streaming) = app.streaming.take() else {
        return;
    };
    let raw = streaming.reply.raw();
    let natural = done.as_ref().is_some_and(|d| {
        matches!(
            d.reason,
            FinishReason::EndOfGeneration | FinishReason::StopString
        )
    });
    let ending = if natural {
        Ending::Natural
    } else {
        Ending::CutOff
    };
    let segments = parse_reply(&raw, ending);
    app.status.findings = lint(
        &segments,
        &LintContext {
            character: streaming.speaker.clone(),
            expect_system_thinking: false,
            in_history: false,
        },
    );
    // Nothing but the prefill: a failure before any text; keep nothing.
    if done.is_none() && raw == her_core::format::PREFILL {
        return;
    }
    if let Some(chat) = &mut app.chat {
        match chat.save_reply(&streaming.target, &streaming.speaker, &raw, done.as_ref()) {
            Ok(key) => {
                let tokens = done.map(|d| d.choices).unwrap_or_default();
                if !tokens.is_empty() {
                    let start = streaming.prefix_len;
                    chat.choices.insert(key, ReplyChoices { start, tokens });
                }
            }
            Err(err) => app.notify(format!("the reply could not be saved: {err}"), true),
        }
    }
    refresh(app);
}
