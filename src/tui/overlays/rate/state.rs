//! The detailed rating dialog: a score for the whole reply or one layer of it
//! (the LLM's plan, the character's thinking, the visible reply), tags from
//! HER's 12 principle dimensions and a free-text rationale.

use std::collections::BTreeSet;

use crate::tui::action::Action;
use her_core::prefs::sessions::ChatScore;
use her_core::prefs::{PRINCIPLE_DIMENSIONS, RatedLayer};

/// Which part of the dialog takes typed characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateFocus {
    /// Score keys, layer (left/right), tags (up/down, space).
    Fields,
    /// Free text.
    Rationale,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RateForm {
    /// The rated message.
    pub key: String,
    pub speaker: String,
    pub layer: RatedLayer,
    pub score: Option<ChatScore>,
    /// Indices into [`PRINCIPLE_DIMENSIONS`].
    pub tags: BTreeSet<usize>,
    /// Index of the highlighted tag.
    pub cursor: usize,
    pub rationale: String,
    pub focus: RateFocus,
}

/// What a key did to the form.
#[derive(Debug, Clone, PartialEq)]
pub enum FormOutcome {
    Editing,
    Cancelled,
    /// Enter with a score: save this rating.
    Save(RatingInput),
    /// Enter without a score: say what is missing.
    Incomplete(&'static str),
}

/// A finished rating, ready for the session log.
#[derive(Debug, Clone, PartialEq)]
pub struct RatingInput {
    pub score: ChatScore,
    pub layer: RatedLayer,
    pub tags: Vec<String>,
    pub rationale: Option<String>,
}

pub const LAYERS: [RatedLayer; 4] = [
    RatedLayer::Whole,
    RatedLayer::Plan,
    RatedLayer::Thinking,
    RatedLayer::Visible,
];

pub fn layer_label(layer: RatedLayer) -> &'static str {
    match layer {
        RatedLayer::Whole => "whole reply",
        RatedLayer::Plan => "LLM plan (system thinking)",
        RatedLayer::Thinking => "character thinking",
        RatedLayer::Visible => "visible reply (actions + speech)",
    }
}

pub fn score_label(score: ChatScore) -> String {
    match score {
        ChatScore::Up => "👍".into(),
        ChatScore::Down => "👎".into(),
        ChatScore::Stars { stars } => "★".repeat(usize::from(stars.clamp(1, 5))),
    }
}

impl RateForm {
    pub fn new(key: String, speaker: String) -> Self {
        Self {
            key,
            speaker,
            layer: RatedLayer::Whole,
            score: None,
            tags: BTreeSet::new(),
            cursor: 0,
            rationale: String::new(),
            focus: RateFocus::Fields,
        }
    }

    pub fn handle(&mut self, action: Action) -> FormOutcome {
        match action {
            Action::CloseOverlay | Action::Cancel => return FormOutcome::Cancelled,
            Action::Submit | Action::ListChoose => return self.finish(),
            Action::NextField => {
                self.focus = match self.focus {
                    RateFocus::Fields => RateFocus::Rationale,
                    RateFocus::Rationale => RateFocus::Fields,
                };
            }
            _ if self.focus == RateFocus::Rationale => self.type_rationale(action),
            Action::CursorLeft => self.layer = step(self.layer, -1),
            Action::CursorRight => self.layer = step(self.layer, 1),
            Action::ListUp => self.cursor = self.cursor.saturating_sub(1),
            Action::ListDown => self.cursor = (self.cursor + 1).min(PRINCIPLE_DIMENSIONS.len() - 1),
            Action::Insert(c) => self.field_key(c),
            _ => {}
        }
        FormOutcome::Editing
    }

    fn field_key(&mut self, c: char) {
        match c {
            '+' => self.score = Some(ChatScore::Up),
            '-' => self.score = Some(ChatScore::Down),
            '1'..='5' => {
                let stars = c as u8 - b'0';
                self.score = Some(ChatScore::Stars { stars });
            }
            ' ' | 'x' if !self.tags.remove(&self.cursor) => {
                self.tags.insert(self.cursor);
            }
            _ => {}
        }
    }

    fn type_rationale(&mut self, action: Action) {
        match action {
            Action::Insert(c) => self.rationale.push(c),
            Action::Paste(text) => self.rationale.push_str(&text),
            Action::Backspace => {
                self.rationale.pop();
            }
            _ => {}
        }
    }

    fn finish(&self) -> FormOutcome {
        let Some(score) = self.score else {
            return FormOutcome::Incomplete("choose a score first: + / - or 1–5");
        };
        let rationale = self.rationale.trim();
        FormOutcome::Save(RatingInput {
            score,
            layer: self.layer,
            tags: self
                .tags
                .iter()
                .filter_map(|&i| PRINCIPLE_DIMENSIONS.get(i))
                .map(|s| (*s).to_string())
                .collect(),
            rationale: (!rationale.is_empty()).then(|| rationale.to_string()),
        })
    }
}

fn step(layer: RatedLayer, delta: isize) -> RatedLayer {
    let at = LAYERS.iter().position(|l| *l == layer).unwrap_or(0) as isize;
    let n = LAYERS.len() as isize;
    LAYERS[((at + delta).rem_euclid(n)) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(form: &mut RateForm, text: &str) {
        for c in text.chars() {
            form.handle(Action::Insert(c));
        }
    }

    #[test]
    fn a_full_rating_with_layer_tags_and_rationale() {
        let mut form = RateForm::new("k".into(), "Elizabeth".into());
        assert_eq!(
            form.handle(Action::Submit),
            FormOutcome::Incomplete("choose a score first: + / - or 1–5")
        );
        typed(&mut form, "4");
        form.handle(Action::CursorRight);
        form.handle(Action::CursorRight);
        form.handle(Action::ListDown);
        form.handle(Action::ListDown);
        typed(&mut form, " ");
        form.handle(Action::ListDown);
        typed(&mut form, " ");
        typed(&mut form, " "); // toggled off again
        form.handle(Action::NextField);
        typed(&mut form, "warm but +too long");
        form.handle(Action::Backspace);
        assert_eq!(
            form.handle(Action::Submit),
            FormOutcome::Save(RatingInput {
                score: ChatScore::Stars { stars: 4 },
                layer: RatedLayer::Thinking,
                tags: vec!["Emotional Expression".into()],
                rationale: Some("warm but +too lon".into()),
            })
        );
    }

    #[test]
    fn layers_wrap_and_escape_cancels() {
        let mut form = RateForm::new("k".into(), "E".into());
        form.handle(Action::CursorLeft);
        assert_eq!(form.layer, RatedLayer::Visible);
        form.handle(Action::CursorRight);
        assert_eq!(form.layer, RatedLayer::Whole);
        for _ in 0..20 {
            form.handle(Action::ListDown);
        }
        assert_eq!(form.cursor, PRINCIPLE_DIMENSIONS.len() - 1);
        assert_eq!(form.handle(Action::CloseOverlay), FormOutcome::Cancelled);
    }
}
