//! Exports of the active branch: plain text, Markdown and SillyTavern chat
//! JSONL. Written atomically (temp file, fsync, rename).

use std::path::Path;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

use super::error::SessionError;
use super::message::{Message, Role};
use super::state::Session;
use super::tree::NodeId;
use crate::format::{
    Ending, Layer, SegmentKind, parse_reply, strip_role_thinking, strip_system_thinking,
};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportOptions {
    /// Leave out the characters' inner thoughts (`<role_thinking>`).
    pub drop_role_thinking: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    PlainText,
    Markdown,
    SillyTavern,
}

/// How actions and thoughts are marked in visible text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// `(action)`, `[thought]`: the reference demo's convention.
    Plain,
    /// `*action*`, `*[thought]*`: the usual role-play Markdown.
    Markdown,
}

impl Style {
    fn marks(self, layer: Layer) -> (&'static str, &'static str) {
        match (self, layer) {
            (Style::Plain, Layer::RoleAction) => ("(", ")"),
            (Style::Plain, Layer::RoleThinking) => ("[", "]"),
            (Style::Markdown, Layer::RoleAction) => ("*", "*"),
            (Style::Markdown, Layer::RoleThinking) => ("*[", "]*"),
            _ => ("", ""),
        }
    }
}

/// The text a reader sees: no plan, no tags, no leading `Name: ` naming the
/// message's own speaker (the export puts the name in front itself).
fn visible_text(message: &Message, style: Style, drop_role_thinking: bool) -> String {
    let segments = if message.meta.incomplete {
        // The strip helpers assume a natural ending, which would turn the
        // unclosed plan of a cut-off reply into speech.
        parse_reply(&message.text, Ending::CutOff)
            .into_iter()
            .filter(|s| !(drop_role_thinking && s.kind.layer() == Some(Layer::RoleThinking)))
            .collect()
    } else if drop_role_thinking {
        parse_reply(&strip_role_thinking(&message.text), Ending::Natural)
    } else {
        parse_reply(&strip_system_thinking(&message.text), Ending::Natural)
    };
    let mut out = Rendered::default();
    let mut run: Option<(Layer, String)> = None;
    for segment in segments {
        match segment.kind {
            SegmentKind::Text { layer } => match &mut run {
                Some((l, t)) if *l == layer => t.push_str(&segment.text),
                _ => {
                    out.flush(run.take(), style);
                    run = Some((layer, segment.text));
                }
            },
            SegmentKind::Speaker => {
                out.flush(run.take(), style);
                if segment.speaker_name() != Some(message.speaker.as_str()) {
                    run = Some((Layer::Speech, segment.text));
                }
            }
            // A tag ends a block even when the next one has the same layer.
            SegmentKind::Tag { .. } => out.flush(run.take(), style),
        }
    }
    out.flush(run, style);
    out.text.trim().to_string()
}

#[derive(Default)]
struct Rendered {
    text: String,
    last_marked: bool,
}

impl Rendered {
    fn flush(&mut self, run: Option<(Layer, String)>, style: Style) {
        let Some((layer, text)) = run else { return };
        let (open, close) = style.marks(layer);
        let marked = !open.is_empty();
        let piece = match layer {
            Layer::SystemThinking => return,
            Layer::Speech => text,
            _ => {
                // Markers hug the words ("*leans in*", not "* leans in *").
                let inner = text.trim();
                if inner.is_empty() {
                    return;
                }
                let lead = &text[..text.len() - text.trim_start().len()];
                let trail = &text[text.trim_end().len()..];
                format!("{lead}{open}{inner}{close}{trail}")
            }
        };
        if piece.is_empty() {
            return;
        }
        // "*leans in*Indeed?" reads badly: separate marked pieces by a space.
        let joins_words = !self.text.is_empty()
            && !self.text.ends_with(char::is_whitespace)
            && !piece.starts_with(char::is_whitespace);
        if joins_words && (marked || self.last_marked) {
            self.text.push(' ');
        }
        self.text.push_str(&piece);
        self.last_marked = marked;
    }
}

/// A tree-view label: speaker and the first 40 characters of what is seen.
pub(crate) fn label_text(message: &Message) -> String {
    let visible = visible_text(message, Style::Plain, true);
    let flat = visible.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut label: String = flat.chars().take(40).collect();
    if flat.chars().nth(40).is_some() {
        label.push('…');
    }
    format!("{}: {label}", message.speaker)
}

fn active_messages(session: &Session) -> impl Iterator<Item = (NodeId, &Message)> {
    let tree = session.tree();
    tree.active_path()
        .into_iter()
        .filter_map(move |id| tree.node(id).map(|n| (id, &n.message)))
}

/// `Name: text` per message, a blank line between messages.
pub fn to_plain_text(session: &Session, options: ExportOptions) -> String {
    let blocks: Vec<String> = active_messages(session)
        .map(|(_, m)| {
            let text = visible_text(m, Style::Plain, options.drop_role_thinking);
            format!("{}: {text}", m.speaker).trim_end().to_string()
        })
        .collect();
    finish(blocks)
}

