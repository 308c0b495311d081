//! Why an entry is in the prompt, or why it matched and was left out: what
//! `/lore` and `her prompt` show.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::model::{Logic, Role};

/// Where an activated entry goes; the prompt builder maps these onto HER's
/// layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "at")]
pub enum Placement {
    BeforeChar,
    AfterChar,
    Scenario,
    AuthorNoteTop,
    AuthorNoteBottom,
    ExamplesTop,
    ExamplesBottom,
    AtDepth { depth: u32, role: Role },
    Outlet { name: String },
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Placement::BeforeChar => write!(f, "before the character"),
            Placement::AfterChar => write!(f, "after the character"),
            Placement::Scenario => write!(f, "in the scenario"),
            Placement::AuthorNoteTop => write!(f, "before the author's note"),
            Placement::AuthorNoteBottom => write!(f, "after the author's note"),
            Placement::ExamplesTop => write!(f, "before the examples"),
            Placement::ExamplesBottom => write!(f, "after the examples"),
            Placement::AtDepth { depth, role } => {
                write!(f, "at depth {depth} as {}", role_name(*role))
            }
            Placement::Outlet { name } => write!(f, "in outlet '{name}'"),
        }
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

/// A text outside the chat that a key can be found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextField {
    PersonaDescription,
    CharacterDescription,
    CharacterPersonality,
    CharacterDepthPrompt,
    Scenario,
    CreatorNotes,
}

impl ContextField {
    pub const ALL: [ContextField; 6] = [
        ContextField::PersonaDescription,
        ContextField::CharacterDescription,
        ContextField::CharacterPersonality,
        ContextField::CharacterDepthPrompt,
        ContextField::Scenario,
        ContextField::CreatorNotes,
    ];

    fn label(self) -> &'static str {
        match self {
            ContextField::PersonaDescription => "the persona description",
            ContextField::CharacterDescription => "the character description",
            ContextField::CharacterPersonality => "the character personality",
            ContextField::CharacterDepthPrompt => "the character's note",
            ContextField::Scenario => "the scenario",
            ContextField::CreatorNotes => "the creator notes",
        }
    }
}

/// Where a key was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "in")]
pub enum Source {
    /// A chat message; 0 is the newest.
    Message {
        from_end: usize,
    },
    Context {
        field: ContextField,
    },
    /// Text injected for scanning (the author's note).
    Injected,
    /// The content of another activated entry (recursion).
    Recursion {
        book: String,
        uid: u32,
    },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Message { from_end: 0 } => write!(f, "the last message"),
            Source::Message { from_end } => write!(f, "message {} from the end", from_end + 1),
            Source::Context { field } => write!(f, "{}", field.label()),
            Source::Injected => write!(f, "the author's note"),
            Source::Recursion { book, uid } => write!(f, "entry {book}#{uid}"),
        }
    }
}

/// The rule that made an entry active.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum Why {
    Constant,
    /// Still within its sticky messages.
    Sticky,
    /// An `@@activate` decorator.
    Decorator,
    Keys(KeyMatch),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyMatch {
    /// The primary key that matched first, as written.
    pub key: String,
    pub found_in: Source,
    /// How the secondary keys were satisfied, when they were consulted.
    pub secondary: Option<SecondaryMatch>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "logic")]
pub enum SecondaryMatch {
    AndAny { key: String, found_in: Source },
    NotAll { missing: String },
    NotAny,
    AndAll,
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Constant => write!(f, "constant"),
            Why::Sticky => write!(f, "sticky from an earlier activation"),
            Why::Decorator => write!(f, "@@activate"),
            Why::Keys(m) => {
                write!(f, "key '{}' in {}", m.key, m.found_in)?;
                match &m.secondary {
                    None => Ok(()),
                    Some(SecondaryMatch::AndAny { key, found_in }) => {
                        write!(f, ", and '{key}' in {found_in} ({})", Logic::AndAny.label())
                    }
                    Some(SecondaryMatch::NotAll { missing }) => {
                        write!(f, ", '{missing}' absent ({})", Logic::NotAll.label())
                    }
                    Some(SecondaryMatch::NotAny) => {
                        write!(f, ", no secondary key ({})", Logic::NotAny.label())
                    }
                    Some(SecondaryMatch::AndAll) => {
                        write!(f, ", every secondary key ({})", Logic::AndAll.label())
                    }
                }
            }
        }
    }
}

