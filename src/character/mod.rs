//! Characters: who the model plays, stored as TOML files in `characters/`.

mod file;

pub use file::{CharacterError, list_characters, load_character, load_character_by_name};

use serde::{Deserialize, Serialize};

/// A character the model plays, with everything the HER system prompt needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// `her characters`: one line per character file; broken files are listed with their error.
pub fn print_list(dir: &std::path::Path) -> Result<(), CharacterError> {
    for (path, loaded) in list_characters(dir)? {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy())
            .unwrap_or_default();
        match loaded {
            Ok(c) => println!("{stem:<24} {} ({}) — {}", c.name, c.book, c.description),
            Err(err) => println!("{stem:<24} ERROR: {err}"),
        }
    }
    Ok(())
}
