//! Streaming parser for HER replies.
//!
//! Text arrives in arbitrary chunks (token pieces); a tag or a speaker prefix
//! may be split across them. The parser holds back only what could still be
//! the start of a tag or prefix and classifies everything else at once, so a
//! pane can show the plan while the model is still writing it.
//!
//! Guarantees: the emitted segments concatenate to the input exactly, and
//! after merging neighbours of the same layer the result is the same for any
//! chunking of the same input (see the property tests).

use super::segment::{Layer, Segment, SegmentKind, TagFamily, push_merged};

/// Longest tag we recognise: `</long_role_thinking>` is 21 bytes.
const MAX_TAG_LEN: usize = 24;
/// Longest speaker prefix accepted ("Name: "), in bytes.
const MAX_SPEAKER_LEN: usize = 64;

/// How a reply ended, which decides what an unclosed plan means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The model ended its turn (end-of-generation token or stop string).
    Natural,
    /// Cut off (token limit, cancel, full context): an open block stays open.
    CutOff,
}

#[derive(Debug, Clone)]
pub struct ReplyParser {
    /// The block we are inside, or `None` for plain speech.
    open: Option<TagFamily>,
    /// Input not classified yet (a possible tag or speaker prefix).
    pending: String,
    /// The next visible text may begin with a `Name: ` prefix.
    at_visible_start: bool,
    /// Bytes consumed so far (for positions).
    consumed: usize,
    /// Tags seen, to recognise a reply whose only tag is the prefill.
    tags_seen: usize,
    first_tag_at_start: bool,
    closed_a_system_block: bool,
}

impl Default for ReplyParser {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplyParser {
    pub fn new() -> Self {
        Self {
            open: None,
            pending: String::new(),
            at_visible_start: true,
            consumed: 0,
            tags_seen: 0,
            first_tag_at_start: false,
            closed_a_system_block: false,
        }
    }

    /// Feeds a chunk; returns the segments it completed.
    pub fn push(&mut self, chunk: &str) -> Vec<Segment> {
        let mut out = Vec::new();
        self.push_with(chunk, &mut |kind, text| {
            push_merged(&mut out, Segment::new(kind, text))
        });
        out
    }

    /// Feeds a chunk, passing each classified run to `emit` without copying
    /// more than the unresolved tail.
    pub fn push_with(&mut self, chunk: &str, emit: &mut impl FnMut(SegmentKind, &str)) {
        if self.pending.is_empty() {
            let used = self.scan(chunk, false, emit);
            self.pending.push_str(&chunk[used..]);
        } else {
            self.pending.push_str(chunk);
            let pending = std::mem::take(&mut self.pending);
            let used = self.scan(&pending, false, emit);
            self.pending = pending;
            self.pending.drain(..used);
        }
    }

    /// Ends the input: classifies what was held back. Returns the last
    /// segments and whether the whole reply must be read as plain speech
    /// (see [`is_untagged_reply`]).
    pub fn finish(&mut self, ending: Ending) -> (Vec<Segment>, bool) {
        let mut out = Vec::new();
        let untagged = self.finish_with(ending, &mut |kind, text| {
            push_merged(&mut out, Segment::new(kind, text))
        });
        (out, untagged)
    }

    pub fn finish_with(
        &mut self,
        ending: Ending,
        emit: &mut impl FnMut(SegmentKind, &str),
    ) -> bool {
        let pending = std::mem::take(&mut self.pending);
        self.scan(&pending, true, emit);
        ending == Ending::Natural
            && self.open == Some(TagFamily::System)
            && self.tags_seen == 1
            && self.first_tag_at_start
            && !self.closed_a_system_block
    }

    fn current_layer(&self) -> Layer {
        self.open.map_or(Layer::Speech, TagFamily::layer)
    }

    /// Classifies as much of `text` as can be decided; returns the bytes used.
    fn scan(
        &mut self,
        text: &str,
        at_end: bool,
        emit: &mut impl FnMut(SegmentKind, &str),
    ) -> usize {
        let mut pos = 0;
        let mut out = |parser: &mut Self, kind: SegmentKind, len: usize, pos: &mut usize| {
            if len > 0 {
                emit(kind, &text[*pos..*pos + len]);
            }
            *pos += len;
            parser.consumed += len;
        };
        while pos < text.len() {
            let rest = &text[pos..];
            if self.at_visible_start && self.open.is_none() {
                match speaker_prefix(rest, at_end) {
                    Prefix::Whitespace(n) => {
                        out(self, SegmentKind::text(Layer::Speech), n, &mut pos);
                        continue;
                    }
                    Prefix::Found(n) => {
                        self.at_visible_start = false;
                        out(self, SegmentKind::Speaker, n, &mut pos);
                        continue;
                    }
                    Prefix::Absent => self.at_visible_start = false,
                    Prefix::NeedMore => return pos,
                }
            }
            let layer = self.current_layer();
            let Some(lt) = memchr_lt(rest) else {
                self.mark_visible(layer);
                out(self, SegmentKind::text(layer), rest.len(), &mut pos);
                return pos;
            };
            if lt > 0 {
                self.mark_visible(layer);
                out(self, SegmentKind::text(layer), lt, &mut pos);
                continue;
            }
            match parse_tag(rest) {
                TagParse::Tag {
                    len,
                    family,
                    closing,
                } => {
                    self.on_tag(family, closing);
                    out(self, SegmentKind::Tag { family, closing }, len, &mut pos);
                }
                TagParse::NotATag => {
                    // A lone '<' is text of the current layer.
                    self.mark_visible(layer);
                    out(self, SegmentKind::text(layer), 1, &mut pos);
                }
                TagParse::NeedMore if at_end => {
                    self.mark_visible(layer);
                    out(self, SegmentKind::text(layer), rest.len(), &mut pos);
                }
                TagParse::NeedMore => return pos,
            }
        }
        pos
    }

