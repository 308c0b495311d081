//! Keys on the annotation screen through the keymap's annotate layer:
//! each answer appended to the annotator's log by the runtime, and two
//! candidates written for items that have none.

use super::state::{AnnotateScreen, Step};
use crate::config::SamplingConfig;
use crate::tui::action::Action;
use crate::tui::app::App;
use crate::tui::effect::Effect;
use her_core::chatml::context_prompt;
use her_core::prefs::queue::QueueCandidate;

/// An action on the annotation screen.
pub fn on_action(app: &mut App, action: &Action) -> Vec<Effect> {
    let Some(screen) = app.annotate.as_deref_mut() else {
        return Vec::new();
    };
    let mut effects = match screen.on_action(action) {
        Step::Nothing => Vec::new(),
        Step::Quit => {
            app.quit = true;
            return Vec::new();
        }
        Step::Save(record) => vec![Effect::AppendRecord {
            log: screen.log.clone(),
            record,
        }],
        Step::Retract(id) => vec![Effect::RetractRecord {
            log: screen.log.clone(),
            id,
        }],
    };
    effects.extend(candidates_needed(screen));
    effects
}

/// Asks for two candidates when the current item has none, unless they are
/// being written or could not be.
pub fn candidates_needed(screen: &mut AnnotateScreen) -> Vec<Effect> {
    let Some(item) = screen.run.current().filter(|i| i.candidates.is_empty()) else {
        return Vec::new();
    };
    if screen.writing.is_some() || screen.failed.contains(&item.id) {
        return Vec::new();
    }
    let id = item.id.clone();
    let prompt = context_prompt(&item.context);
    screen.writing = Some(id.clone());
    vec![Effect::WriteCandidates {
        item: id,
        prompt,
        sampling: screen.sampling.clone(),
    }]
}

/// The candidates for `item` are written (or why not); a failed item is
/// skipped and not tried again.
pub fn candidates_written(
    screen: &mut AnnotateScreen,
    item: &str,
    result: Result<(QueueCandidate, QueueCandidate), String>,
) -> Vec<Effect> {
    screen.writing = None;
    // Skipped meanwhile: written again when it comes back.
    let current = screen.run.current().is_some_and(|i| i.id == item);
    let result = match result {
        Ok((a, b)) if current => screen
            .run
            .supply_candidates(a, b)
            .map_err(|e| e.to_string()),
        Ok(_) => Ok(()),
        Err(err) => Err(err),
    };
    if let Err(err) = result {
        screen.failed.insert(item.to_string());
        if current {
            screen.run.skip();
        }
        screen.notice = Some((format!("could not write candidates: {err}; skipped"), true));
    }
    candidates_needed(screen)
}

/// An answer that did not reach the log is taken back, so the screen does
/// not say it was saved.
pub fn record_not_saved(screen: &mut AnnotateScreen, error: String) {
    screen.run.undo();
    screen.notice = Some((error, true));
}

/// The samplings of the two candidates: seeds apart, and never greedy
/// (greedy decoding would write the same reply twice).
pub fn candidate_samplings(sampling: &SamplingConfig) -> [SamplingConfig; 2] {
    [0u32, 1].map(|offset| SamplingConfig {
        seed: sampling.seed.wrapping_add(offset.wrapping_mul(7919)),
        temperature: if sampling.temperature > 0.0 {
            sampling.temperature
        } else {
            0.7
        },
        ..sampling.clone()
    })
}
