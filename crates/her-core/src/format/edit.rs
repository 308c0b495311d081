//! Editing one thinking block of a reply: where the blocks are, and the text
//! a regeneration starts from (everything before the block, the block with
//! the writer's text, closed), so the model continues under the edit.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::parse::{Ending, parse_reply};
use super::segment::{Layer, SegmentKind, TagFamily};

/// One `<system_thinking>` or `<role_thinking>` block of a raw reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThinkingBlock {
    pub layer: Layer,
    /// The opening tag as written (`<system_thinking>`, `<think>`, …).
    pub open: Range<usize>,
    /// The text between the tags.
    pub inner: Range<usize>,
    /// Whether the reply closes it (a cut-off reply may not).
    pub closed: bool,
}

/// How a reply was steered: one thinking block rewritten by the writer and
/// everything after it generated again. Recorded with the new alternative
/// (and carried by the preference pairs it gives).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThinkingEdit {
    /// The reply that was edited (its session key).
    pub of: String,
    /// `system_thinking` (the plan) or `role_thinking`.
    pub layer: Layer,
    /// Which block of that layer, from 0.
    pub index: usize,
    pub before: String,
    pub after: String,
}

/// Why a block cannot be edited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("only the plan (system_thinking) and role_thinking blocks can be edited")]
    NotThinking,
    #[error("the reply has {found} {layer} block(s); there is no block {wanted}")]
    NoSuchBlock {
        layer: &'static str,
        found: usize,
        wanted: usize,
    },
}

fn layer_of(family: TagFamily) -> Option<Layer> {
    match family {
        TagFamily::System => Some(Layer::SystemThinking),
        TagFamily::RoleThinking => Some(Layer::RoleThinking),
        TagFamily::RoleAction | TagFamily::RoleSpeech => None,
    }
}

/// The name a layer's blocks are known by in messages.
pub fn layer_name(layer: Layer) -> &'static str {
    match layer {
        Layer::SystemThinking => "system_thinking",
        Layer::RoleThinking => "role_thinking",
        Layer::RoleAction => "role_action",
        Layer::Speech => "speech",
    }
}

/// The thinking blocks of `raw`, in order. Concatenated segments give back
/// the raw text, so their lengths are the byte positions.
pub fn thinking_blocks(raw: &str) -> Vec<ThinkingBlock> {
    let mut blocks: Vec<ThinkingBlock> = Vec::new();
    let mut at = 0;
    for segment in parse_reply(raw, Ending::CutOff) {
        let range = at..at + segment.text.len();
        at = range.end;
        match segment.kind {
            SegmentKind::Tag {
                family,
                closing: false,
            } => {
                if let Some(layer) = layer_of(family) {
                    blocks.push(ThinkingBlock {
                        layer,
                        open: range.clone(),
                        inner: range.end..range.end,
                        closed: false,
                    });
                }
            }
            SegmentKind::Tag {
                family,
                closing: true,
            } => {
                if let Some(block) = blocks.last_mut()
                    && !block.closed
                    && layer_of(family) == Some(block.layer)
                {
                    block.closed = true;
                }
            }
            SegmentKind::Text { layer } => {
                if let Some(block) = blocks.last_mut()
                    && !block.closed
                    && block.layer == layer
                {
                    block.inner.end = range.end;
                }
            }
            SegmentKind::Speaker => {}
        }
    }
    blocks
}

/// The `index`-th block of `layer` in `raw`.
pub fn find_block(raw: &str, layer: Layer, index: usize) -> Result<ThinkingBlock, EditError> {
    if !matches!(layer, Layer::SystemThinking | Layer::RoleThinking) {
        return Err(EditError::NotThinking);
    }
    let of_layer: Vec<ThinkingBlock> = thinking_blocks(raw)
        .into_iter()
        .filter(|b| b.layer == layer)
        .collect();
    let found = of_layer.len();
    of_layer
        .into_iter()
        .nth(index)
        .ok_or(EditError::NoSuchBlock {
            layer: layer_name(layer),
            found,
            wanted: index + 1,
        })
}

