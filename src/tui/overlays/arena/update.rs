//! Driving an arena round through `update`: start it, feed it engine
//! events, take the annotator's pick, save the kept reply and the round.

use crate::tui::app::{App, Overlay, ReplyTarget};
use crate::tui::effect::{AdapterFor, Effect};
use crate::tui::model::Speaker;
use crate::tui::overlays::arena::state::{
    AdapterUse, ArenaKey, ArenaMode, ArenaRound, Output, Phase,
};
use crate::tui::screens::chat::update::refresh;
use her_core::format::PREFILL;
use her_core::prefs::Verdict;
use her_core::prefs::sessions::{ARENA_EVENT, ArenaCandidate, ArenaEvent};
use her_engine::{Event, GenerateRequest};

/// `/arena [mode]` or the arena key: two candidates for the newest reply
/// (or for the reply to the newest user line).
pub fn start(app: &mut App, args: &[&str]) -> Vec<Effect> {
    if app.streaming.is_some() || app.arena.is_some() || app.choosing_speaker {
        app.notify("wait for the reply being written (or ctrl+c)", true);
        return Vec::new();
    }
    if app.engine_loading {
        app.notify("a model is loading: wait for it before generating", true);
        return Vec::new();
    }
    let mode = match ArenaMode::parse(args, app.adapter.is_some()) {
        Ok(mode) => mode,
        Err(err) => {
            app.notify(err, true);
            return Vec::new();
        }
    };
    let Some(chat) = &app.chat else {
        return Vec::new();
    };
    if let Some(reason) = &chat.read_only {
        let text = crate::tui::screens::chat::update::read_only_notice(reason);
        app.notify(text, true);
        return Vec::new();
    }
    let (target, speaker) = match app.messages.last() {
        Some(m) if m.speaker != Speaker::User => {
            (ReplyTarget::AlternativeOf(m.key.clone()), m.name.clone())
        }
        last => (
            ReplyTarget::After(last.map(|m| m.key.clone())),
            chat.character.name.clone(),
        ),
    };
    let sampling =
        her_engine::dialogue::character_sampling(chat.sampling.clone(), chat.member(&speaker));
    // Seeds and the blind order come from the app's generator, which the
    // runtime seeds: `update` itself stays a function of its messages.
    let entropy = app.rng.next_u64();
    app.arena = Some(ArenaRound {
        target,
        speaker,
        contenders: mode.contenders(&sampling, entropy),
        outputs: Vec::new(),
        writing: PREFILL.to_string(),
        shown_first: usize::from(entropy.count_ones() % 2 == 1),
        phase: Phase::Writing(0),
        restore: app.adapter.clone(),
    });
    app.overlay = Some(Overlay::Arena);
    generate(app, 0)
}

/// Effects that write candidate `i`: its adapter first, if it needs
/// another one (the candidate is written once that is in place).
fn generate(app: &mut App, i: usize) -> Vec<Effect> {
    let Some(round) = &app.arena else {
        return Vec::new();
    };
    let for_ = AdapterFor::ArenaCandidate(i);
    match &round.contenders[i].adapter {
        AdapterUse::Current => write_candidate(app, i),
        AdapterUse::Off => vec![Effect::ClearAdapter { for_ }],
        AdapterUse::Load { path, scale } => vec![Effect::LoadAdapter {
            path: path.clone(),
            scale: *scale,
            for_,
        }],
    }
}

/// The generation of candidate `i`, with the adapter in place.
fn write_candidate(app: &mut App, i: usize) -> Vec<Effect> {
    let (Some(round), Some(chat)) = (&app.arena, &app.chat) else {
        return Vec::new();
    };
    match chat.prompt_for(&round.target, &round.speaker) {
        Ok((prompt, _)) => vec![Effect::Generate(GenerateRequest {
            prompt,
            sampling: round.contenders[i].sampling.clone(),
            min_skip: chat.dropped_turns,
            grammar: None,
            candidates: 0,
        })],
        Err(err) => {
            let message = err.to_string();
            abort(app, &message)
        }
    }
}

/// The adapter a candidate asked for is in place: write it (unless the
/// round was closed meanwhile).
pub fn adapter_ready(app: &mut App, for_: AdapterFor) -> Vec<Effect> {
    match (for_, app.arena.as_ref().map(|r| &r.phase)) {
        (AdapterFor::ArenaCandidate(i), Some(Phase::Writing(w))) if *w == i => {
            write_candidate(app, i)
        }
        _ => Vec::new(),
    }
}

/// Generating with the wrong adapter would mislabel the candidates: the
/// round stops.
pub fn adapter_failed(app: &mut App, error: &str) -> Vec<Effect> {
    abort(app, &format!("arena: {error}"))
}

