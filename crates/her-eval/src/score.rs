//! CoSER's scoring: a dimension starts at 100 and loses five points per unit
//! of flaw severity, with a small allowance for long scenes (0.3 severity per
//! actor turn), clamped to 0..=100. The overall score is the mean of the four.

use serde::{Deserialize, Serialize};

/// The four dimensions the judge scores, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    StorylineConsistency,
    Anthropomorphism,
    CharacterFidelity,
    StorylineQuality,
}

impl Dimension {
    pub const ALL: [Dimension; 4] = [
        Dimension::StorylineConsistency,
        Dimension::Anthropomorphism,
        Dimension::CharacterFidelity,
        Dimension::StorylineQuality,
    ];

    /// The name people read ("Storyline Consistency").
    pub fn title(self) -> &'static str {
        match self {
            Dimension::StorylineConsistency => "Storyline Consistency",
            Dimension::Anthropomorphism => "Anthropomorphism",
            Dimension::CharacterFidelity => "Character Fidelity",
            Dimension::StorylineQuality => "Storyline Quality",
        }
    }

    /// The JSON key the judge writes ("storyline_consistency").
    pub fn key(self) -> &'static str {
        match self {
            Dimension::StorylineConsistency => "storyline_consistency",
            Dimension::Anthropomorphism => "anthropomorphism",
            Dimension::CharacterFidelity => "character_fidelity",
            Dimension::StorylineQuality => "storyline_quality",
        }
    }

    /// A short column label for narrow tables and charts.
    pub fn short(self) -> &'static str {
        match self {
            Dimension::StorylineConsistency => "Consist.",
            Dimension::Anthropomorphism => "Human",
            Dimension::CharacterFidelity => "Fidelity",
            Dimension::StorylineQuality => "Quality",
        }
    }

    pub fn index(self) -> usize {
        match self {
            Dimension::StorylineConsistency => 0,
            Dimension::Anthropomorphism => 1,
            Dimension::CharacterFidelity => 2,
            Dimension::StorylineQuality => 3,
        }
    }
}

/// Points lost per unit of severity.
pub const POINTS_PER_SEVERITY: f64 = 5.0;
/// Severity forgiven per actor turn (longer scenes have more room for flaws).
pub const ALLOWANCE_PER_TURN: f64 = 0.3;

/// `clamp(100 − 5·(Σseverity − 0.3·actor_turns), 0, 100)`.
pub fn dimension_score(severity_sum: u32, actor_turns: usize) -> f64 {
    unclamped_score(severity_sum, actor_turns).clamp(0.0, 100.0)
}

/// `100 − 5·(Σseverity − 0.3·actor_turns)` before clamping: two transcripts
/// whose small flaws both fit in the allowance still compare.
pub fn unclamped_score(severity_sum: u32, actor_turns: usize) -> f64 {
    let excess = f64::from(severity_sum) - ALLOWANCE_PER_TURN * actor_turns as f64;
    100.0 - POINTS_PER_SEVERITY * excess
}

/// The four dimension scores of one judged scene and their mean.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SceneScores {
    /// Indexed by [`Dimension::index`].
    pub dimensions: [f64; 4],
    pub overall: f64,
}

impl SceneScores {
    /// Scores from the severity sums per dimension (in [`Dimension::ALL`] order).
    pub fn from_severities(severity_sums: [u32; 4], actor_turns: usize) -> Self {
        let dimensions = severity_sums.map(|s| dimension_score(s, actor_turns));
        Self {
            dimensions,
            overall: mean(&dimensions),
        }
    }

    /// The four dimensions then the overall score: the columns the bootstrap resamples.
    pub fn columns(&self) -> [f64; 5] {
        let [a, b, c, d] = self.dimensions;
        [a, b, c, d, self.overall]
    }
}

/// Column labels matching [`SceneScores::columns`].
pub fn column_titles() -> [&'static str; 5] {
    let [a, b, c, d] = Dimension::ALL.map(Dimension::title);
    [a, b, c, d, "Overall"]
}

pub(crate) fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.iter().sum::<f64>() / values.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_by_hand() {
        // No flaws: 100 − 5·(0 − 0.3·10) = 115, clamped.
        assert_eq!(dimension_score(0, 10), 100.0);
        // 7 severity over 10 turns: 100 − 5·(7 − 3) = 80.
        assert!((dimension_score(7, 10) - 80.0).abs() < 1e-9);
        // 3 severity over 4 turns: 100 − 5·(3 − 1.2) = 91.
        assert!((dimension_score(3, 4) - 91.0).abs() < 1e-9);
        // Many flaws: clamped at 0.
        assert_eq!(dimension_score(40, 2), 0.0);
        // Exactly at the allowance: 100.
        assert!((dimension_score(3, 10) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn overall_is_the_mean() {
        let s = SceneScores::from_severities([7, 0, 3, 40], 10);
        // 80, 100, 100 (3 − 3 = 0), 0.
        assert_eq!(s.dimensions, [80.0, 100.0, 100.0, 0.0]);
        assert!((s.overall - 70.0).abs() < 1e-9);
        assert_eq!(s.columns()[4], s.overall);
    }

    #[test]
    fn dimension_names_line_up() {
        for (i, d) in Dimension::ALL.into_iter().enumerate() {
            assert_eq!(d.index(), i);
            assert_eq!(column_titles()[i], d.title());
        }
    }
}
