//! What the annotation screen knows and how an action changes it. Pure: the
//! runtime writes the records and generates the candidates it asks for.

use std::collections::HashSet;
use std::path::PathBuf;

use crate::config::SamplingConfig;
use crate::tui::action::Action;
use her_core::prefs::queue::{AnnotationRun, Answer, QueueItem, UndoAction, blind_order};
use her_core::prefs::{PreferenceRecord, RatingScore, Verdict};

/// What a key asks the runtime to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Nothing,
    /// Append this answer to the annotator's log.
    Save(Box<PreferenceRecord>),
    /// Remove this record id from the log (undo).
    Retract(String),
    Quit,
}

pub struct AnnotateScreen {
    pub run: AnnotationRun,
    pub queue_name: String,
    /// The annotator's log, where every answer is appended.
    pub log: PathBuf,
    /// Sampling for candidates the queue lacks.
    pub sampling: SamplingConfig,
    /// A line for the annotator: what was saved, what went wrong.
    pub notice: Option<(String, bool)>,
    /// Lines scrolled in the candidate panes.
    pub scroll: u16,
    /// The item whose two candidates are being written.
    pub writing: Option<String>,
    /// Items whose candidates could not be written: not tried again.
    pub failed: HashSet<String>,
}

impl AnnotateScreen {
    pub fn new(
        run: AnnotationRun,
        queue_name: String,
        log: PathBuf,
        sampling: SamplingConfig,
    ) -> Self {
        Self {
            run,
            queue_name,
            log,
            sampling,
            notice: None,
            scroll: 0,
            writing: None,
            failed: HashSet::new(),
        }
    }

    /// The current item, if it has the candidates it needs to be shown.
    pub fn ready_item(&self) -> Option<&QueueItem> {
        self.run.current().filter(|i| !i.candidates.is_empty())
    }

    /// Whether the current item waits for two generated candidates.
    pub fn needs_candidates(&self) -> bool {
        self.run.current().is_some_and(|i| i.candidates.is_empty())
    }

    /// Whether candidate 2 is shown on the left for the current item.
    pub fn swapped(&self) -> bool {
        self.run
            .current()
            .is_some_and(|i| blind_order(&i.id, self.run.annotator()))
    }

    pub fn on_action(&mut self, action: &Action) -> Step {
        self.notice = None;
        match action {
            Action::Quit => return Step::Quit,
            Action::Undo => return self.undo(),
            Action::Skip => {
                if self.run.skip() {
                    self.scroll = 0;
                    self.notice = Some(("skipped: it comes back at the end".into(), false));
                }
                return Step::Nothing;
            }
            Action::ScrollDown => {
                self.scroll = self.scroll.saturating_add(1);
                return Step::Nothing;
            }
            Action::ScrollUp => {
                self.scroll = self.scroll.saturating_sub(1);
                return Step::Nothing;
            }
            _ => {}
        }
        let Some(answer) = self.answer_for(action) else {
            if is_answer(action) {
                self.notice = Some((self.hint(), true));
            }
            return Step::Nothing;
        };
        let shown = self.reveal_text();
        match self.run.answer(answer) {
            Some(record) => {
                self.scroll = 0;
                self.notice = Some((format!("saved{shown}"), false));
                Step::Save(Box::new(record))
            }
            None => {
                self.notice = Some((self.hint(), true));
                Step::Nothing
            }
        }
    }

    /// The action as an answer for the current item, in queue order.
    fn answer_for(&self, action: &Action) -> Option<Answer> {
        let item = self.ready_item()?;
        let pick = |left_wins: bool| {
            // The left pane shows candidate 2 when the order is swapped.
            let left = if self.swapped() {
                Verdict::Cand2
            } else {
                Verdict::Cand1
            };
            Answer::Pick(if left_wins { left } else { left.swapped() })
        };
        match (item.candidates.len(), action) {
            (2, Action::PickLeft) => Some(pick(true)),
            (2, Action::PickRight) => Some(pick(false)),
            (2, Action::Tie) => Some(Answer::Pick(Verdict::Tie)),
            (2, Action::BothBad) => Some(Answer::Pick(Verdict::BothBad)),
            (1, Action::RateUp) => Some(Answer::Rate(RatingScore::ThumbsUp)),
            (1, Action::RateDown) => Some(Answer::Rate(RatingScore::ThumbsDown)),
            (1, Action::RateStars(n @ 1..=5)) => Some(Answer::Rate(RatingScore::Stars(*n))),
            _ => None,
        }
    }

