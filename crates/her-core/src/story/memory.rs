//! Long-term memory in the prompt, and the request that asks the model for
//! the rolling summary.

use crate::format::strip_system_thinking;
use crate::generation::PromptSource;
use crate::prompt::Line;

/// The memory paragraph for the end of `===Background===`: pinned memories
/// (newest first when the budget is short), then as much of the summary's
/// end as still fits, with tokens as `count` counts them. Written as story
/// prose headings HER models read like the plot summaries of their
/// training data.
pub fn memory_text(
    pins: &[String],
    summary: Option<&str>,
    budget_tokens: usize,
    count: &dyn Fn(&str) -> usize,
) -> String {
    let mut left = budget_tokens;
    let mut kept_pins: Vec<&str> = Vec::new();
    for pin in pins.iter().rev() {
        // The pin's line: "- " and its newline.
        let cost = count(pin) + 1;
        if cost > left {
            break;
        }
        left -= cost;
        kept_pins.push(pin);
    }
    kept_pins.reverse();
    let mut parts = Vec::new();
    if let Some(summary) = summary.map(str::trim).filter(|s| !s.is_empty()) {
        let head = SUMMARY_HEAD;
        let room = left.saturating_sub(count(head));
        if let Some(text) = tail_within(summary, room, count) {
            parts.push(format!("{head}{text}"));
        }
    }
    if !kept_pins.is_empty() {
        let list: Vec<String> = kept_pins.iter().map(|p| format!("- {p}")).collect();
        parts.push(format!("To remember:\n{}", list.join("\n")));
    }
    parts.join("\n\n")
}

/// How the summary paragraph starts.
pub const SUMMARY_HEAD: &str = "The story so far: ";

/// The longest end of `text` that `count` puts within `tokens`, cut at a
/// word ("…" marks the cut).
fn tail_within(text: &str, tokens: usize, count: &dyn Fn(&str) -> usize) -> Option<String> {
    if count(text) <= tokens {
        return Some(text.to_string());
    }
    // Where a word starts, after the first: the cuts to choose from.
    let starts: Vec<usize> = text
        .char_indices()
        .filter(|&(i, c)| i > 0 && !c.is_whitespace() && text[..i].ends_with(char::is_whitespace))
        .map(|(i, _)| i)
        .collect();
    let cut_at = |i: usize| format!("…{}", &text[starts[i]..]);
    // A later start gives a shorter tail; counts grow with the tail's
    // length, so the first start that fits is the longest tail that does.
    let first_fit = starts.partition_point(|&s| count(&format!("…{}", &text[s..])) > tokens);
    (first_fit < starts.len()).then(|| cut_at(first_fit))
}

/// A pinned message as a memory: its visible text, without the plan.
pub fn pin_text(speaker: &str, raw: &str) -> String {
    let text = strip_system_thinking(raw);
    let text = text.trim();
    let text = text
        .strip_prefix(&format!("{speaker}:"))
        .unwrap_or(text)
        .trim();
    format!("{speaker}: {text}")
}

/// The prompt that asks for a new summary: the previous one and the
/// messages since, as a plain ChatML exchange (no HER layout: this is a
/// writing task, not a role-play turn). When it does not fit, the oldest
/// messages are left out first.
pub struct SummaryPrompt {
    pub previous: Option<String>,
    pub lines: Vec<Line>,
}

const SUMMARY_SYSTEM: &str = "You keep the memory of a long role-play story. Write a short \
summary of the story so far in the past tense: who did what, what was revealed and decided, \
how the characters feel about each other. Keep names, places and promises. Write plain prose \
with no tags, no lists and no lines of dialogue.";

impl SummaryPrompt {
    fn body(&self, skip: usize) -> String {
        let mut text = String::new();
        if let Some(previous) = &self.previous {
            text.push_str("The summary so far:\n");
            text.push_str(previous.trim());
            text.push_str("\n\nWhat happened next:\n");
        } else {
            text.push_str("The story:\n");
        }
        for line in self.lines.iter().skip(skip) {
            let said = strip_system_thinking(&line.text);
            let said = said.trim();
            let said = said
                .strip_prefix(&format!("{}:", line.speaker))
                .unwrap_or(said)
                .trim();
            text.push_str(&format!("{}: {said}\n", line.speaker));
        }
        text.push_str("\nWrite the updated summary of the whole story.");
        text
    }
}

impl PromptSource for SummaryPrompt {
    fn render(&self, skip: usize) -> String {
        crate::chatml::exchange(SUMMARY_SYSTEM, &self.body(skip))
    }

    fn droppable_turns(&self) -> usize {
        self.lines.len().saturating_sub(1)
    }
}

/// A summary as the model wrote it, cleaned: no think blocks, no tags.
pub fn clean_summary(raw: &str) -> String {
    let mut text = strip_system_thinking(raw);
    while let Some(open) = text.find("<think>") {
        let end = text[open..]
            .find("</think>")
            .map_or(text.len(), |e| open + e + "</think>".len());
        text.replace_range(open..end, " ");
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    // Drop <think>…</think> and any stray tags, keep the prose.
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        match rest[open..].find('>') {
            Some(close) => rest = &rest[open + close + 1..],
            None => {
                // Not a tag: keep the text.
                out.push('<');
                rest = &rest[open + 1..];
            }
        }
    }
    out.push_str(rest);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_keeps_newest_pins_and_the_summary_end_within_budget() {
        let pins = vec!["old pin".to_string(), "new pin".to_string()];
        let count = &crate::prompt::estimate_tokens;
        let full = memory_text(&pins, Some("They met at the ball."), 100, count);
        assert_eq!(
            full,
            "The story so far: They met at the ball.\n\nTo remember:\n- old pin\n- new pin"
        );
        // Room for one pin only: the newest stays.
        let tight = memory_text(&pins, None, 4, count);
        assert_eq!(tight, "To remember:\n- new pin");
        let long = "word ".repeat(200);
        let cut = memory_text(&[], Some(&long), 20, count);
        assert!(cut.starts_with("The story so far: …word"));
        assert!(count(&cut) <= 20, "{}", count(&cut));
        assert_eq!(memory_text(&pins, Some("x"), 0, count), "");
    }

    #[test]
    fn the_summary_is_cut_to_the_callers_counts() {
        // One token a word: the budget is words.
        let words = &|t: &str| t.split_whitespace().count();
        let summary = "one two three four five six seven eight";
        let text = memory_text(&[], Some(summary), 4 + 3, words);
        assert_eq!(text, "The story so far: …six seven eight");
        assert!(words(&text) <= 7);
        // A budget the head alone fills leaves no summary.
        assert_eq!(memory_text(&[], Some(summary), 4, words), "");
        // Pins cost their words plus one.
        let pins = vec!["a b".to_string(), "c d e".to_string()];
        assert_eq!(memory_text(&pins, None, 4, words), "To remember:\n- c d e");
    }

    #[test]
    fn summary_prompt_drops_oldest_lines_and_cleans_output() {
        let p = SummaryPrompt {
            previous: Some("Before.".into()),
            lines: vec![Line::new("A", "one"), Line::new("B", "B: two")],
        };
        let all = p.render(0);
        assert!(
            all.contains("The summary so far:\nBefore.\n\nWhat happened next:\nA: one\nB: two\n")
        );
        assert!(!p.render(1).contains("A: one"));
        assert_eq!(p.droppable_turns(), 1);
        assert_eq!(
            clean_summary("<think>hm</think> They  met.\n<b>Then</b> left. 1 < 2"),
            "They met. Then left. 1 < 2"
        );
    }
}
