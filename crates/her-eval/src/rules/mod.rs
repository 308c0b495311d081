//! Rule-based flaw detectors: checks that need no model and cannot be
//! talked out of what they see. They run on every evaluated transcript
//! beside the judge, list flaws in the judge's four dimensions with a
//! severity 1–5, and are scored with the same CoSER formula, so a row of
//! rule scores can be read against the judge's row.
//!
//! | rule | dimension | severity |
//! |---|---|---|
//! | [`Rule::WrongSpeaker`]: the turn's `Name: ` is someone else | Character Fidelity | 4 |
//! | [`Rule::LineForOther`]: lines written for other characters | Storyline Quality | 2–4 |
//! | [`Rule::SelfNaming`]: "I am Nick" in Gatsby's turn | Storyline Consistency | 3 |
//! | [`Rule::RepeatedTurn`]: n-gram overlap with an earlier turn | Anthropomorphism | 2–4 |
//! | [`Rule::Loop`]: a turn going round in circles | Anthropomorphism | 3–4 |
//! | [`Rule::Format`]: the linter's tag errors, an untagged reply | Anthropomorphism | 1–2 |
//! | [`Rule::Empty`], [`Rule::NoVisibleReply`] | Storyline Quality | 4, 3 |
//! | [`Rule::CutOff`]: stopped by the token limit | Storyline Quality | 1–2 |
//!
//! - [`speaker`]: who a turn speaks as and for
//! - [`repetition`]: overlap between turns and loops inside one
//! - [`health`]: format health and empty or cut-off turns

pub mod health;
pub mod repetition;
pub mod speaker;

use serde::{Deserialize, Serialize};

use super::score::{Dimension, SceneScores};
use her_core::format::{Ending, Layer, SegmentKind, parse_reply};
use her_engine::FinishReason;

/// Which rule found a flaw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    WrongSpeaker,
    LineForOther,
    SelfNaming,
    RepeatedTurn,
    Loop,
    Format,
    Empty,
    NoVisibleReply,
    CutOff,
}

impl Rule {
    pub const ALL: [Rule; 9] = [
        Rule::WrongSpeaker,
        Rule::LineForOther,
        Rule::SelfNaming,
        Rule::RepeatedTurn,
        Rule::Loop,
        Rule::Format,
        Rule::Empty,
        Rule::NoVisibleReply,
        Rule::CutOff,
    ];

    /// The judge's dimension this rule's flaws count in.
    pub fn dimension(self) -> Dimension {
        match self {
            Rule::WrongSpeaker => Dimension::CharacterFidelity,
            Rule::SelfNaming => Dimension::StorylineConsistency,
            Rule::RepeatedTurn | Rule::Loop | Rule::Format => Dimension::Anthropomorphism,
            Rule::LineForOther | Rule::Empty | Rule::NoVisibleReply | Rule::CutOff => {
                Dimension::StorylineQuality
            }
        }
    }
}

/// One flaw a rule found in one turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleFlaw {
    pub rule: Rule,
    pub dimension: Dimension,
    /// Index of the turn in the transcript (0-based).
    pub turn: usize,
    pub speaker: String,
    /// What is wrong, in one sentence.
    pub flaw: String,
    /// 1 (minor) to 5 (severe), as the judge's.
    pub severity: u8,
}

/// One turn as the rules read it.
#[derive(Debug, Clone, Copy)]
pub struct RuleTurn<'a> {
    /// Whose turn it was.
    pub speaker: &'a str,
    /// The raw reply, plan included.
    pub text: &'a str,
    pub finish: FinishReason,
}

/// Settings of the rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuleOptions {
    /// Share of a turn's word trigrams found in one earlier turn from which
    /// it counts as a repeat (0..=1).
    pub repetition_overlap: f64,
}

impl Default for RuleOptions {
    fn default() -> Self {
        Self {
            repetition_overlap: 0.5,
        }
    }
}

/// What a turn holds once its plan and markup are gone: the text the judge
/// reads (thoughts, actions and speech), with what the rules need to know.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TurnContent {
    /// Thoughts, actions and speech without tags, in order.
    pub plain: String,
    /// Whether anything is said or done (speech or action).
    pub visible: bool,
}

/// Reads `raw` as the judge does (plan removed, the ending natural).
pub fn turn_content(raw: &str) -> TurnContent {
    let mut content = TurnContent::default();
    for segment in parse_reply(raw, Ending::Natural) {
        match segment.kind {
            SegmentKind::Text { layer } if layer != Layer::SystemThinking => {
                if matches!(layer, Layer::Speech | Layer::RoleAction)
                    && !segment.text.trim().is_empty()
                {
                    content.visible = true;
                }
                content.plain.push_str(&segment.text);
            }
            SegmentKind::Speaker => content.plain.push_str(&segment.text),
            SegmentKind::Tag { .. } | SegmentKind::Text { .. } => {}
        }
    }
    content.plain = content.plain.trim().to_string();
    content
}

/// Runs every rule on a transcript. `cast` names everyone who may speak in
/// the scene (the narrator included), so lines for a known character can be
/// told from a stray `Word: `.
pub fn check_transcript(
    turns: &[RuleTurn],
    cast: &[String],
    options: &RuleOptions,
) -> Vec<RuleFlaw> {
    let contents: Vec<TurnContent> = turns.iter().map(|t| turn_content(t.text)).collect();
    let mut flaws = Vec::new();
    let texts: Vec<&str> = contents.iter().map(|c| c.plain.as_str()).collect();
    for (index, turn) in turns.iter().enumerate() {
        let content = &contents[index];
        let mut found = speaker::check(turn.speaker, &content.plain, cast);
        found.extend(repetition::check(index, &texts, turns, options));
        found.extend(health::check(turn, content));
        flaws.extend(found.into_iter().map(|(rule, flaw, severity)| RuleFlaw {
            rule,
            dimension: rule.dimension(),
            turn: index,
            speaker: turn.speaker.to_string(),
            flaw,
            severity: severity.clamp(1, 5),
        }));
    }
    flaws
}

/// Σ severity per dimension, in [`Dimension::ALL`] order.
pub fn severity_sums(flaws: &[RuleFlaw]) -> [u32; 4] {
    let mut sums = [0u32; 4];
    for f in flaws {
        sums[f.dimension.index()] += u32::from(f.severity);
    }
    sums
}

/// The rules' severities and scores of one unit (scene × seed), by the
/// judge's formula.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RuleScores {
    /// Σ severity per dimension, in [`Dimension::ALL`] order.
    pub severity: [u32; 4],
    pub scores: SceneScores,
}

impl RuleScores {
    pub fn new(flaws: &[RuleFlaw], actor_turns: usize) -> Self {
        let severity = severity_sums(flaws);
        Self {
            severity,
            scores: SceneScores::from_severities(severity, actor_turns),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
