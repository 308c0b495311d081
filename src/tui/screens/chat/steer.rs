//! `/plan` and `/thought`: rewrite a thinking block of a reply and let the
//! model go on from it. The plan (`<system_thinking>`) is the most direct
//! way to steer a scene; the result is a new alternative of the reply, with
//! the edit recorded (which block, before and after) so the preference
//! export can mark its pair as a plan edit.
//!
//! `/plan` (or `/thought [#N]`) puts the block of the selected reply (else
//! the newest) into the composer; editing it and pressing enter runs
//! `/plan TEXT`, which regenerates everything after the block.

use crate::tui::app::{App, ReplyTarget};
use crate::tui::effect::Effect;
use crate::tui::model::{ShownMessage, Speaker};
use crate::tui::screens::chat::reply::start_reply;
use crate::tui::screens::chat::update::target_message;
use her_core::format::edit::{find_block, layer_name};
use her_core::format::{Layer, ThinkingEdit, rewrite_prefix};

/// `/plan [TEXT]` (`layer` = system thinking) or `/thought [#N] [TEXT]`.
pub fn run(app: &mut App, layer: Layer, rest: &str) -> Vec<Effect> {
    let (index, text) = match layer {
        Layer::RoleThinking => block_number(rest.trim_start()),
        _ => (0, rest.trim()),
    };
    let Some(msg) = steered_message(app) else {
        app.notify("no reply to steer yet", true);
        return Vec::new();
    };
    if text.is_empty() {
        load(app, &msg, layer, index);
        return Vec::new();
    }
    app.steering = None;
    if app.streaming.is_some() {
        app.notify("wait for the reply to finish (or ctrl+c)", true);
        return Vec::new();
    }
    match rewrite_prefix(&msg.raw, layer, index, text) {
        Ok((prefix, before)) => {
            let edit = ThinkingEdit {
                of: msg.key.clone(),
                layer,
                index,
                before,
                after: text.to_string(),
            };
            let target = ReplyTarget::SteeredFrom {
                of: msg.key.clone(),
                prefix,
                edit: Some(edit),
            };
            start_reply(app, target, &msg.name)
        }
        Err(err) => {
            app.notify(format!("{} of {}: {err}", command(layer), msg.name), true);
            Vec::new()
        }
    }
}

/// `#N TEXT` → (N-1, TEXT); no number: the first block.
fn block_number(rest: &str) -> (usize, &str) {
    let Some(after) = rest.strip_prefix('#') else {
        return (0, rest.trim());
    };
    let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    match after[..digits].parse::<usize>() {
        Ok(n) if n > 0 => (n - 1, after[digits..].trim()),
        _ => (0, rest.trim()),
    }
}

fn command(layer: Layer) -> &'static str {
    match layer {
        Layer::SystemThinking => "/plan",
        _ => "/thought",
    }
}

/// The reply a block was loaded from, while the composer holds it; else
/// the selected reply, else the newest.
fn steered_message(app: &App) -> Option<ShownMessage> {
    if let Some(key) = &app.steering
        && let Some(msg) = app.messages.iter().find(|m| &m.key == key)
    {
        return Some(msg.clone());
    }
    target_message(app, true).filter(|m| m.speaker != Speaker::User && !m.key.is_empty())
}

/// Puts the block into the composer as the command that rewrites it.
fn load(app: &mut App, msg: &ShownMessage, layer: Layer, index: usize) {
    let block = match find_block(&msg.raw, layer, index) {
        Ok(block) => block,
        Err(err) => {
            app.notify(format!("{} of {}: {err}", command(layer), msg.name), true);
            return;
        }
    };
    let before = msg.raw[block.inner].trim();
    let line = match layer {
        Layer::RoleThinking => format!("/thought #{} {before}", index + 1),
        _ => format!("/plan {before}"),
    };
    app.composer.set(&line);
    app.steering = Some(msg.key.clone());
    app.notify(
        format!(
            "the {} of {}'s reply is in the composer: edit it and press enter to regenerate after it (ctrl+e: $EDITOR)",
            layer_name(layer),
            msg.name
        ),
        false,
    );
}

#[cfg(test)]
mod tests {
    use super::block_number;

    #[test]
    fn a_block_number_is_read_and_text_without_one_is_the_first_block() {
        assert_eq!(block_number("#2 He is kind."), (1, "He is kind."));
        assert_eq!(block_number("He is #1."), (0, "He is #1."));
        assert_eq!(block_number("#0 x"), (0, "#0 x"));
        assert_eq!(block_number("#3"), (2, ""));
    }
}