/// `**Name**`, a blank line, the text; actions in italics.
pub fn to_markdown(session: &Session, options: ExportOptions) -> String {
    let blocks: Vec<String> = active_messages(session)
        .map(|(_, m)| {
            let text = visible_text(m, Style::Markdown, options.drop_role_thinking);
            format!("**{}**\n\n{text}", m.speaker)
                .trim_end()
                .to_string()
        })
        .collect();
    finish(blocks)
}

fn finish(blocks: Vec<String>) -> String {
    if blocks.is_empty() {
        return String::new();
    }
    let mut out = blocks.join("\n\n");
    out.push('\n');
    out
}

/// SillyTavern chat JSONL: a metadata line, then one line per message of the
/// active branch with its alternatives as swipes. `mes` uses SillyTavern's
/// own convention (`*action*`), since it renders Markdown and hides unknown
/// tags.
pub fn to_sillytavern(session: &Session, options: ExportOptions) -> Result<String, SessionError> {
    let tree = session.tree();
    let first_speaker = |role: Role| {
        active_messages(session)
            .find(|(_, m)| m.role == role)
            .map(|(_, m)| m.speaker.clone())
    };
    let user_name = first_speaker(Role::User).unwrap_or_else(|| "User".to_string());
    let character_name = session
        .header()
        .character
        .clone()
        .or_else(|| first_speaker(Role::Character))
        .unwrap_or_else(|| "Assistant".to_string());
    let metadata = json!({
        "user_name": user_name,
        "character_name": character_name,
        "create_date": st_create_date(&session.header().created_at),
        "chat_metadata": {},
    });
    let mut out = serde_json::to_string(&metadata)?;
    out.push('\n');
    for (id, message) in active_messages(session) {
        let parent = tree.node(id).and_then(|n| n.parent).unwrap_or(NodeId::ROOT);
        let alternatives = tree.visible_children(parent);
        let visible = |m: &Message| visible_text(m, Style::Markdown, options.drop_role_thinking);
        let swipes: Vec<String> = alternatives
            .iter()
            .filter_map(|&c| tree.node(c).map(|n| visible(&n.message)))
            .collect();
        let swipe_info: Vec<Value> = alternatives
            .iter()
            .filter_map(|&c| tree.node(c))
            .map(|n| json!({"send_date": st_send_date(&n.message.created_at), "extra": {}}))
            .collect();
        let swipe_id = alternatives.iter().position(|&c| c == id).unwrap_or(0);
        let line = json!({
            "name": message.speaker,
            "is_user": message.role == Role::User,
            "is_system": false,
            "send_date": st_send_date(&message.created_at),
            "mes": visible(message),
            "swipes": swipes,
            "swipe_id": swipe_id,
            "swipe_info": swipe_info,
            "extra": {},
        });
        out.push_str(&serde_json::to_string(&line)?);
        out.push('\n');
    }
    Ok(out)
}

/// SillyTavern's file date, e.g. `2024-05-01@14h03m07s` (UTC here).
fn st_create_date(rfc3339: &str) -> String {
    OffsetDateTime::parse(rfc3339, &Rfc3339)
        .ok()
        .and_then(|t| {
            t.to_offset(time::UtcOffset::UTC)
                .format(format_description!(
                    "[year]-[month]-[day]@[hour]h[minute]m[second]s"
                ))
                .ok()
        })
        .unwrap_or_else(|| rfc3339.to_string())
}

/// SillyTavern's message date, e.g. `May 1, 2024 2:03pm` (UTC here).
fn st_send_date(rfc3339: &str) -> String {
    OffsetDateTime::parse(rfc3339, &Rfc3339)
        .ok()
        .and_then(|t| {
            t.to_offset(time::UtcOffset::UTC)
                .format(format_description!(
                    "[month repr:long] [day padding:none], [year] [hour repr:12 padding:none]:[minute][period case:lower]"
                ))
                .ok()
        })
        .unwrap_or_else(|| rfc3339.to_string())
}

/// Renders the active branch in `format` and writes it to `path` atomically.
pub fn export(
    session: &Session,
    format: ExportFormat,
    options: ExportOptions,
    path: &Path,
) -> Result<(), SessionError> {
    let text = match format {
        ExportFormat::PlainText => to_plain_text(session, options),
        ExportFormat::Markdown => to_markdown(session, options),
        ExportFormat::SillyTavern => to_sillytavern(session, options)?,
    };
    write_atomic(path, text.as_bytes())
}

/// Writes `bytes` to `path` so that a reader sees the old file or the whole
/// new one, never a part: temp file in the same folder, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SessionError> {
    crate::fsutil::write_atomic(path, bytes, true).map_err(|e| SessionError::io("write", path, e))
}
