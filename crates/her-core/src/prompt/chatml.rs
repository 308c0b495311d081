//! Turning a transcript into HER's ChatML conversation.

use crate::character::Character;
use crate::chatml;
use crate::format::{
    Ending, PREFILL, SegmentKind, parse_reply, plan_block, strip_role_thinking,
    strip_speaker_prefix, strip_system_thinking,
};
use crate::generation::PromptSource;

use super::PromptOptions;
use super::additions::{Additions, HistoryLayers, Insert, role_name};
use super::lore::embedded_additions;
use super::system::{Section, join_sections, system_sections};

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

/// The character's own turn as history keeps it: the thinking layers
/// `history` keeps (HER: no plan), and a `Name: ` prefix after the plan as
/// in every trained reply (greetings are written without one).
fn own_turn(raw: &str, name: &str, history: HistoryLayers) -> String {
    // The plan, if kept, goes before the prefix (added below), as trained.
    let without_plan = if history.thoughts {
        strip_system_thinking(raw)
    } else {
        strip_role_thinking(raw)
    };
    let text = without_plan.trim_end().to_string();
    let has_prefix = parse_reply(&text, Ending::Natural)
        .iter()
        .any(|s| s.kind == SegmentKind::Speaker);
    let reply = if has_prefix || text.is_empty() {
        text
    } else {
        format!("{name}: {text}")
    };
    if history.plan {
        plan_block(raw) + &reply
    } else {
        reply
    }
}

/// A complete generation prompt for one character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HerPrompt {
    pub sections: Vec<Section>,
    /// History turns, oldest first; the last one is the turn being answered.
    pub turns: Vec<Turn>,
    /// Turns inserted at a depth (lore, the author's note).
    pub inserts: Vec<Insert>,
}

/// A labelled piece of a rendered prompt; the parts concatenate to the prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptPart {
    pub label: String,
    pub text: String,
}

impl HerPrompt {
    /// Applies HER's history rules for `character` to a transcript:
    /// - the character's own replies lose their system thinking but keep role thinking;
    /// - everyone else's lines lose both, get a `Name: ` prefix, and consecutive
    ///   ones merge into one user turn, blank-line separated.
    ///
    /// The character's own (card) lorebook is scanned with the default
    /// settings; a session's books, memory and note come through
    /// [`HerPrompt::build_with`].
    pub fn build(character: &Character, options: &PromptOptions, transcript: &[Line]) -> Self {
        let additions = embedded_additions(character, options, transcript);
        Self::build_with(character, options, transcript, &additions)
    }

