//! ChatML, the turn markup of the Qwen models HER was trained on. Every
//! prompt the studio sends is built from these few functions, so the markup
//! is written once.

use crate::format::PREFILL;
use crate::prefs::ContextMessage;

/// Opens a turn; followed by the role name and a newline.
pub const IM_START: &str = "<|im_start|>";
/// Closes a turn; the engine stops on it.
pub const IM_END: &str = "<|im_end|>";

/// One whole turn: header, content and end marker.
pub fn turn(role: &str, content: &str) -> String {
    format!("{IM_START}{role}\n{content}{IM_END}\n")
}

/// The header of a turn left open for the model to write.
pub fn open(role: &str) -> String {
    format!("{IM_START}{role}\n")
}

/// A system and a user turn, then the assistant's turn left open: the shape
/// of every single-question prompt (judges, the director, the summariser).
pub fn exchange(system: &str, user: &str) -> String {
    let mut text = turn("system", system);
    text.push_str(&turn("user", user));
    text.push_str(&open("assistant"));
    text
}

/// A stored context as the prompt the character answers: its messages, then
/// an open assistant turn with HER's `<system_thinking>` prefill, as in chat.
pub fn context_prompt(context: &[ContextMessage]) -> String {
    let mut text: String = context
        .iter()
        .map(|m| turn(m.role.as_str(), &m.content))
        .collect();
    text.push_str(&open("assistant"));
    text.push_str(PREFILL);
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prefs::Role;

    #[test]
    fn context_prompt_ends_with_the_prefill() {
        let context = [
            ContextMessage::new(Role::System, "S"),
            ContextMessage::new(Role::User, "Hi"),
        ];
        assert_eq!(
            context_prompt(&context),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
<|im_start|>assistant\n<system_thinking>"
        );
    }

    #[test]
    fn exchange_leaves_the_assistant_turn_open() {
        assert_eq!(
            exchange("rules", "question"),
            "<|im_start|>system\nrules<|im_end|>\n<|im_start|>user\nquestion<|im_end|>\n\
<|im_start|>assistant\n"
        );
    }
}
