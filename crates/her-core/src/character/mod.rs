//! Characters: who the model plays, stored as TOML files in `characters/`.

pub mod card;
pub mod coser;
mod file;
mod scene;
pub mod store;
pub mod transfer;

pub(crate) use file::toml_error_location;
pub use file::{
    CharacterError, ListedCharacter, list_characters, load_character, load_character_by_name,
    parse_character,
};
pub use scene::{ENVIRONMENT, NextSpeaker, Scene, SceneMember, load_scene, parse_scene};

use serde::{Deserialize, Serialize};

/// A character the model plays, with everything the HER system prompt needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Character {
    pub name: String,
    /// The book the character comes from ("You are {name} from {book}.").
    pub book: String,
    #[serde(default)]
    pub author: String,
    /// One line for `her characters` and the picker.
    #[serde(default)]
    pub description: String,
    pub profile: String,
    /// Temperament in a few words (Character Card `personality`); shown after the profile.
    #[serde(default)]
    pub personality: String,
    /// Plot summary or background of the story so far.
    #[serde(default)]
    pub background: String,
    #[serde(default)]
    pub scenario: String,
    /// What the character wants right now (HER's "Your Inner Thoughts").
    #[serde(default)]
    pub motivation: String,
    /// Opening messages; several make swipes on the first message possible.
    #[serde(default)]
    pub greetings: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Lorebooks of `characters/lore/` attached to this character, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lore: Vec<String>,
    /// Other characters the model should know about.
    #[serde(default, rename = "other")]
    pub others: Vec<OtherCharacter>,
    /// The persona the user speaks as, unless they choose another.
    #[serde(default)]
    pub user: Option<Persona>,
    /// Example lines in the character's voice.
    #[serde(default)]
    pub examples: Vec<String>,
    /// Per-character sampling overrides, e.g. a cooler temperature.
    #[serde(default)]
    pub sampling: Option<SamplingOverrides>,
    /// World knowledge inserted into the prompt when its keys come up.
    #[serde(default)]
    pub lorebook: Option<Lorebook>,
    /// Character Card fields her-studio does not use, kept for a faithful export.
    #[serde(default)]
    pub card: Option<CardExtras>,
    /// The author's note a new session starts with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<AuthorNote>,
}

/// Text inserted into the history at a depth, every few user turns, to
/// steer the story (SillyTavern's Author's Note).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorNote {
    pub text: String,
    /// Turns from the end of the history (0: right before the reply).
    #[serde(default = "note_depth")]
    pub depth: u32,
    /// Inserted when the number of user turns is a multiple of this (1:
    /// every turn; 0: never).
    #[serde(default = "one")]
    pub every: u32,
    #[serde(default)]
    pub role: crate::lore::Role,
}

impl AuthorNote {
    pub fn new(text: impl Into<String>) -> Self {
        AuthorNote {
            text: text.into(),
            depth: note_depth(),
            every: 1,
            role: crate::lore::Role::System,
        }
    }

    /// Whether the note goes into a prompt whose transcript has `user_turns`
    /// user turns.
    pub fn is_due(&self, user_turns: usize) -> bool {
        self.every > 0 && user_turns % self.every as usize == 0
    }
}

/// SillyTavern's default note depth.
fn note_depth() -> u32 {
    4
}

fn one() -> u32 {
    1
}

/// A Character Card `character_book`: entries inserted into the prompt when
/// one of their keys appears in recent turns, within a token budget.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lorebook {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// How many recent transcript lines are searched for keys (default 4).
    #[serde(default)]
    pub scan_depth: Option<u32>,
    /// Most tokens the inserted entries may use together (default 512).
    #[serde(default)]
    pub token_budget: Option<u32>,
    #[serde(default)]
    pub recursive_scanning: bool,
    #[serde(default, rename = "entry")]
    pub entries: Vec<LoreEntry>,
    /// The card's `extensions` object of the book, as JSON text, untouched.
    #[serde(default)]
    pub extensions_json: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoreEntry {
    pub keys: Vec<String>,
    pub content: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Lower comes first in the prompt.
    #[serde(default)]
    pub insertion_order: i64,
    #[serde(default)]
    pub case_sensitive: bool,
    /// Always inserted, whatever the keys.
    #[serde(default)]
    pub constant: bool,
    /// Also required: one of these must appear too (when `selective`).
    #[serde(default)]
    pub secondary_keys: Vec<String>,
    #[serde(default)]
    pub selective: bool,
    /// Higher survives the token budget first.
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub id: Option<i64>,
    /// "before_char" or "after_char" in SillyTavern; kept for export.
    #[serde(default)]
    pub position: String,
    #[serde(default)]
    pub extensions_json: String,
}

fn yes() -> bool {
    true
}

/// Card fields kept only to write them back on export.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardExtras {
    #[serde(default)]
    pub creator: String,
    #[serde(default)]
    pub character_version: String,
    #[serde(default)]
    pub creator_notes: String,
    #[serde(default)]
    pub system_prompt: String,
    #[serde(default)]
    pub post_history_instructions: String,
    /// The card's `data.extensions` object as JSON text, untouched.
    #[serde(default)]
    pub extensions_json: String,
    /// Which spec the card was imported from: "chara_card_v2" or "chara_card_v3".
    #[serde(default)]
    pub source_spec: String,
    /// `data` fields her-studio does not map (V3 `nickname`, `assets`, …) as
    /// one JSON object text, in the card's order, written back on export.
    #[serde(default)]
    pub extra_fields_json: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtherCharacter {
    pub name: String,
    pub profile: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persona {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingOverrides {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub max_new_tokens: Option<u32>,
}

impl Character {
    /// The user's speaking name: the character's default persona or the configured one.
    pub fn user_name<'a>(&'a self, configured: &'a str) -> &'a str {
        self.user.as_ref().map_or(configured, |p| p.name.as_str())
    }
}

/// `her characters`: one line per character and scene file; broken files
/// are listed with their error.
pub fn print_list(dir: &std::path::Path) -> Result<(), CharacterError> {
    let stem = |p: &std::path::Path| {
        p.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    for (path, loaded) in list_characters(dir)? {
        match loaded {
            Ok(c) => println!(
                "{:<24} {} ({}) — {}",
                stem(&path),
                c.name,
                c.book,
                c.description
            ),
            Err(err) => println!("{:<24} ERROR: {err}", stem(&path)),
        }
    }
    let Ok(paths) = crate::fsutil::toml_files(&dir.join("scenes")) else {
        return Ok(());
    };
    println!("\nscenes (her chat --scene NAME):");
    for path in paths {
        match load_scene(&path) {
            Ok(s) => println!(
                "{:<24} {} ({}), {} members",
                stem(&path),
                s.title,
                s.book,
                s.members.len()
            ),
            Err(err) => println!("{:<24} ERROR: {err}", stem(&path)),
        }
    }
    Ok(())
}
