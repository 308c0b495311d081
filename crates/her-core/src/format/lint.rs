//! Format linter: what is wrong with a reply, where, and how badly.
//!
//! The TUI shows findings live; training uses them to filter samples and as
//! a format reward (HER itself never penalised malformed tags).

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::segment::{Layer, Segment, SegmentKind, TagFamily};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum FindingKind {
    /// No `<system_thinking>` block where one was expected.
    MissingSystemThinking,
    /// More than one plan block.
    RepeatedSystemThinking,
    /// A block opened and never closed.
    UnclosedTag { family: TagFamily },
    /// A close tag with no open block.
    StrayCloseTag { family: TagFamily },
    /// A close tag of another family than the open block.
    MismatchedCloseTag { open: TagFamily, close: TagFamily },
    /// A block opened inside another (the format is flat).
    NestedTag { outer: TagFamily, inner: TagFamily },
    /// Speech, an action or a prefix written for another character.
    LineForOther { name: String },
    /// A plan block in text that goes into history (characters must not see it).
    SystemThinkingInHistory,
    /// Thinking only: nothing anyone can see or hear.
    NoVisibleReply,
    /// A tolerated but untrained spelling (`<think>`, `<role_speech>`, …).
    UnusualTag { tag: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub severity: Severity,
    /// Byte range in the raw reply.
    pub span: Range<usize>,
}

/// What the linter should know about the reply.
#[derive(Debug, Clone, Default)]
pub struct LintContext {
    /// The character who wrote the reply.
    pub character: String,
    /// Whether a plan block is expected (a HER model's reply).
    pub expect_system_thinking: bool,
    /// Whether the text is about to enter a prompt's history.
    pub in_history: bool,
}

/// Lints a parsed reply. `segments` must be the parse of the whole reply.
pub fn lint(segments: &[Segment], cx: &LintContext) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut add = |kind: FindingKind, severity: Severity, span: Range<usize>| {
        findings.push(Finding {
            kind,
            severity,
            span,
        });
    };
    let mut open: Option<(TagFamily, usize)> = None;
    let mut plans = 0usize;
    let mut visible = false;
    let mut pos = 0usize;
    for seg in segments {
        let span = pos..pos + seg.text.len();
        match seg.kind {
            SegmentKind::Tag { family, closing } => {
                let canonical = matches!(
                    seg.text.to_ascii_lowercase().as_str(),
                    "<system_thinking>"
                        | "</system_thinking>"
                        | "<role_thinking>"
                        | "</role_thinking>"
                        | "<role_action>"
                        | "</role_action>"
                );
                if !canonical {
                    add(
                        FindingKind::UnusualTag {
                            tag: seg.text.clone(),
                        },
                        Severity::Info,
                        span.clone(),
                    );
                }
                match (closing, open) {
                    (false, _) if family == TagFamily::RoleSpeech => open = None,
                    (false, outer) => {
                        if let Some((outer, _)) = outer {
                            add(
                                FindingKind::NestedTag {
                                    outer,
                                    inner: family,
                                },
                                Severity::Error,
                                span.clone(),
                            );
                        }
                        if family == TagFamily::System {
                            plans += 1;
                            if plans > 1 {
                                add(
                                    FindingKind::RepeatedSystemThinking,
                                    Severity::Error,
                                    span.clone(),
                                );
                            }
                            if cx.in_history {
                                add(
                                    FindingKind::SystemThinkingInHistory,
                                    Severity::Error,
                                    span.clone(),
                                );
                            }
                        }
                        open = Some((family, span.start));
                    }
                    (true, None) if family == TagFamily::RoleSpeech => {}
                    (true, None) => add(
                        FindingKind::StrayCloseTag { family },
                        Severity::Warning,
                        span.clone(),
                    ),
                    (true, Some((o, _))) => {
                        if o != family {
                            add(
                                FindingKind::MismatchedCloseTag {
                                    open: o,
                                    close: family,
                                },
                                Severity::Warning,
                                span.clone(),
                            );
                        }
                        open = None;
                    }
                }
            }
            SegmentKind::Speaker => {
                if let Some(name) = seg.speaker_name()
                    && !cx.character.is_empty()
                    && !names_match(name, &cx.character)
                {
                    add(
                        FindingKind::LineForOther {
                            name: name.to_string(),
                        },
                        Severity::Error,
                        span.clone(),
                    );
                }
            }
            SegmentKind::Text { layer } => {
                if matches!(layer, Layer::Speech | Layer::RoleAction) && !seg.text.trim().is_empty()
                {
                    visible = true;
                }
                if layer == Layer::Speech {
                    for (at, name) in lines_for_others(&seg.text, &cx.character) {
                        add(
                            FindingKind::LineForOther { name },
                            Severity::Error,
                            pos + at..pos + at + 1,
                        );
                    }
                }
            }
        }
        pos = span.end;
    }
    if let Some((family, start)) = open {
        add(
            FindingKind::UnclosedTag { family },
            Severity::Warning,
            start..pos,
        );
    }
    if cx.expect_system_thinking && plans == 0 {
        add(FindingKind::MissingSystemThinking, Severity::Warning, 0..0);
    }
    if !visible && pos > 0 {
        add(FindingKind::NoVisibleReply, Severity::Warning, 0..pos);
    }
    findings
}