/// Puts back the adapter the chat had before the round.
fn restore(restore: Option<(std::path::PathBuf, f32)>) -> Effect {
    let for_ = AdapterFor::ArenaRestore;
    match restore {
        Some((path, scale)) => Effect::LoadAdapter { path, scale, for_ },
        None => Effect::ClearAdapter { for_ },
    }
}

/// Ends the round without a verdict and puts the adapter back.
pub fn abort(app: &mut App, why: &str) -> Vec<Effect> {
    app.notify(why.to_string(), true);
    close(app)
}

fn close(app: &mut App) -> Vec<Effect> {
    if matches!(app.overlay, Some(Overlay::Arena)) {
        app.overlay = None;
    }
    let Some(round) = app.arena.take() else {
        return Vec::new();
    };
    // Only the second candidate changes the adapter, and a finished second
    // candidate has already put it back.
    let changed = round.contenders[1].adapter != AdapterUse::Current;
    if changed && round.phase == Phase::Writing(1) {
        vec![restore(round.restore)]
    } else {
        Vec::new()
    }
}

/// Engine events while a candidate is being written.
pub fn on_engine(app: &mut App, event: Event) -> Vec<Effect> {
    let Some(round) = &mut app.arena else {
        return Vec::new();
    };
    let Phase::Writing(i) = round.phase else {
        return Vec::new();
    };
    match event {
        Event::Text(piece) => round.writing.push_str(&piece),
        Event::Stats(stats) => app.update_stats(&stats),
        Event::Started(_) => {}
        Event::Finished(finished) => {
            let raw = std::mem::replace(&mut round.writing, PREFILL.to_string());
            round.outputs.push(Output { raw, finished });
            if i == 0 {
                round.phase = Phase::Writing(1);
                return generate(app, 1);
            }
            round.phase = Phase::Choosing;
            // The base model state comes back now; the round only needs the texts.
            if round.contenders[1].adapter != AdapterUse::Current {
                return vec![restore(round.restore.clone())];
            }
        }
        Event::Failed(err) => {
            let message = format!("arena: candidate {} failed: {err}", i + 1);
            return abort(app, &message);
        }
    }
    Vec::new()
}

/// A key while the arena overlay is open.
pub fn key(app: &mut App, action: &crate::tui::action::Action) -> Vec<Effect> {
    let Some(round) = &app.arena else {
        app.overlay = None;
        return Vec::new();
    };
    match round.key(action) {
        ArenaKey::Nothing => Vec::new(),
        ArenaKey::Close => {
            let writing = matches!(round.phase, Phase::Writing(_));
            let undecided = round.phase == Phase::Choosing;
            let mut effects = close(app);
            if writing {
                effects.insert(0, Effect::Cancel);
                app.notify("arena round cancelled", false);
            } else if undecided {
                app.notify("arena round discarded without a choice", false);
            }
            effects
        }
        ArenaKey::Decide(verdict) => {
            decide(app, verdict);
            Vec::new()
        }
    }
}

/// Saves the round and the kept reply, then reveals who was who.
fn decide(app: &mut App, verdict: Verdict) {
    let (Some(round), Some(chat)) = (&mut app.arena, &mut app.chat) else {
        return;
    };
    let [first, second] = match round.outputs.as_slice() {
        [a, b] => [a.clone(), b.clone()],
        _ => return,
    };
    let result = (|| {
        let parent = chat.parent_of(&round.target)?;
        let (prompt, _) = chat.prompt_for(&round.target, &round.speaker)?;
        let (_, prepared) = chat.build_upto(parent.as_deref(), &round.speaker);
        let candidate = |o: &Output, label: &str| ArenaCandidate {
            text: o.raw.clone(),
            label: label.to_string(),
            provenance: Some(o.finished.provenance.clone()),
        };
        let event = ArenaEvent {
            kind: ARENA_EVENT.into(),
            id: her_core::session::new_key(),
            parent,
            speaker: round.speaker.clone(),
            annotator: chat.annotator.clone(),
            candidates: [
                candidate(&first, &round.contenders[0].label),
                candidate(&second, &round.contenders[1].label),
            ],
            shown_first: round.shown_first,
            verdict,
            prompt: prompt.render(first.finished.provenance.dropped_turns),
            additions: prepared.additions,
            created_at: her_core::session::now_rfc3339(),
        };
        chat.log_arena(&event)?;
        if let Some(kept) = round.kept(verdict) {
            let output = if kept == 0 { &first } else { &second };
            chat.save_reply(
                &round.target,
                &round.speaker,
                &output.raw,
                Some(&output.finished),
            )?;
        }
        Ok::<(), her_core::session::SessionError>(())
    })();
    round.phase = Phase::Revealed(verdict);
    match result {
        Ok(()) => refresh(app),
        Err(err) => app.notify(format!("the arena round could not be saved: {err}"), true),
    }
}
