//! Removing thinking layers from a reply before it enters another prompt.
//!
//! Tolerates what real models emit: alternative spellings of the plan tag
//! (`<system_think>`, `<think>`, `<thought>`), mixed open/close spellings and
//! an unclosed plan (then everything after the tag is plan).

const PLAN_OPEN: &[&str] = &[
    "<system_thinking>",
    "<system_think>",
    "<think>",
    "<thought>",
];
const PLAN_CLOSE: &[&str] = &[
    "</system_thinking>",
    "</system_think>",
    "</think>",
    "</thought>",
];
const ROLE_OPEN: &[&str] = &["<role_thinking>", "<long_role_thinking>"];
const ROLE_CLOSE: &[&str] = &["</role_thinking>", "</long_role_thinking>"];

/// Earliest occurrence at or after `from` of any of `tags`: (position, tag length).
fn find_any(text: &str, from: usize, tags: &[&str]) -> Option<(usize, usize)> {
    tags.iter()
        .filter_map(|t| text[from..].find(t).map(|at| (from + at, t.len())))
        .min()
}

/// Removes every block delimited by one of `open` … one of `close`. An
/// unclosed block runs to the end when `unclosed_to_end`, else it is kept.
fn strip_blocks(text: &str, open: &[&str], close: &[&str], unclosed_to_end: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some((start, open_len)) = find_any(text, pos, open) {
        match find_any(text, start + open_len, close) {
            Some((end, close_len)) => {
                out.push_str(&text[pos..start]);
                pos = end + close_len;
            }
            None if unclosed_to_end => {
                out.push_str(&text[pos..start]);
                pos = text.len();
            }
            None => break,
        }
    }
    out.push_str(&text[pos..]);
    out
}

/// The reply without the LLM's plan: what history keeps of an assistant turn.
/// A close tag with no open tag (the plan began in the prefill) also counts.
pub fn strip_system_thinking(reply: &str) -> String {
    let mut text = reply;
    // The plan may have been opened by the prompt's prefill: only a close tag is left.
    if let Some((close, close_len)) = find_any(text, 0, PLAN_CLOSE)
        && find_any(text, 0, PLAN_OPEN).is_none_or(|(open, _)| open > close)
    {
        text = &text[close + close_len..];
    }
    strip_blocks(text, PLAN_OPEN, PLAN_CLOSE, true)
        .trim_start()
        .to_string()
}

/// The reply as another character perceives it: no plan, no inner thoughts.
pub fn strip_role_thinking(reply: &str) -> String {
    strip_blocks(&strip_system_thinking(reply), ROLE_OPEN, ROLE_CLOSE, false)
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
            strip_system_thinking("plan from prefill</system_thinking>Hi"),
            "Hi"
        );
        assert_eq!(strip_system_thinking("<system_thinking>never closed"), "");
        assert_eq!(
            strip_system_thinking("plain untagged speech"),
            "plain untagged speech"
        );
    }

    #[test]
    fn speaker_prefix() {
        assert_eq!(strip_speaker_prefix("Darcy: Madam.", "Darcy"), "Madam.");
        assert_eq!(strip_speaker_prefix("Madam.", "Darcy"), "Madam.");
    }
}