/// Titles a model may add or drop in front of a name ("Mr. Darcy" for
/// "Fitzwilliam Darcy").
const TITLES: &[&str] = &[
    "mr",
    "mrs",
    "miss",
    "ms",
    "mister",
    "madam",
    "madame",
    "dr",
    "doctor",
    "sir",
    "lady",
    "lord",
    "captain",
    "colonel",
    "professor",
    "master",
];

/// A name's leading title (lower case) and its other words (lower case,
/// letters and digits only).
fn title_and_words(name: &str) -> (Option<String>, Vec<String>) {
    let mut words: Vec<String> = name
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let title = match words.first() {
        Some(first) if words.len() > 1 && TITLES.contains(&first.as_str()) => Some(words.remove(0)),
        _ => None,
    };
    (title, words)
}

/// Whether `written` (a speaker name in a reply) names `character`: the
/// same name ignoring case and punctuation, or a part of it (a first name or
/// a surname alone, "Mr. Darcy" for "Fitzwilliam Darcy"), but never with a
/// different title ("Mrs. Bennet" is not "Mr. Bennet").
pub fn names_match(written: &str, character: &str) -> bool {
    let (written_title, written_words) = title_and_words(written);
    let (own_title, own_words) = title_and_words(character);
    if written_words.is_empty() || own_words.is_empty() {
        return written.trim().eq_ignore_ascii_case(character.trim());
    }
    if let (Some(a), Some(b)) = (&written_title, &own_title)
        && a != b
    {
        return false;
    }
    written_words.iter().all(|w| own_words.contains(w))
        || own_words.iter().all(|w| written_words.contains(w))
}

/// `Name: ` at the start of a later line, for a name other than `me`:
/// (byte offset of the line, name).
pub fn lines_for_others(text: &str, me: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        if start == 0 {
            continue; // the first line is the reply's own start, not a new speaker
        }
        if let Some((name, _)) = line.split_once(": ")
            && looks_like_name(name)
            && (me.is_empty() || !names_match(name, me))
        {
            found.push((start, name.to_string()));
        }
    }
    found
}

pub fn looks_like_name(s: &str) -> bool {
    let s = s.trim();
    !s.is_empty()
        && s.len() <= 48
        && s.chars().next().is_some_and(char::is_uppercase)
        && s.split_whitespace().count() <= 4
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '.' | '\'' | '-' | '’'))
}

/// Errors and warnings, for a status bar ("format: 1 error, 2 warnings").
pub fn health(findings: &[Finding]) -> (usize, usize) {
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let warnings = findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .count();
    (errors, warnings)
}