    fn hint(&self) -> String {
        match self.ready_item().map(|i| i.candidates.len()) {
            Some(2) => "a / b: better side · t: tie · x: both bad".into(),
            Some(1) => "+ / -: thumbs · 1–5: stars".into(),
            _ => "nothing to answer here".into(),
        }
    }

    /// After a pick, which side was what (the labels, when the queue has them).
    fn reveal_text(&self) -> String {
        let Some(item) = self.ready_item() else {
            return String::new();
        };
        let labels: Vec<String> = item
            .candidates
            .iter()
            .map(|c| c.label.clone().unwrap_or_default())
            .collect();
        match labels.as_slice() {
            [a, b] if !a.is_empty() || !b.is_empty() => {
                let (left, right) = if self.swapped() { (b, a) } else { (a, b) };
                format!(" — A was {left}, B was {right}")
            }
            _ => String::new(),
        }
    }

    fn undo(&mut self) -> Step {
        match self.run.undo() {
            Some(UndoAction::Retract { item_id, record_id }) => {
                self.notice = Some((format!("answer to {item_id} taken back"), false));
                Step::Retract(record_id)
            }
            Some(UndoAction::Unskip { item_id }) => {
                self.notice = Some((format!("{item_id} is no longer skipped"), false));
                Step::Nothing
            }
            None => {
                self.notice = Some(("nothing to undo in this sitting".into(), true));
                Step::Nothing
            }
        }
    }
}

/// Whether the action answers an item (on the wrong kind of item it gets a hint).
fn is_answer(action: &Action) -> bool {
    matches!(
        action,
        Action::PickLeft
            | Action::PickRight
            | Action::Tie
            | Action::BothBad
            | Action::RateUp
            | Action::RateDown
            | Action::RateStars(_)
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use her_core::prefs::queue::QueueCandidate;
    use her_core::prefs::{ContextMessage, Role};

    pub(crate) fn item(id: &str, texts: &[&str]) -> QueueItem {
        QueueItem {
            id: id.into(),
            character: "Elizabeth".into(),
            context: vec![ContextMessage::new(Role::User, "Darcy: Do you dance?")],
            candidates: texts
                .iter()
                .map(|t| QueueCandidate {
                    text: (*t).into(),
                    label: Some(format!("label {t}")),
                    provenance: None,
                })
                .collect(),
            session: None,
        }
    }

    fn state(items: Vec<QueueItem>) -> AnnotateScreen {
        AnnotateScreen::new(
            AnnotationRun::new(items, "ann", &[]),
            "q".into(),
            PathBuf::from("log.jsonl"),
            SamplingConfig::default(),
        )
    }

    #[test]
    fn a_pick_on_the_left_maps_to_the_queue_order() {
        let mut s = state(vec![item("1", &["first", "second"])]);
        let swapped = s.swapped();
        let Step::Save(saved) = s.on_action(&Action::PickLeft) else {
            panic!("expected a saved pair");
        };
        let PreferenceRecord::Pair(pair) = *saved else {
            panic!("expected a saved pair");
        };
        let expected = if swapped {
            Verdict::Cand2
        } else {
            Verdict::Cand1
        };
        assert_eq!(pair.verdict, expected);
        assert!(s.run.is_finished());
    }

    #[test]
    fn skip_undo_and_wrong_keys() {
        let mut s = state(vec![item("1", &["only"]), item("2", &["x", "y"])]);
        assert_eq!(s.on_action(&Action::PickLeft), Step::Nothing); // a pick on a single reply
        assert!(s.notice.as_ref().is_some_and(|(_, error)| *error));
        assert_eq!(s.on_action(&Action::Skip), Step::Nothing);
        assert_eq!(s.ready_item().map(|i| i.id.as_str()), Some("2"));
        let Step::Save(saved) = s.on_action(&Action::Tie) else {
            panic!("expected a tie to be saved");
        };
        assert_eq!(
            s.on_action(&Action::Undo),
            Step::Retract(saved.id().to_string())
        );
        assert_eq!(s.ready_item().map(|i| i.id.as_str()), Some("2"));
        assert_eq!(s.run.progress(), (0, 2));
        assert!(matches!(s.on_action(&Action::RateStars(4)), Step::Nothing)); // item 2 needs a pick
        assert!(matches!(s.on_action(&Action::BothBad), Step::Save(_)));
        assert!(
            matches!(s.on_action(&Action::RateStars(5)), Step::Save(r) if matches!(*r, PreferenceRecord::Rating(_)))
        );
        assert!(s.run.is_finished());
        assert_eq!(s.on_action(&Action::Quit), Step::Quit);
    }
}
