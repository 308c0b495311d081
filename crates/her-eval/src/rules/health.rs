//! Format health and completeness of one turn: the linter's tag errors, a
//! reply without any HER markup, a turn with nothing in it or nothing anyone
//! can see, and a turn the token limit cut off (worse inside a tag, where
//! the rest of the reply is missing).

use super::{Rule, RuleTurn, TurnContent};
use her_core::format::{
    Ending, FindingKind, LintContext, SegmentKind, TagFamily, is_untagged_reply, lint, parse_reply,
};
use her_engine::FinishReason;

/// Flaws of one turn: (rule, description, severity).
pub fn check(turn: &RuleTurn, content: &TurnContent) -> Vec<(Rule, String, u8)> {
    let mut flaws = Vec::new();
    let cut = matches!(
        turn.finish,
        FinishReason::MaxTokens | FinishReason::ContextFull
    );
    let ending = if cut { Ending::CutOff } else { Ending::Natural };
    let segments = parse_reply(turn.text, ending);
    if content.plain.is_empty() {
        flaws.push((Rule::Empty, "says and does nothing".to_string(), 4));
    } else if !content.visible {
        flaws.push((
            Rule::NoVisibleReply,
            "only thinks: nothing is said or done".to_string(),
            3,
        ));
    }
    if cut && !content.plain.is_empty() {
        let (what, severity) = match open_at_end(&segments) {
            Some(family) => (format!("inside {}", tag_name(family)), 2),
            None => ("mid-speech".to_string(), 1),
        };
        flaws.push((
            Rule::CutOff,
            format!("cut off by the {} {what}", limit_name(turn.finish)),
            severity,
        ));
    }
    if !cut && is_untagged_reply(turn.text) {
        flaws.push((
            Rule::Format,
            "untagged reply: no plan, thoughts or actions marked".to_string(),
            1,
        ));
        return flaws;
    }
    let findings = lint(
        &segments,
        &LintContext {
            character: turn.speaker.to_string(),
            expect_system_thinking: true,
            in_history: false,
        },
    );
    let mut seen: Vec<&'static str> = Vec::new();
    for finding in &findings {
        let (label, severity) = match &finding.kind {
            FindingKind::RepeatedSystemThinking => ("more than one plan block", 2),
            FindingKind::NestedTag { .. } => ("a tag opened inside another", 2),
            FindingKind::MissingSystemThinking => ("no plan block", 1),
            FindingKind::StrayCloseTag { .. } => ("a close tag with nothing open", 1),
            FindingKind::MismatchedCloseTag { .. } => ("a block closed by the wrong tag", 1),
            // Cut-off turns are reported above as such.
            FindingKind::UnclosedTag { .. } if !cut => ("a tag never closed", 1),
            // Reported by their own rules, or not a flaw of the transcript.
            FindingKind::UnclosedTag { .. }
            | FindingKind::LineForOther { .. }
            | FindingKind::NoVisibleReply
            | FindingKind::SystemThinkingInHistory
            | FindingKind::UnusualTag { .. } => continue,
        };
        if !seen.contains(&label) {
            seen.push(label);
            flaws.push((Rule::Format, format!("broken format: {label}"), severity));
        }
    }
    flaws
}

/// The block still open where the text ends, if any.
fn open_at_end(segments: &[her_core::format::Segment]) -> Option<TagFamily> {
    let mut open = None;
    for segment in segments {
        if let SegmentKind::Tag { family, closing } = segment.kind {
            open = (!closing && family != TagFamily::RoleSpeech).then_some(family);
        }
    }
    open
}

fn tag_name(family: TagFamily) -> &'static str {
    match family {
        TagFamily::System => "<system_thinking>",
        TagFamily::RoleThinking => "<role_thinking>",
        TagFamily::RoleAction => "<role_action>",
        TagFamily::RoleSpeech => "<role_speech>",
    }
}

fn limit_name(finish: FinishReason) -> &'static str {
    match finish {
        FinishReason::ContextFull => "full context",
        _ => "token limit",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::turn_content;

    fn found(text: &str, finish: FinishReason) -> Vec<(Rule, u8)> {
        let turn = RuleTurn {
            speaker: "Ann",
            text,
            finish,
        };
        check(&turn, &turn_content(text))
            .into_iter()
            .map(|(r, _, s)| (r, s))
            .collect()
    }

    const END: FinishReason = FinishReason::EndOfGeneration;
    const MAX: FinishReason = FinishReason::MaxTokens;

    #[test]
    fn a_clean_turn_has_no_flaws() {
        let clean = "<system_thinking>plan</system_thinking>Ann: <role_thinking>Hm.</role_thinking>\
                     <role_action>pours</role_action>More tea?";
        assert_eq!(found(clean, END), []);
    }

    #[test]
    fn empty_thinking_only_and_untagged() {
        assert_eq!(
            found("<system_thinking>plan</system_thinking>", END),
            [(Rule::Empty, 4)]
        );
        assert_eq!(
            found(
                "<system_thinking>p</system_thinking><role_thinking>Hm.</role_thinking>",
                END
            ),
            [(Rule::NoVisibleReply, 3)]
        );
        assert_eq!(
            found("<system_thinking>Hello there, Bob.", END),
            [(Rule::Format, 1)]
        );
    }

    #[test]
    fn cut_off_inside_a_tag_or_mid_speech() {
        assert_eq!(
            found(
                "<system_thinking>p</system_thinking><role_action>reaches for",
                MAX
            ),
            [(Rule::CutOff, 2)]
        );
        assert_eq!(
            found(
                "<system_thinking>p</system_thinking>Ann: I was about to",
                MAX
            ),
            [(Rule::CutOff, 1)]
        );
        // A plan that never ended: the judge reads it as speech, cut off.
        assert_eq!(
            found("<system_thinking>She should first", MAX),
            [(Rule::CutOff, 2)]
        );
        // Nothing at all: empty, not cut-off as well.
        assert_eq!(found("<system_thinking>", MAX), [(Rule::Empty, 4)]);
    }

    #[test]
    fn broken_tags_once_per_kind() {
        let nested = "<system_thinking>p</system_thinking><role_thinking>a<role_action>b\
                      </role_action>c</role_action>d</role_action>";
        let got = found(nested, END);
        assert!(got.contains(&(Rule::Format, 2)), "{got:?}");
        assert_eq!(
            got.iter().filter(|f| **f == (Rule::Format, 1)).count(),
            1,
            "{got:?}"
        );
        let two_plans =
            "<system_thinking>a</system_thinking>Hi<system_thinking>b</system_thinking>";
        assert_eq!(found(two_plans, END), [(Rule::Format, 2)]);
    }
}
