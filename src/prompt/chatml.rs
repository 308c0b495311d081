//! Turning a transcript into HER's ChatML conversation.

use crate::character::Character;
use crate::engine::PromptSource;
use crate::format::{PREFILL, strip_role_thinking, strip_speaker_prefix, strip_system_thinking};

use super::{PromptVariant, system_prompt};

/// Marks the first turn of the conversation, as in HER's training data.
pub const CONVERSATION_START: &str = "===Conversation Start===\n\n";

/// One line of a transcript: who said it and the raw text as written or generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub speaker: String,
    pub text: String,
}

impl Line {
    pub fn new(speaker: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            speaker: speaker.into(),
            text: text.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnRole {
    /// Lines from everyone else, merged.
    User,
    /// The played character's own reply.
    Assistant,
}

/// One ChatML turn after the history rules were applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub role: TurnRole,
    pub text: String,
}

/// A complete generation prompt for one character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HerPrompt {
    pub system: String,
    /// History turns, oldest first; the last one is the turn being answered.
    pub turns: Vec<Turn>,
}

impl HerPrompt {
    /// Applies HER's history rules for `character` to a transcript:
    /// - the character's own replies lose their system thinking but keep role thinking;
    /// - everyone else's lines lose both, get a `Name: ` prefix, and consecutive
    ///   ones merge into one user turn, blank-line separated.
    pub fn build(character: &Character, variant: PromptVariant, transcript: &[Line]) -> Self {
        let mut turns: Vec<Turn> = Vec::new();
        for line in transcript {
            if line.speaker == character.name {
                turns.push(Turn {
                    role: TurnRole::Assistant,
                    text: strip_system_thinking(&line.text).trim_end().to_string(),
                });
                continue;
            }
            let heard = strip_role_thinking(&line.text);
            let spoken = format!(
                "{}: {}",
                line.speaker,
                strip_speaker_prefix(&heard, &line.speaker).trim_end()
            );
            match turns.last_mut() {
                Some(last) if last.role == TurnRole::User => {
                    last.text.push_str("\n\n");
                    last.text.push_str(&spoken);
                }
                _ => turns.push(Turn {
                    role: TurnRole::User,
                    text: spoken,
                }),
            }
        }
        Self {
            system: system_prompt(character, variant),
            turns,
        }
    }

    /// The ChatML text with the `skip` oldest turns left out, ending with the
    /// assistant prefill. The conversation header moves to the first turn kept.
    pub fn render_with_skip(&self, skip: usize) -> String {
        let skip = skip.min(self.droppable());
        let mut out = format!("<|im_start|>system\n{}<|im_end|>\n", self.system);
        let kept = &self.turns[skip..];
        if kept.first().is_some_and(|t| t.role == TurnRole::Assistant) {
            // The header belongs to a user turn; give it one of its own.
            out.push_str(&format!(
                "<|im_start|>user\n{}<|im_end|>\n",
                CONVERSATION_START.trim_end()
            ));
        }
        for (i, turn) in kept.iter().enumerate() {
            let role = match turn.role {
                TurnRole::User => "user",
                TurnRole::Assistant => "assistant",
            };
            let header = if i == 0 && turn.role == TurnRole::User {
                CONVERSATION_START
            } else {
                ""
            };
            out.push_str(&format!(
                "<|im_start|>{role}\n{header}{}<|im_end|>\n",
                turn.text
            ));
        }
        out.push_str("<|im_start|>assistant\n");
        out.push_str(PREFILL);
        out
    }

    /// Every turn but the newest may be dropped to fit the context.
    pub fn droppable(&self) -> usize {
        self.turns.len().saturating_sub(1)
    }
}

impl PromptSource for HerPrompt {
    fn render(&self, skip: usize) -> String {
        self.render_with_skip(skip)
    }

    fn droppable_turns(&self) -> usize {
        self.droppable()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::character::{Character, OtherCharacter};

    fn lizzy() -> Character {
        Character {
            name: "Elizabeth".into(),
            book: "Pride and Prejudice".into(),
            author: String::new(),
            description: String::new(),
            profile: "Witty.".into(),
            background: String::new(),
            scenario: "A ball.".into(),
            motivation: String::new(),
            greetings: vec![],
            tags: vec![],
            others: vec![OtherCharacter {
                name: "Darcy".into(),
                profile: "Proud.".into(),
            }],
            user: None,
            examples: vec![],
            sampling: None,
            personality: String::new(),
            lorebook: None,
            card: None,
        }
    }

    #[test]
    fn first_turn_layout() {
        let p = HerPrompt::build(
            &lizzy(),
            PromptVariant::Training,
            &[Line::new("Darcy", "Dance?")],
        );
        let text = p.render_with_skip(0);
        assert!(text.starts_with("<|im_start|>system\nYou are Elizabeth from Pride and Prejudice.\n\n===Elizabeth's Profile===\nWitty.\n\n===Current Scenario===\nA ball.\n\n===Information about other Characters===\n**Darcy**: Proud.\n\n===Requirements===\n"));
        assert!(text.ends_with("<|im_end|>\n<|im_start|>user\n===Conversation Start===\n\nDarcy: Dance?<|im_end|>\n<|im_start|>assistant\n<system_thinking>"));
    }

    #[test]
    fn history_rules_and_merging() {
        let transcript = [
            Line::new("Darcy", "Dance?"),
            Line::new(
                "Elizabeth",
                "<system_thinking>plan</system_thinking>Elizabeth: <role_thinking>No.</role_thinking>Perhaps.",
            ),
            Line::new("Darcy", "<role_thinking>secret</role_thinking>Darcy: Then?"),
            Line::new("Jane", "Lizzy!"),
        ];
        let p = HerPrompt::build(&lizzy(), PromptVariant::Training, &transcript);
        assert_eq!(p.turns.len(), 3);
        assert_eq!(
            p.turns[1].text,
            "Elizabeth: <role_thinking>No.</role_thinking>Perhaps."
        );
        assert_eq!(p.turns[2].text, "Darcy: Then?\n\nJane: Lizzy!");
    }

    #[test]
    fn dropping_turns_keeps_system_newest_turn_and_header() {
        let transcript = [
            Line::new("Darcy", "One"),
            Line::new("Elizabeth", "Two"),
            Line::new("Darcy", "Three"),
        ];
        let p = HerPrompt::build(&lizzy(), PromptVariant::Training, &transcript);
        assert_eq!(p.droppable(), 2);
        let once = p.render_with_skip(1);
        assert!(!once.contains("Darcy: One"));
        assert!(once.contains(
            "<|im_start|>user\n===Conversation Start===<|im_end|>\n<|im_start|>assistant\nTwo"
        ));
        let all = p.render_with_skip(5);
        assert!(all.contains("You are Elizabeth"));
        assert!(
            all.contains("<|im_start|>user\n===Conversation Start===\n\nDarcy: Three<|im_end|>")
        );
    }
}
