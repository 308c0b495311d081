//! The parts of an RL reward and how they combine. Each part is a number in
//! [−1, 1]; the reward is their weighted sum.

use serde::{Deserialize, Serialize};

use crate::settings::RlConfig;
use her_core::format::{Ending, LintContext, health, lint, parse_reply};
use her_core::prefs::Verdict;

/// One rollout's reward parts (`None`: the part is switched off).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RewardParts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judge: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layout: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contains: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub human: Option<f64>,
}

/// The weights of the parts, from `[rl]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RewardWeights {
    pub judge: f64,
    pub format: f64,
    pub layout: f64,
    pub contains: f64,
    pub human: f64,
}

impl RewardWeights {
    pub fn from_config(c: &RlConfig) -> Self {
        Self {
            judge: c.reward_judge,
            format: c.reward_format,
            layout: c.reward_layout,
            contains: c.reward_contains,
            human: c.reward_human,
        }
    }

    pub fn any(&self) -> bool {
        [
            self.judge,
            self.format,
            self.layout,
            self.contains,
            self.human,
        ]
        .iter()
        .any(|w| *w > 0.0)
    }
}

impl RewardParts {
    /// The weighted sum of the parts that are on.
    pub fn total(&self, w: &RewardWeights) -> f64 {
        [
            (self.judge, w.judge),
            (self.format, w.format),
            (self.layout, w.layout),
            (self.contains, w.contains),
            (self.human, w.human),
        ]
        .iter()
        .filter_map(|(v, w)| v.map(|v| v * w))
        .sum()
    }
}

/// +1 for a clean reply; each error costs 0.5 and each warning 0.25, down
/// to −1. Malformed tags are exactly what HER's RL never penalised.
pub fn format_reward(raw_reply: &str, ending: Ending, character: &str) -> (f64, usize) {
    let segments = parse_reply(raw_reply, ending);
    let findings = lint(
        &segments,
        &LintContext {
            character: character.to_string(),
            expect_system_thinking: true,
            in_history: false,
        },
    );
    let (errors, warnings) = health(&findings);
    let reward = (1.0 - 0.5 * errors as f64 - 0.25 * warnings as f64).max(-1.0);
    (reward, errors)
}

/// Rarer layouts earn more: 1 − the layout's share of recent rollouts.
pub fn layout_reward(share: f64) -> f64 {
    1.0 - share.clamp(0.0, 1.0)
}

/// +1 when the reply holds `needle`, else 0 (empty needle: never).
pub fn contains_reward(raw_reply: &str, needle: &str) -> f64 {
    if !needle.is_empty() && raw_reply.contains(needle) {
        1.0
    } else {
        0.0
    }
}

/// The judge's verdict on (rollout, baseline) as HER scored it.
/// The rollout is candidate 1, the baseline candidate 2.
pub fn judge_reward(verdict: Verdict) -> f64 {
    match verdict {
        Verdict::Cand1 => 1.0,
        Verdict::Tie | Verdict::BothBad => 0.0,
        Verdict::Cand2 => -1.0,
    }
}

/// 1–5 stars onto −1..+1.
pub fn human_reward(stars: u8) -> f64 {
    (f64::from(stars.clamp(1, 5)) - 3.0) / 2.0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn format_reward_prizes_clean_replies_and_floors_at_minus_one() {
        let clean =
            "<system_thinking>plan</system_thinking>Lizzy: <role_action>smiles</role_action>Yes.";
        assert_eq!(format_reward(clean, Ending::Natural, "Lizzy"), (1.0, 0));
        let unclosed = "<system_thinking>plan</system_thinking>Lizzy: <role_action>smiles";
        let (r, _) = format_reward(unclosed, Ending::Natural, "Lizzy");
        assert!(r < 1.0, "{r}");
        // No plan at all is a warning.
        assert_eq!(
            format_reward("Lizzy: hello", Ending::Natural, "Lizzy"),
            (0.75, 0)
        );
        let awful = "<system_thinking>a</system_thinking><system_thinking>b</system_thinking></role_action></role_thinking><role_action><role_thinking>";
        assert_eq!(format_reward(awful, Ending::Natural, "Lizzy").0, -1.0);
    }

    #[test]
    fn parts_combine_by_weight_and_skip_what_is_off() {
        let w = RewardWeights {
            judge: 1.0,
            format: 0.5,
            layout: 0.1,
            contains: 2.0,
            human: 0.0,
        };
        let parts = RewardParts {
            judge: Some(-1.0),
            format: Some(1.0),
            layout: Some(0.5),
            contains: None,
            human: Some(1.0),
        };
        assert!((parts.total(&w) - (-1.0 + 0.5 + 0.05)).abs() < 1e-12);
        assert_eq!(contains_reward("a <role_action>b", "<role_action>"), 1.0);
        assert_eq!(contains_reward("a b", "<role_action>"), 0.0);
        assert_eq!(contains_reward("a b", ""), 0.0);
        assert_eq!([1, 3, 5].map(human_reward), [-1.0, 0.0, 1.0]);
        assert_eq!(layout_reward(0.75), 0.25);
        assert_eq!(judge_reward(Verdict::Cand2), -1.0);
    }
}