/// An entry in the prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activation {
    pub book: String,
    pub uid: u32,
    pub comment: String,
    /// The text to insert: decorators removed, macros substituted.
    pub content: String,
    pub placement: Placement,
    pub order: i64,
    /// Tokens counted against the budget (content plus its newline).
    pub tokens: usize,
    /// Scan pass it activated in (1 = the chat; more = recursion).
    pub pass: u32,
    pub why: Why,
}

/// An entry whose condition held but that is not in the prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeftOut {
    pub book: String,
    pub uid: u32,
    pub comment: String,
    pub pass: u32,
    /// What would have activated it.
    pub matched: Why,
    pub reason: Reason,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Reason {
    /// It did not fit: `tokens` needed, `left` remained.
    Budget { tokens: usize, left: usize },
    /// The budget was already spent when its turn came.
    BudgetSpent,
    /// Another member of the inclusion group won.
    GroupLost {
        group: String,
        winner: Option<String>,
    },
    /// A member of the group matched more keys.
    GroupScore {
        group: String,
        score: usize,
        best: usize,
    },
    /// Its probability roll failed.
    Probability { roll: f64, probability: f64 },
    /// On cooldown until the chat has `until` messages.
    Cooldown { until: u64 },
    /// Delayed until the chat has `until` messages.
    Delay { until: u64 },
    /// Waits for recursion level `level`, which was not reached.
    DelayedUntilRecursion { level: u32 },
    /// Found only in other entries' content, and it is non-recursable.
    ExcludedFromRecursion,
    /// An `@@dont_activate` decorator.
    DontActivate,
    /// `@@activate_only_after N` / `@@activate_only_every N` not satisfied.
    ReplyCount { rule: String },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Budget { tokens, left } => {
                write!(f, "over the token budget ({tokens} tokens, {left} left)")
            }
            Reason::BudgetSpent => write!(f, "the token budget was already spent"),
            Reason::GroupLost { group, winner } => match winner {
                Some(w) => write!(f, "inclusion group '{group}' went to {w}"),
                None => write!(f, "inclusion group '{group}' had no winner this time"),
            },
            Reason::GroupScore { group, score, best } => write!(
                f,
                "inclusion group '{group}': {score} keys matched, another entry matched {best}"
            ),
            Reason::Probability { roll, probability } => {
                write!(f, "probability roll {roll:.1} > {probability}%")
            }
            Reason::Cooldown { until } => write!(f, "on cooldown until message {until}"),
            Reason::Delay { until } => write!(f, "delayed until message {until}"),
            Reason::DelayedUntilRecursion { level } => {
                write!(f, "waits for recursion level {level}")
            }
            Reason::ExcludedFromRecursion => {
                write!(f, "found only in other entries and it is non-recursable")
            }
            Reason::DontActivate => write!(f, "@@dont_activate"),
            Reason::ReplyCount { rule } => write!(f, "{rule} not satisfied"),
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+ {}#{}", self.book, self.uid)?;
        if !self.comment.is_empty() {
            write!(f, " \"{}\"", self.comment)?;
        }
        write!(
            f,
            ": {} · {} · order {} · {} tokens",
            self.why, self.placement, self.order, self.tokens
        )?;
        if self.pass > 1 {
            write!(f, " · pass {}", self.pass)?;
        }
        Ok(())
    }
}

impl fmt::Display for LeftOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "- {}#{}", self.book, self.uid)?;
        if !self.comment.is_empty() {
            write!(f, " \"{}\"", self.comment)?;
        }
        write!(f, ": {}, left out: {}", self.matched, self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_what_matched_where() {
        let a = Activation {
            book: "Eldoria".into(),
            uid: 3,
            comment: "The Tower".into(),
            content: "x".into(),
            placement: Placement::AtDepth {
                depth: 2,
                role: Role::System,
            },
            order: 100,
            tokens: 12,
            pass: 1,
            why: Why::Keys(KeyMatch {
                key: "tower".into(),
                found_in: Source::Message { from_end: 0 },
                secondary: Some(SecondaryMatch::NotAll {
                    missing: "ruin".into(),
                }),
            }),
        };
        assert_eq!(
            a.to_string(),
            "+ Eldoria#3 \"The Tower\": key 'tower' in the last message, 'ruin' absent (NOT ALL) · at depth 2 as system · order 100 · 12 tokens"
        );
        let l = LeftOut {
            book: "Eldoria".into(),
            uid: 4,
            comment: String::new(),
            pass: 2,
            matched: Why::Constant,
            reason: Reason::Budget {
                tokens: 40,
                left: 7,
            },
        };
        assert_eq!(
            l.to_string(),
            "- Eldoria#4: constant, left out: over the token budget (40 tokens, 7 left)"
        );
    }
}