/// The text a regeneration under the edit starts from: `raw` up to the
/// block, the block's opening tag as written, `text`, and the matching
/// closing tag. Returns it with the block's old text.
pub fn rewrite_prefix(
    raw: &str,
    layer: Layer,
    index: usize,
    text: &str,
) -> Result<(String, String), EditError> {
    let block = find_block(raw, layer, index)?;
    let open = &raw[block.open.clone()];
    let name = open
        .trim_start_matches('<')
        .trim_end_matches('>')
        .split_whitespace()
        .next()
        .unwrap_or(layer_name(layer));
    let prefix = format!("{}{text}</{name}>", &raw[..block.open.end]);
    Ok((prefix, raw[block.inner].to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPLY: &str = "<system_thinking>She is wary.</system_thinking>Elizabeth: <role_thinking>He is proud.</role_thinking><role_action>turns away</role_action>Indeed. <role_thinking>Too proud.</role_thinking>";

    #[test]
    fn blocks_are_found_with_their_byte_ranges() {
        let blocks = thinking_blocks(REPLY);
        let layers: Vec<Layer> = blocks.iter().map(|b| b.layer).collect();
        assert_eq!(
            layers,
            [
                Layer::SystemThinking,
                Layer::RoleThinking,
                Layer::RoleThinking
            ]
        );
        assert_eq!(&REPLY[blocks[0].inner.clone()], "She is wary.");
        assert_eq!(&REPLY[blocks[1].open.clone()], "<role_thinking>");
        assert_eq!(&REPLY[blocks[2].inner.clone()], "Too proud.");
        assert!(blocks.iter().all(|b| b.closed));
    }

    #[test]
    fn a_rewrite_keeps_what_came_before_and_closes_the_block() {
        let (plan, before) = rewrite_prefix(REPLY, Layer::SystemThinking, 0, "She warms to him.")
            .unwrap_or_default();
        assert_eq!(plan, "<system_thinking>She warms to him.</system_thinking>");
        assert_eq!(before, "She is wary.");
        let (thought, before) =
            rewrite_prefix(REPLY, Layer::RoleThinking, 1, "Perhaps not.").unwrap_or_default();
        assert!(thought.starts_with(&REPLY[..REPLY.find("Indeed.").unwrap_or(0)]));
        assert!(thought.ends_with("Indeed. <role_thinking>Perhaps not.</role_thinking>"));
        assert_eq!(before, "Too proud.");
    }

    #[test]
    fn a_cut_off_plan_and_other_spellings_are_edited_too() {
        let cut = "<system_thinking>She is wa";
        let block = find_block(cut, Layer::SystemThinking, 0);
        assert_eq!(block.as_ref().map(|b| b.closed), Ok(false));
        let (prefix, before) =
            rewrite_prefix(cut, Layer::SystemThinking, 0, "New.").unwrap_or_default();
        assert_eq!(prefix, "<system_thinking>New.</system_thinking>");
        assert_eq!(before, "She is wa");
        let (prefix, _) = rewrite_prefix("<think>x</think>Hi.", Layer::SystemThinking, 0, "y")
            .unwrap_or_default();
        assert_eq!(prefix, "<think>y</think>");
    }

    #[test]
    fn missing_blocks_and_other_layers_are_refused() {
        assert_eq!(
            find_block(REPLY, Layer::RoleThinking, 2),
            Err(EditError::NoSuchBlock {
                layer: "role_thinking",
                found: 2,
                wanted: 3
            })
        );
        assert_eq!(
            find_block("Hello.", Layer::SystemThinking, 0)
                .err()
                .map(|e| e.to_string()),
            Some("the reply has 0 system_thinking block(s); there is no block 1".into())
        );
        assert_eq!(
            find_block(REPLY, Layer::Speech, 0),
            Err(EditError::NotThinking)
        );
    }
}