    /// As `build`, with `additions` chosen by the caller.
    pub fn build_with(
        character: &Character,
        options: &PromptOptions,
        transcript: &[Line],
        additions: &Additions,
    ) -> Self {
        let cut = additions.summarised.min(transcript.len().saturating_sub(1));
        let transcript = &transcript[cut..];
        let mut turns: Vec<Turn> = Vec::new();
        for line in transcript {
            if line.speaker == character.name {
                turns.push(Turn {
                    role: TurnRole::Assistant,
                    text: own_turn(&line.text, &character.name, additions.history),
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
            sections: system_sections(character, options, additions),
            turns,
            inserts: additions.inserts.clone(),
        }
    }

    /// The system prompt text.
    pub fn system(&self) -> String {
        join_sections(&self.sections)
    }

    /// The prompt as labelled parts, with the `skip` oldest turns left out.
    /// The conversation header moves to the first turn kept.
    pub fn parts(&self, skip: usize) -> Vec<PromptPart> {
        let part = |label: String, text: String| PromptPart { label, text };
        let mut parts = Vec::new();
        let last = self.sections.len().saturating_sub(1);
        for (i, section) in self.sections.iter().enumerate() {
            // The sections share one system turn.
            let open = if i == 0 {
                chatml::open("system")
            } else {
                String::new()
            };
            let close = if i == last {
                format!("{}\n", chatml::IM_END)
            } else {
                "\n\n".to_string()
            };
            parts.push(part(
                format!("system: {}", section.label()),
                format!("{open}{}{close}", section.render()),
            ));
        }
        for (label, role, content) in self.history(skip) {
            parts.push(part(label, chatml::turn(role, &content)));
        }
        parts.push(part(
            "prefill".into(),
            format!("{}{PREFILL}", chatml::open("assistant")),
        ));
        parts
    }

    /// The history turns after the `skip` oldest, as (label, ChatML role,
    /// content). The conversation header goes on the first turn kept.
    fn history(&self, skip: usize) -> Vec<(String, &'static str, String)> {
        let skip = skip.min(self.droppable());
        let kept = &self.turns[skip..];
        let mut out = Vec::with_capacity(kept.len() + 1);
        if kept.first().is_some_and(|t| t.role == TurnRole::Assistant) {
            // The header belongs to a user turn; give it one of its own.
            let header = CONVERSATION_START.trim_end().to_string();
            out.push(("conversation start".into(), "user", header));
        }
        for (i, turn) in kept.iter().enumerate() {
            for insert in self.inserts_before(i, kept.len()) {
                let role = role_name(insert.role);
                let label = format!("{} at depth {} ({role})", insert.label, insert.depth);
                out.push((label, role, insert.text.clone()));
            }
            let role = match turn.role {
                TurnRole::User => "user",
                TurnRole::Assistant => "assistant",
            };
            let header = if i == 0 && turn.role == TurnRole::User {
                CONVERSATION_START
            } else {
                ""
            };
            let label = format!("turn {} ({role})", skip + i + 1);
            out.push((label, role, format!("{header}{}", turn.text)));
        }
        for insert in self.inserts_before(kept.len(), kept.len()) {
            let role = role_name(insert.role);
            let label = format!("{} at depth {} ({role})", insert.label, insert.depth);
            out.push((label, role, insert.text.clone()));
        }
        out
    }

    /// The inserts that go right before kept turn `i` of `kept` (`i == kept`:
    /// after the last turn). Depth counts turns from the end; an insert
    /// deeper than the history goes after the first turn, so the
    /// conversation still opens with its header.
    fn inserts_before(&self, i: usize, kept: usize) -> impl Iterator<Item = &Insert> {
        self.inserts.iter().filter(move |insert| {
            let at = kept.saturating_sub(insert.depth as usize);
            let at = if kept > 0 { at.max(1) } else { at };
            at == i
        })
    }

    /// The prompt as chat messages (ChatML role, content): the system prompt
    /// and the kept history, without the prefill. This is the context a
    /// preference record or a training sample stores.
    pub fn messages(&self, skip: usize) -> Vec<(&'static str, String)> {
        let mut out = vec![("system", self.system())];
        out.extend(self.history(skip).into_iter().map(|(_, r, c)| (r, c)));
        out
    }

    /// The ChatML text with the `skip` oldest turns left out, ending with the
    /// assistant prefill.
    pub fn render_with_skip(&self, skip: usize) -> String {
        self.parts(skip).into_iter().map(|p| p.text).collect()
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
    use crate::prompt::PromptVariant;

    fn opts() -> PromptOptions {
        PromptOptions::new(PromptVariant::Training, "Darcy")
    }

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
            lore: vec![],
            note: None,
        }
    }

    #[test]
    fn first_turn_layout() {
        let p = HerPrompt::build(&lizzy(), &opts(), &[Line::new("Darcy", "Dance?")]);
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
        let p = HerPrompt::build(&lizzy(), &opts(), &transcript);
        assert_eq!(p.turns.len(), 3);
        assert_eq!(
            p.turns[1].text,
            "Elizabeth: <role_thinking>No.</role_thinking>Perhaps."
        );
        assert_eq!(p.turns[2].text, "Darcy: Then?\n\nJane: Lizzy!");
    }

    /// `history` decides each of the character's own layers; the other
    /// characters' thoughts stay out whatever it says.
    #[test]
    fn history_keeps_the_layers_it_is_told_to() {
        let own =
            "<system_thinking>plan</system_thinking><role_thinking>No.</role_thinking>Perhaps.";
        let transcript = [
            Line::new("Darcy", "Dance?"),
            Line::new("Elizabeth", own),
            Line::new("Darcy", "<role_thinking>secret</role_thinking>Then?"),
        ];
        let turns = |plan, thoughts| {
            let additions = Additions {
                history: HistoryLayers { plan, thoughts },
                ..Additions::default()
            };
            HerPrompt::build_with(&lizzy(), &opts(), &transcript, &additions).turns
        };
        let her = turns(false, true);
        assert_eq!(her, HerPrompt::build(&lizzy(), &opts(), &transcript).turns);
        assert_eq!(
            her[1].text,
            "Elizabeth: <role_thinking>No.</role_thinking>Perhaps."
        );
        assert_eq!(
            turns(true, true)[1].text,
            "<system_thinking>plan</system_thinking>Elizabeth: <role_thinking>No.</role_thinking>Perhaps."
        );
        assert_eq!(
            turns(true, false)[1].text,
            "<system_thinking>plan</system_thinking>Elizabeth: Perhaps."
        );
        assert_eq!(turns(false, false)[1].text, "Elizabeth: Perhaps.");
        for (plan, thoughts) in [(true, true), (false, false)] {
            assert_eq!(turns(plan, thoughts)[2].text, "Darcy: Then?");
        }
    }

    /// A stock model's untagged reply (the prefill never closed) is all
    /// speech: keeping plans adds no empty plan block to it.
    #[test]
    fn an_untagged_reply_has_no_plan_to_keep() {
        let transcript = [
            Line::new("Darcy", "Dance?"),
            Line::new("Elizabeth", "<system_thinking>She hesitates"),
            Line::new("Darcy", "Well?"),
        ];
        let additions = Additions {
            history: HistoryLayers {
                plan: true,
                thoughts: true,
            },
            ..Additions::default()
        };
        let p = HerPrompt::build_with(&lizzy(), &opts(), &transcript, &additions);
        assert_eq!(p.turns[1].text, "Elizabeth: She hesitates");
    }

    #[test]
    fn dropping_turns_keeps_system_newest_turn_and_header() {
        let transcript = [
            Line::new("Darcy", "One"),
            Line::new("Elizabeth", "Two"),
            Line::new("Darcy", "Three"),
        ];
        let p = HerPrompt::build(&lizzy(), &opts(), &transcript);
        assert_eq!(p.droppable(), 2);
        let once = p.render_with_skip(1);
        assert!(!once.contains("Darcy: One"));
        assert!(once.contains(
            "<|im_start|>user\n===Conversation Start===<|im_end|>\n<|im_start|>assistant\nElizabeth: Two"
        ));
        let all = p.render_with_skip(5);
        assert!(all.contains("You are Elizabeth"));
        assert!(
            all.contains("<|im_start|>user\n===Conversation Start===\n\nDarcy: Three<|im_end|>")
        );
    }

    #[test]
    fn inserts_go_at_their_depth_and_memory_closes_the_background() {
        use crate::lore::Role;
        use crate::prompt::{Additions, Insert};
        let transcript = [
            Line::new("Darcy", "One"),
            Line::new("Elizabeth", "Two"),
            Line::new("Darcy", "Three"),
        ];
        let additions = Additions {
            background_top: vec!["World fact.".into()],
            memory: "Earlier: they met.".into(),
            inserts: vec![
                Insert {
                    depth: 0,
                    role: Role::System,
                    label: "author's note".into(),
                    text: "Be brief.".into(),
                },
                Insert {
                    depth: 1,
                    role: Role::User,
                    label: "lore".into(),
                    text: "Deep fact.".into(),
                },
                Insert {
                    depth: 9,
                    role: Role::System,
                    label: "lore".into(),
                    text: "Very deep.".into(),
                },
            ],
            ..Additions::default()
        };
        let p = HerPrompt::build_with(&lizzy(), &opts(), &transcript, &additions);
        let text = p.render_with_skip(0);
        assert!(text.contains("===Background===\nWorld fact.\n\nEarlier: they met.\n\n===Current"));
        assert!(text.ends_with("Darcy: Three<|im_end|>\n<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>assistant\n<system_thinking>"));
        assert!(text.contains("Elizabeth: Two<|im_end|>\n<|im_start|>user\nDeep fact.<|im_end|>\n<|im_start|>user\nDarcy: Three"));
        // Deeper than the history: after the first turn, which keeps the header.
        assert!(text.contains("===Conversation Start===\n\nDarcy: One<|im_end|>\n<|im_start|>system\nVery deep.<|im_end|>"));
        let labels: Vec<String> = p.parts(0).into_iter().map(|p| p.label).collect();
        assert!(labels.contains(&"system: Background: memory".to_string()));
        assert!(labels.contains(&"author's note at depth 0 (system)".to_string()));
        // Dropping turns keeps the inserts.
        let skipped = p.render_with_skip(2);
        assert!(skipped.contains("Be brief.") && skipped.contains("Very deep."));
    }
}
