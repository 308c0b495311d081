//! Scenes: several AI characters, a user persona and an optional narrator.
//!
//! Each AI character gets its own system prompt, built from its own profile
//! plus what the scene says, and sees only what it could know (the prompt
//! builder's history rules filter the others' inner thoughts).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::file::{CharacterError, load_character_by_name};
use super::{Character, OtherCharacter, Persona};

/// Who speaks next in a scene.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NextSpeaker {
    /// The user picks each time.
    #[default]
    User,
    /// AI characters take turns in member order.
    RoundRobin,
    /// The model picks, constrained to the members' names.
    Model,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scene {
    pub title: String,
    pub book: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub background: String,
    pub scenario: String,
    /// The user's persona; `None` when the user only directs.
    #[serde(default)]
    pub user: Option<Persona>,
    /// Whether an Environment narrator describes the world between turns.
    #[serde(default)]
    pub environment: bool,
    #[serde(default)]
    pub next_speaker: NextSpeaker,
    #[serde(default, rename = "member")]
    pub members: Vec<SceneMember>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Lorebooks of `characters/lore/` attached to this scene, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lore: Vec<String>,
}

/// A character in a scene: a library character by file stem, or described inline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SceneMember {
    /// File stem in `characters/` (e.g. "elizabeth-bennet").
    #[serde(default)]
    pub character: Option<String>,
    /// Inline name and profile when `character` is not set.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub profile: Option<String>,
    /// What this character wants in this scene (HER's inner thoughts).
    #[serde(default)]
    pub motivation: String,
}

/// The name of the pseudo-character that narrates the world.
pub const ENVIRONMENT: &str = "Environment";

impl Scene {
    /// Resolves the members into full characters, each with the scene's
    /// scenario, its own motivation, and the others as "other characters".
    pub fn cast(&self, characters_dir: &Path) -> Result<Vec<Character>, CharacterError> {
        let mut cast = Vec::with_capacity(self.members.len());
        for member in &self.members {
            let mut c = match (&member.character, &member.name) {
                (Some(stem), _) => load_character_by_name(characters_dir, stem)?,
                (None, Some(name)) => Character {
                    name: name.clone(),
                    book: self.book.clone(),
                    profile: member.profile.clone().unwrap_or_default(),
                    ..Character::default()
                },
                (None, None) => {
                    return Err(CharacterError::Invalid {
                        path: PathBuf::from(&self.title),
                        location: String::new(),
                        message: "a scene member needs 'character' or 'name'".into(),
                    });
                }
            };
            c.scenario = self.scenario.clone();
            // The library file's own user persona may be another member here.
            c.user = self.user.clone();
            if !self.background.trim().is_empty() {
                c.background = self.background.clone();
            }
            if !member.motivation.trim().is_empty() {
                c.motivation = member.motivation.clone();
            }
            cast.push(c);
        }
        // Everyone knows the others' public profiles (their own files may list more people).
        let profiles: Vec<OtherCharacter> = cast
            .iter()
            .map(|c| OtherCharacter {
                name: c.name.clone(),
                profile: c.profile.clone(),
            })
            .collect();
        for c in &mut cast {
            let mut others: Vec<OtherCharacter> = profiles
                .iter()
                .filter(|o| o.name != c.name)
                .cloned()
                .collect();
            if let Some(user) = &self.user
                && !others.iter().any(|o| o.name == user.name)
            {
                others.push(OtherCharacter {
                    name: user.name.clone(),
                    profile: user.description.clone(),
                });
            }
            c.others = others;
        }
        Ok(cast)
    }

    /// Names that may speak next: the AI characters, then the narrator if any.
    pub fn speakers(&self, cast: &[Character]) -> Vec<String> {
        let mut names: Vec<String> = cast.iter().map(|c| c.name.clone()).collect();
        if self.environment {
            names.push(ENVIRONMENT.to_string());
        }
        names
    }
}

pub fn load_scene(path: &Path) -> Result<Scene, CharacterError> {
    let text = crate::fsutil::read::text(path, crate::fsutil::read::Kind::Character)?;
    parse_scene(&text, path)
}

pub fn parse_scene(text: &str, path: &Path) -> Result<Scene, CharacterError> {
    let scene: Scene = super::file::parse_toml(text, path)?;
    if scene.members.is_empty() {
        return Err(CharacterError::Invalid {
            path: path.to_path_buf(),
            location: String::new(),
            message: "a scene needs at least one [[member]]".into(),
        });
    }
    Ok(scene)
}

impl Scene {
    /// The narrator as a character: describes the world, never speaks for the cast.
    pub fn environment_character(&self, cast: &[Character]) -> Character {
        let names: Vec<&str> = cast.iter().map(|c| c.name.as_str()).collect();
        Character {
            name: ENVIRONMENT.to_string(),
            book: self.book.clone(),
            profile: format!(
                "The Environment is the narrator of this scene: the place, the weather, the light, \
sounds, passing servants and strangers, and events that happen to the characters. It never \
speaks, thinks or acts for {}.",
                names.join(", ")
            ),
            background: self.background.clone(),
            scenario: self.scenario.clone(),
            motivation: "Keep the world vivid and consistent, and give the characters something to react to when the scene slows.".into(),
            others: cast
                .iter()
                .map(|c| OtherCharacter {
                    name: c.name.clone(),
                    profile: c.profile.clone(),
                })
                .collect(),
            ..Character::default()
        }
    }
}
