//! History rules: what of a reply enters another prompt.

use super::parse::{Ending, parse_reply};
use super::segment::{Layer, SegmentKind, TagFamily};

/// Keeps the segments for which `keep` holds.
fn keep_segments(reply: &str, keep: impl Fn(SegmentKind) -> bool) -> String {
    parse_reply(reply, Ending::Natural)
        .into_iter()
        .filter(|s| keep(s.kind))
        .map(|s| s.text)
        .collect()
}

fn is_plan(kind: SegmentKind) -> bool {
    matches!(
        kind,
        SegmentKind::Text {
            layer: Layer::SystemThinking
        } | SegmentKind::Tag {
            family: TagFamily::System,
            ..
        }
    )
}

fn is_inner_thought(kind: SegmentKind) -> bool {
    matches!(
        kind,
        SegmentKind::Text {
            layer: Layer::RoleThinking
        } | SegmentKind::Tag {
            family: TagFamily::RoleThinking,
            ..
        }
    )
}

/// The reply without the LLM's plan: what history keeps of the character's
/// own turn (its role thinking stays: it remembers what it thought).
pub fn strip_system_thinking(reply: &str) -> String {
    keep_segments(reply, |k| !is_plan(k))
        .trim_start()
        .to_string()
}

/// The reply as another character perceives it: no plan, no inner thoughts.
pub fn strip_role_thinking(reply: &str) -> String {
    keep_segments(reply, |k| !is_plan(k) && !is_inner_thought(k))
        .trim_start()
        .to_string()
}

/// The LLM's plan as written, tags included, closed with
/// `</system_thinking>` if it was left open; "" for a reply without one
/// (a stock model's untagged reply has none: all of it is speech).
pub fn plan_block(reply: &str) -> String {
    let segments = parse_reply(reply, Ending::Natural);
    let plan: Vec<_> = segments.iter().filter(|s| is_plan(s.kind)).collect();
    let has_text = plan
        .iter()
        .any(|s| matches!(s.kind, SegmentKind::Text { .. }));
    if !has_text {
        return String::new();
    }
    let mut out: String = plan.iter().map(|s| s.text.as_str()).collect();
    if !plan
        .iter()
        .any(|s| matches!(s.kind, SegmentKind::Tag { closing: true, .. }))
    {
        out.push_str("</system_thinking>");
    }
    out
}

/// Removes a leading `Name: ` speaker prefix, if it names `speaker`.
pub fn strip_speaker_prefix<'a>(text: &'a str, speaker: &str) -> &'a str {
    let trimmed = text.trim_start();
    trimmed
        .strip_prefix(speaker)
        .and_then(|rest| rest.strip_prefix(':'))
        .map_or(trimmed, str::trim_start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_is_removed_and_role_thinking_kept() {
        let reply = "<system_thinking>She should tease him.</system_thinking>Elizabeth: <role_thinking>How proud.</role_thinking>Indeed?";
        assert_eq!(
            strip_system_thinking(reply),
            "Elizabeth: <role_thinking>How proud.</role_thinking>Indeed?"
        );
        assert_eq!(strip_role_thinking(reply), "Elizabeth: Indeed?");
    }

    #[test]
    fn tolerates_variants() {
        assert_eq!(
            strip_system_thinking("<system_think>plan</system_thinking>Hi"),
            "Hi"
        );
        assert_eq!(strip_system_thinking("<think>plan</think> Hi"), "Hi");
        assert_eq!(
            strip_system_thinking("plain untagged speech"),
            "plain untagged speech"
        );
        // A stock model that ignored the prefill: its text is speech, not plan.
        assert_eq!(
            strip_system_thinking("<system_thinking>Hello there!"),
            "Hello there!"
        );
        // A plan that was cut off and then continued with another tag is still plan.
        assert_eq!(
            strip_system_thinking("<system_thinking>plan<role_action>bows</role_action>"),
            "<role_action>bows</role_action>"
        );
    }

    #[test]
    fn speaker_prefix() {
        assert_eq!(strip_speaker_prefix("Darcy: Madam.", "Darcy"), "Madam.");
        assert_eq!(strip_speaker_prefix("Madam.", "Darcy"), "Madam.");
    }
}
