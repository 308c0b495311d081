//! The HER reply format: segments, a streaming parser, a linter and the
//! history rules that depend on them.
//!
//! A reply looks like
//! `<system_thinking>PLAN</system_thinking>Name: <role_thinking>…</role_thinking><role_action>…</role_action>speech`.

pub mod edit;
mod lint;
mod parse;
mod segment;
mod strip;
#[cfg(test)]
mod tests;

pub use edit::{ThinkingEdit, rewrite_prefix, thinking_blocks};
pub use lint::{Finding, FindingKind, LintContext, Severity, health, lint, names_match};
pub use lint::{lines_for_others, looks_like_name};
pub use parse::{Ending, ReplyParser, as_untagged, is_untagged_reply, parse_reply, parse_with};
pub use segment::{Layer, Segment, SegmentKind, TagFamily, push_merged};
pub use strip::{plan_block, strip_role_thinking, strip_speaker_prefix, strip_system_thinking};

/// What the generation prompt ends with, so the model writes its plan first.
/// Stored replies begin with it, so they parse like any other reply.
pub const PREFILL: &str = "<system_thinking>";

/// A reply being streamed: segments so far, merged by layer.
#[derive(Debug, Clone, Default)]
pub struct StreamedReply {
    parser: ReplyParser,
    pub segments: Vec<Segment>,
    pub finished: bool,
}

impl StreamedReply {
    /// A reply whose generation started after the prompt's prefill.
    pub fn after_prefill() -> Self {
        let mut reply = Self::default();
        reply.push(PREFILL);
        reply
    }

    pub fn push(&mut self, chunk: &str) {
        for s in self.parser.push(chunk) {
            push_merged(&mut self.segments, s);
        }
    }

    pub fn finish(&mut self, ending: Ending) {
        let (rest, untagged) = self.parser.finish(ending);
        for s in rest {
            push_merged(&mut self.segments, s);
        }
        if untagged {
            as_untagged(&mut self.segments);
        }
        self.finished = true;
    }

    /// The text of one layer so far (e.g. the plan for the thinking pane).
    pub fn layer_text(&self, layer: Layer) -> String {
        self.segments
            .iter()
            .filter(|s| s.kind.layer() == Some(layer))
            .map(|s| s.text.as_str())
            .collect()
    }

    /// The raw text so far.
    pub fn raw(&self) -> String {
        self.segments.iter().map(|s| s.text.as_str()).collect()
    }
}
