//! Reply layouts (the order of thinking, action and speech a character
//! uses) and a monitor that warns when one layout takes over: HER saw RL
//! collapse onto a single layout in 96% of replies.

use std::collections::{BTreeMap, VecDeque};

use her_core::format::{Ending, Layer, parse_reply};

/// The visible structure of a reply, e.g. `think>act>speech`: its layers in
/// order, repeats collapsed, the plan and blank speech left out.
pub fn layout_of(raw_reply: &str, ending: Ending) -> String {
    let mut parts: Vec<&'static str> = Vec::new();
    for segment in parse_reply(raw_reply, ending) {
        let name = match segment.kind.layer() {
            Some(Layer::RoleThinking) => "think",
            Some(Layer::RoleAction) => "act",
            Some(Layer::Speech) if !segment.text.trim().is_empty() => "speech",
            _ => continue,
        };
        if parts.last() != Some(&name) {
            parts.push(name);
        }
    }
    if parts.is_empty() {
        "empty".into()
    } else {
        parts.join(">")
    }
}

/// The layouts of the most recent rollouts.
#[derive(Debug, Clone)]
pub struct LayoutMonitor {
    window: VecDeque<String>,
    capacity: usize,
}

impl LayoutMonitor {
    pub fn new(capacity: usize) -> Self {
        Self {
            window: VecDeque::with_capacity(capacity.max(1)),
            capacity: capacity.max(1),
        }
    }

    pub fn push(&mut self, layout: String) {
        if self.window.len() == self.capacity {
            self.window.pop_front();
        }
        self.window.push_back(layout);
    }

    pub fn len(&self) -> usize {
        self.window.len()
    }

    pub fn is_empty(&self) -> bool {
        self.window.is_empty()
    }

    /// Share of the window with this layout (0 when the window is empty).
    pub fn share(&self, layout: &str) -> f64 {
        if self.window.is_empty() {
            return 0.0;
        }
        let n = self.window.iter().filter(|l| *l == layout).count();
        n as f64 / self.window.len() as f64
    }

    fn counts(&self) -> BTreeMap<&str, usize> {
        let mut counts = BTreeMap::new();
        for l in &self.window {
            *counts.entry(l.as_str()).or_insert(0) += 1;
        }
        counts
    }

    /// Shannon entropy of the window's layouts, in bits.
    pub fn entropy_bits(&self) -> f64 {
        entropy_bits(self.counts().values().copied())
    }

    /// The most common layout and its share (ties: the first by name).
    pub fn dominant(&self) -> Option<(String, f64)> {
        let counts = self.counts();
        let (layout, n) = counts
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))?;
        Some((layout.to_string(), *n as f64 / self.window.len() as f64))
    }
}

/// Entropy in bits of a distribution given by counts.
pub fn entropy_bits(counts: impl IntoIterator<Item = usize>) -> f64 {
    let counts: Vec<usize> = counts.into_iter().filter(|&c| c > 0).collect();
    let total: usize = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let bits: f64 = counts
        .iter()
        .map(|&c| {
            let p = c as f64 / total as f64;
            -p * p.log2()
        })
        .sum();
    // One layout alone gives −0.0; say 0.
    bits.max(0.0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn layouts_follow_the_visible_layers_in_order() {
        let l = |s: &str| layout_of(s, Ending::Natural);
        assert_eq!(
            l(
                "<system_thinking>plan</system_thinking>Lizzy: <role_thinking>hm</role_thinking><role_action>smiles</role_action>Yes."
            ),
            "think>act>speech"
        );
        assert_eq!(
            l(
                "<system_thinking>p</system_thinking>Lizzy: Yes. <role_action>nods</role_action> Quite."
            ),
            "speech>act>speech"
        );
        assert_eq!(
            l(
                "<system_thinking>p</system_thinking><role_action>a</role_action><role_action>b</role_action>"
            ),
            "act"
        );
        assert_eq!(l("<system_thinking>only a plan</system_thinking>"), "empty");
        // A stock model that ignores the tags writes plain speech.
        assert_eq!(l("Hello there."), "speech");
    }

    #[test]
    fn the_monitor_reports_share_entropy_and_the_dominant_layout_of_its_window() {
        let mut m = LayoutMonitor::new(4);
        assert_eq!((m.entropy_bits(), m.dominant()), (0.0, None));
        for l in ["act", "speech", "act", "speech"] {
            m.push(l.into());
        }
        assert!((m.entropy_bits() - 1.0).abs() < 1e-12);
        assert_eq!(m.share("act"), 0.5);
        // The window slides: two more "act" push the speeches out.
        m.push("act".into());
        m.push("act".into());
        assert_eq!(m.len(), 4);
        assert_eq!(m.dominant(), Some(("act".into(), 0.75)));
        assert!((entropy_bits([3, 1]) - 0.811_278_124_459_132_8).abs() < 1e-12);
        assert!(entropy_bits([5]).is_sign_positive());
    }
}