    /// Once speech has started, a later `Name: ` is not a prefix.
    fn mark_visible(&mut self, layer: Layer) {
        if layer == Layer::Speech {
            self.at_visible_start = false;
        }
    }

    fn on_tag(&mut self, family: TagFamily, closing: bool) {
        if self.tags_seen == 0 {
            self.first_tag_at_start = self.consumed == 0;
        }
        self.tags_seen += 1;
        if closing {
            // Any close ends the open block, matching or not (the linter reports mismatches).
            if self.open == Some(TagFamily::System) {
                self.closed_a_system_block = true;
                self.at_visible_start = true;
            }
            self.open = None;
        } else if family == TagFamily::RoleSpeech {
            // Unwrapped: its content is plain speech.
            self.open = None;
        } else {
            // Blocks are flat: an open tag inside another block switches to it.
            self.open = Some(family);
        }
    }
}

/// Position of the next '<': plain text between tags is skipped at memchr speed.
fn memchr_lt(text: &str) -> Option<usize> {
    memchr::memchr(b'<', text.as_bytes())
}

fn speaker_prefix(p: &str, at_end: bool) -> Prefix {
    let ws = p.len() - p.trim_start().len();
    if ws > 0 {
        return Prefix::Whitespace(ws);
    }
    let bytes = p.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if i >= MAX_SPEAKER_LEN {
            return Prefix::Absent;
        }
        let b = bytes[i];
        // ASCII fast path; other characters are decoded.
        let (c, len) = if b.is_ascii() {
            (char::from(b), 1)
        } else {
            match p[i..].chars().next() {
                Some(c) => (c, c.len_utf8()),
                None => return Prefix::Absent,
            }
        };
        match c {
            ':' if i > 0 => {
                return match bytes.get(i + 1) {
                    Some(b' ') => Prefix::Found(i + 2),
                    Some(_) => Prefix::Absent,
                    None if at_end => Prefix::Absent,
                    None => Prefix::NeedMore,
                };
            }
            c if i == 0 && !c.is_alphabetic() => return Prefix::Absent,
            c if c.is_alphanumeric() || matches!(c, ' ' | '.' | '\'' | '-' | '’') => {}
            _ => return Prefix::Absent,
        }
        i += len;
    }
    if at_end {
        Prefix::Absent
    } else {
        Prefix::NeedMore
    }
}

enum Prefix {
    Whitespace(usize),
    Found(usize),
    Absent,
    NeedMore,
}

enum TagParse {
    Tag {
        len: usize,
        family: TagFamily,
        closing: bool,
    },
    NotATag,
    NeedMore,
}

/// Recognises a HER tag at the start of `text` (which starts with '<').
fn parse_tag(text: &str) -> TagParse {
    let bytes = text.as_bytes();
    let mut i = 1;
    let closing = bytes.get(1) == Some(&b'/');
    if closing {
        i = 2;
    }
    let name_start = i;
    while i < bytes.len() && i < MAX_TAG_LEN {
        match bytes[i] {
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => i += 1,
            b'>' if i > name_start => {
                return match TagFamily::from_name(&text[name_start..i]) {
                    Some(family) => TagParse::Tag {
                        len: i + 1,
                        family,
                        closing,
                    },
                    None => TagParse::NotATag,
                };
            }
            _ => return TagParse::NotATag,
        }
    }
    if i >= MAX_TAG_LEN {
        TagParse::NotATag
    } else {
        TagParse::NeedMore
    }
}

/// Parses a whole reply at once.
pub fn parse_reply(text: &str, ending: Ending) -> Vec<Segment> {
    let mut segments = Vec::new();
    let untagged = parse_with(text, ending, &mut |kind, t| {
        push_merged(&mut segments, Segment::new(kind, t))
    });
    if untagged {
        as_untagged(&mut segments);
    }
    segments
}

/// Parses a whole reply, passing each run to `emit` (runs of one layer may
/// come in several pieces). Returns whether the reply is untagged speech
/// (see [`as_untagged`]); the caller applies that.
pub fn parse_with(text: &str, ending: Ending, emit: &mut impl FnMut(SegmentKind, &str)) -> bool {
    let mut parser = ReplyParser::new();
    parser.push_with(text, emit);
    parser.finish_with(ending, emit)
}

/// The model ignored the `<system_thinking>` prefill and wrote plain text
/// (a stock chat model): everything after the opening tag is speech. The
/// streaming caller applies this when `finish` says so.
pub fn as_untagged(segments: &mut Vec<Segment>) {
    let mut out = Vec::with_capacity(segments.len());
    for s in segments.drain(..) {
        let kind = match s.kind {
            SegmentKind::Text { .. } | SegmentKind::Speaker => SegmentKind::text(Layer::Speech),
            tag => tag,
        };
        push_merged(&mut out, Segment::new(kind, s.text));
    }
    *segments = out;
}

/// Whether a parsed reply is the prefill followed by untagged text.
pub fn is_untagged_reply(text: &str) -> bool {
    let mut parser = ReplyParser::new();
    parser.push(text);
    parser.finish(Ending::Natural).1
}
