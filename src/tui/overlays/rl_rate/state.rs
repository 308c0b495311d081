//! Rating the replies an RL run sampled (the "train on my ratings" loop):
//! 1–5 stars for every reply of every group, sent to the waiting trainer
//! through the run folder.

use std::path::PathBuf;

use crate::tui::action::Action;
use her_train::rl::human::{Answer, Ask};

#[derive(Debug, Clone, PartialEq)]
pub struct RlRateForm {
    pub run: PathBuf,
    pub ask: Ask,
    /// Index into the replies of all groups, in order.
    pub cursor: usize,
    pub stars: Vec<Vec<Option<u8>>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RlRateOutcome {
    Editing,
    Cancelled,
    Incomplete(String),
    Send(Answer),
}

impl RlRateForm {
    pub fn new(run: PathBuf, ask: Ask) -> Self {
        let stars = ask
            .groups
            .iter()
            .map(|g| vec![None; g.candidates.len()])
            .collect();
        Self {
            run,
            ask,
            cursor: 0,
            stars,
        }
    }

    fn total(&self) -> usize {
        self.stars.iter().map(Vec::len).sum()
    }

    /// (group, reply) of the cursor.
    pub fn position(&self) -> (usize, usize) {
        let mut left = self.cursor;
        for (g, group) in self.stars.iter().enumerate() {
            if left < group.len() {
                return (g, left);
            }
            left -= group.len();
        }
        (0, 0)
    }

    pub fn handle(&mut self, action: Action, annotator: &str) -> RlRateOutcome {
        match action {
            Action::CloseOverlay | Action::Cancel => return RlRateOutcome::Cancelled,
            Action::ListUp | Action::CursorLeft => self.cursor = self.cursor.saturating_sub(1),
            Action::ListDown | Action::CursorRight => {
                self.cursor = (self.cursor + 1).min(self.total().saturating_sub(1));
            }
            Action::Insert(c @ '1'..='5') => {
                let (g, r) = self.position();
                if let Some(slot) = self.stars.get_mut(g).and_then(|s| s.get_mut(r)) {
                    *slot = Some(c as u8 - b'0');
                }
                // On to the next reply, as a rater works down the list.
                self.cursor = (self.cursor + 1).min(self.total().saturating_sub(1));
            }
            Action::Submit | Action::ListChoose => return self.finish(annotator),
            _ => {}
        }
        RlRateOutcome::Editing
    }

    fn finish(&self, annotator: &str) -> RlRateOutcome {
        let missing = self.stars.iter().flatten().filter(|s| s.is_none()).count();
        if missing > 0 {
            return RlRateOutcome::Incomplete(format!(
                "{missing} replies have no stars yet: 1–5 rates the highlighted one"
            ));
        }
        RlRateOutcome::Send(Answer {
            step: self.ask.step,
            stars: self
                .stars
                .iter()
                .map(|g| g.iter().map(|s| s.unwrap_or(3)).collect())
                .collect(),
            annotator: annotator.to_string(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use her_train::rl::human::AskGroup;

    fn ask() -> Ask {
        let group = |n: usize| AskGroup {
            prompt_id: "p".into(),
            character: "Lizzy".into(),
            last_turn: "Hi".into(),
            candidates: vec!["x".into(); n],
        };
        Ask {
            step: 4,
            groups: vec![group(2), group(1)],
        }
    }

    #[test]
    fn every_reply_needs_stars_before_the_answer_is_sent() {
        let mut form = RlRateForm::new(PathBuf::from("run"), ask());
        assert!(matches!(
            form.handle(Action::Submit, "me"),
            RlRateOutcome::Incomplete(_)
        ));
        form.handle(Action::Insert('5'), "me");
        assert_eq!(form.position(), (0, 1));
        form.handle(Action::Insert('2'), "me");
        assert_eq!(form.position(), (1, 0));
        form.handle(Action::Insert('9'), "me");
        assert!(matches!(
            form.handle(Action::Submit, "me"),
            RlRateOutcome::Incomplete(_)
        ));
        form.handle(Action::Insert('4'), "me");
        form.handle(Action::ListUp, "me");
        form.handle(Action::ListUp, "me");
        form.handle(Action::Insert('1'), "me");
        match form.handle(Action::Submit, "me") {
            RlRateOutcome::Send(answer) => {
                assert_eq!(answer.stars, vec![vec![1, 2], vec![4]]);
                assert_eq!((answer.step, answer.annotator.as_str()), (4, "me"));
                her_train::rl::human::check(&ask(), &answer).unwrap();
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            form.handle(Action::CloseOverlay, "me"),
            RlRateOutcome::Cancelled
        );
    }
}
