//! A World Info book as her-studio stores it: every SillyTavern entry option
//! has a field, named after what it does; what her-studio does not know is
//! kept as JSON objects so an export gives it back.

use serde::{Deserialize, Serialize};

/// A JSON object kept as it came (unknown fields, `extensions`).
pub type JsonObject = serde_json::Map<String, serde_json::Value>;

/// SillyTavern's defaults (`newWorldInfoEntryDefinition`, world-info.js).
pub const DEFAULT_ORDER: i64 = 100;
pub const DEFAULT_DEPTH: u32 = 4;
pub const DEFAULT_WEIGHT: u32 = 100;
pub const DEFAULT_PROBABILITY: f64 = 100.0;
/// The ranges SillyTavern's editor allows; values outside are refused on import.
pub const MAX_SCAN_DEPTH: u32 = 1000;
pub const MAX_INSERT_DEPTH: u32 = 9999;
pub const MAX_TIMED: u32 = 999_999;
pub const MAX_WEIGHT: u32 = 999_999;
/// Largest book token budget accepted (ten million tokens).
pub const MAX_TOKEN_BUDGET: u32 = 10_000_000;

/// A probability as stored: six decimals at most, so that it reads back
/// exactly from JSON (serde_json's fast float parser is exact for such
/// numbers; SillyTavern's editor itself only writes whole percents).
pub fn percent(p: f64) -> f64 {
    (p * 1e6).round() / 1e6
}

/// A lorebook: `characters/lore/NAME.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Book {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// What entries fall back on when they leave a setting unset.
    #[serde(default, skip_serializing_if = "BookDefaults::is_empty")]
    pub defaults: BookDefaults,
    #[serde(default, rename = "entry")]
    pub entries: Vec<Entry>,
    /// The book's `extensions` object (lorebook V3, cards).
    #[serde(
        default,
        rename = "extensions_json",
        with = "json_text",
        skip_serializing_if = "JsonObject::is_empty"
    )]
    pub extensions: JsonObject,
    /// Top-level fields of the imported file her-studio does not use
    /// (SillyTavern's `originalData`, …), written back on export.
    #[serde(
        default,
        rename = "extra_fields_json",
        with = "json_text",
        skip_serializing_if = "JsonObject::is_empty"
    )]
    pub extra_fields: JsonObject,
}

/// Book-wide defaults. SillyTavern has these only as global settings; cards
/// carry `scan_depth`, `token_budget` and `recursive_scanning` per book.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BookDefaults {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_depth: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_sensitive: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_whole_words: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_group_scoring: Option<bool>,
    /// Tokens the book's author meant it to use (card `token_budget`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_budget: Option<u32>,
    /// Card `recursive_scanning`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recursive_scanning: Option<bool>,
}

impl BookDefaults {
    pub fn is_empty(&self) -> bool {
        *self == BookDefaults::default()
    }
}

/// One entry. Field comments give SillyTavern's name where it differs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Identity inside the book; timed effects are kept per book and uid.
    pub uid: u32,
    /// Title / memo; never in the prompt.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
    /// Primary keys (`key`): plain text or `/regex/flags`.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Optional filter keys (`keysecondary`), used when `selective`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secondary_keys: Vec<String>,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub selective: bool,
    /// How secondary keys combine (`selectiveLogic`).
    #[serde(default, skip_serializing_if = "Logic::is_default")]
    pub logic: Logic,
    #[serde(default)]
    pub content: String,
    /// Always active, whatever the keys.
    #[serde(default, skip_serializing_if = "is_false")]
    pub constant: bool,
    /// `disable`
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
    /// Higher fills the budget first and sits later in the prompt.
    #[serde(default = "default_order", skip_serializing_if = "is_default_order")]
    pub order: i64,
    #[serde(default, skip_serializing_if = "Position::is_default")]
    pub position: Position,
    /// Messages from the end, for `position = "at_depth"`.
    #[serde(default = "default_depth", skip_serializing_if = "is_default_depth")]
    pub depth: u32,
    /// Speaker of an `at_depth` insertion; unset means system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// `outletName`, for `position = "outlet"`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub outlet: String,
    /// Trigger chance in percent, 0–100.
    #[serde(
        default = "default_probability",
        skip_serializing_if = "is_default_probability"
    )]
    pub probability: f64,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub use_probability: bool,
    /// Inclusion groups, comma separated: one winner per group.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// "Prioritize inclusion": the highest order wins the group.
    #[serde(default, skip_serializing_if = "is_false")]
    pub group_override: bool,
    #[serde(default = "default_weight", skip_serializing_if = "is_default_weight")]
    pub group_weight: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_group_scoring: Option<bool>,
    /// Messages searched for keys; unset: the book's or the global setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_depth: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_sensitive: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_whole_words: Option<bool>,
    /// "Non-recursable": cannot be activated by other entries' content.
    #[serde(default, skip_serializing_if = "is_false")]
    pub exclude_recursion: bool,
    /// Its content does not activate other entries.
    #[serde(default, skip_serializing_if = "is_false")]
    pub prevent_recursion: bool,
    #[serde(default, skip_serializing_if = "RecursionDelay::is_off")]
    pub delay_until_recursion: RecursionDelay,
    /// Stays active this many messages after activating (0 = off).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sticky: u32,
    /// Cannot activate for this many messages after activating (0 = off).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cooldown: u32,
    /// Cannot activate before the chat has this many messages (0 = off).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub delay: u32,
    /// Inserted even after the budget is spent.
    #[serde(default, skip_serializing_if = "is_false")]
    pub ignore_budget: bool,
    /// Texts besides the chat this entry's keys are searched in.
    #[serde(default, skip_serializing_if = "ScanSources::is_empty")]
    pub also_scan: ScanSources,
    /// Generation types it fires on (normal, continue, impersonate, swipe,
    /// regenerate, quiet); empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub character_filter: Option<CharacterFilter>,
    /// Quick Reply hook (`automationId`); kept, not used.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub automation_id: String,
    /// Vector Storage marker; kept, not used.
    #[serde(default, skip_serializing_if = "is_false")]
    pub vectorized: bool,
    /// Editor flag (`addMemo`); kept, not used.
    #[serde(default, skip_serializing_if = "is_false")]
    pub add_memo: bool,
    /// Editor ordering (`displayIndex`); kept, not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_index: Option<i64>,
    /// The entry's `extensions` object.
    #[serde(
        default,
        rename = "extensions_json",
        with = "json_text",
        skip_serializing_if = "JsonObject::is_empty"
    )]
    pub extensions: JsonObject,
    /// Entry fields her-studio does not know, written back on export.
    #[serde(
        default,
        rename = "extra_fields_json",
        with = "json_text",
        skip_serializing_if = "JsonObject::is_empty"
    )]
    pub extra_fields: JsonObject,
}

impl Entry {
    /// An entry with SillyTavern's defaults.
    pub fn new(uid: u32) -> Self {
        Entry {
            uid,
            comment: String::new(),
            keys: Vec::new(),
            secondary_keys: Vec::new(),
            selective: true,
            logic: Logic::AndAny,
            content: String::new(),
            constant: false,
            disabled: false,
            order: DEFAULT_ORDER,
            position: Position::BeforeChar,
            depth: DEFAULT_DEPTH,
            role: None,
            outlet: String::new(),
            probability: DEFAULT_PROBABILITY,
            use_probability: true,
            group: String::new(),
            group_override: false,
            group_weight: DEFAULT_WEIGHT,
            use_group_scoring: None,
            scan_depth: None,
            case_sensitive: None,
            match_whole_words: None,
            exclude_recursion: false,
            prevent_recursion: false,
            delay_until_recursion: RecursionDelay::Off,
            sticky: 0,
            cooldown: 0,
            delay: 0,
            ignore_budget: false,
            also_scan: ScanSources::default(),
            triggers: Vec::new(),
            character_filter: None,
            automation_id: String::new(),
            vectorized: false,
            add_memo: false,
            display_index: None,
            extensions: JsonObject::new(),
            extra_fields: JsonObject::new(),
        }
    }

    /// The inclusion groups: `group` split on commas, blanks dropped.
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.group
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
    }
}

/// How secondary keys combine with a primary match (`selectiveLogic`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Logic {
    /// At least one secondary key matches (0).
    #[default]
    AndAny,
    /// Not every secondary key matches (1).
    NotAll,
    /// No secondary key matches (2).
    NotAny,
    /// Every secondary key matches (3).
    AndAll,
}

impl Logic {
    pub fn is_default(&self) -> bool {
        *self == Logic::AndAny
    }

    /// SillyTavern's number (`world_info_logic`).
    pub fn st_number(self) -> u8 {
        match self {
            Logic::AndAny => 0,
            Logic::NotAll => 1,
            Logic::NotAny => 2,
            Logic::AndAll => 3,
        }
    }

    pub fn from_st_number(n: i64) -> Option<Logic> {
        Some(match n {
            0 => Logic::AndAny,
            1 => Logic::NotAll,
            2 => Logic::NotAny,
            3 => Logic::AndAll,
            _ => return None,
        })
    }

    pub fn label(self) -> &'static str {
        match self {
            Logic::AndAny => "AND ANY",
            Logic::NotAll => "NOT ALL",
            Logic::NotAny => "NOT ANY",
            Logic::AndAll => "AND ALL",
        }
    }
}

/// Where an entry goes in the prompt (`position`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    /// Before the character's description (0).
    #[default]
    BeforeChar,
    /// After the character's description (1).
    AfterChar,
    /// Before the author's note (2).
    AuthorNoteTop,
    /// After the author's note (3).
    AuthorNoteBottom,
    /// Inside the chat, `depth` messages from the end, as `role` (4).
    AtDepth,
    /// Before the example messages (5).
    ExamplesTop,
    /// After the example messages (6).
    ExamplesBottom,
    /// Only where `{{outlet::NAME}}` is written (7).
    Outlet,
    /// In HER's Current Scenario section (her-studio only; exported to
    /// SillyTavern as "after", with a marker that brings it back).
    Scenario,
}

impl Position {
    pub fn is_default(&self) -> bool {
        *self == Position::BeforeChar
    }

    /// SillyTavern's number (`world_info_position`).
    pub fn st_number(self) -> u8 {
        match self {
            Position::BeforeChar => 0,
            Position::AfterChar | Position::Scenario => 1,
            Position::AuthorNoteTop => 2,
            Position::AuthorNoteBottom => 3,
            Position::AtDepth => 4,
            Position::ExamplesTop => 5,
            Position::ExamplesBottom => 6,
            Position::Outlet => 7,
        }
    }

    pub fn from_st_number(n: i64) -> Option<Position> {
        Some(match n {
            0 => Position::BeforeChar,
            1 => Position::AfterChar,
            2 => Position::AuthorNoteTop,
            3 => Position::AuthorNoteBottom,
            4 => Position::AtDepth,
            5 => Position::ExamplesTop,
            6 => Position::ExamplesBottom,
            7 => Position::Outlet,
            _ => return None,
        })
    }
}

/// Speaker of an in-chat insertion (`role`: system 0, user 1, assistant 2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    #[default]
    System,
    User,
    Assistant,
}

impl Role {
    pub fn st_number(self) -> u8 {
        match self {
            Role::System => 0,
            Role::User => 1,
            Role::Assistant => 2,
        }
    }

    pub fn from_st_number(n: i64) -> Option<Role> {
        Some(match n {
            0 => Role::System,
            1 => Role::User,
            2 => Role::Assistant,
            _ => return None,
        })
    }
}

/// "Delay until recursion": SillyTavern stores `false`, `true` (level 1) or a
/// level number; the spelling is kept so an export gives the same JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RawDelay", into = "RawDelay")]
pub enum RecursionDelay {
    #[default]
    Off,
    /// `true`: level 1.
    On,
    /// Only in recursion passes from this level on (1 = the first).
    Level(u32),
}

impl RecursionDelay {
    pub fn is_off(&self) -> bool {
        *self == RecursionDelay::Off
    }

    /// The level, 0 when off.
    pub fn level(self) -> u32 {
        match self {
            RecursionDelay::Off => 0,
            RecursionDelay::On => 1,
            RecursionDelay::Level(n) => n,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum RawDelay {
    Flag(bool),
    Level(u32),
}

impl From<RawDelay> for RecursionDelay {
    fn from(raw: RawDelay) -> Self {
        match raw {
            RawDelay::Flag(false) | RawDelay::Level(0) => RecursionDelay::Off,
            RawDelay::Flag(true) => RecursionDelay::On,
            RawDelay::Level(n) => RecursionDelay::Level(n),
        }
    }
}

impl From<RecursionDelay> for RawDelay {
    fn from(d: RecursionDelay) -> Self {
        match d {
            RecursionDelay::Off => RawDelay::Flag(false),
            RecursionDelay::On => RawDelay::Flag(true),
            RecursionDelay::Level(n) => RawDelay::Level(n),
        }
    }
}

/// Texts outside the chat an entry's keys are also searched in
/// (SillyTavern's `match*` options).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanSources {
    #[serde(default, skip_serializing_if = "is_false")]
    pub persona_description: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub character_description: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub character_personality: bool,
    /// The character's note (`depth_prompt`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub character_depth_prompt: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub scenario: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub creator_notes: bool,
}

impl ScanSources {
    pub fn is_empty(&self) -> bool {
        *self == ScanSources::default()
    }

    /// The six flags in `ContextField` order.
    pub fn flags(&self) -> [bool; 6] {
        [
            self.persona_description,
            self.character_description,
            self.character_personality,
            self.character_depth_prompt,
            self.scenario,
            self.creator_notes,
        ]
    }
}

/// Which characters an entry applies to (`characterFilter`): names are
/// character file names, tags are tag names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CharacterFilter {
    /// The lists name characters the entry is NOT for.
    #[serde(default, skip_serializing_if = "is_false")]
    pub exclude: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}
fn is_false(b: &bool) -> bool {
    !*b
}
fn is_zero(n: &u32) -> bool {
    *n == 0
}
fn default_order() -> i64 {
    DEFAULT_ORDER
}
fn is_default_order(n: &i64) -> bool {
    *n == DEFAULT_ORDER
}
fn default_depth() -> u32 {
    DEFAULT_DEPTH
}
fn is_default_depth(n: &u32) -> bool {
    *n == DEFAULT_DEPTH
}
fn default_weight() -> u32 {
    DEFAULT_WEIGHT
}
fn is_default_weight(n: &u32) -> bool {
    *n == DEFAULT_WEIGHT
}
fn default_probability() -> f64 {
    DEFAULT_PROBABILITY
}
fn is_default_probability(p: &f64) -> bool {
    *p == DEFAULT_PROBABILITY
}

/// JSON objects stored in TOML as one line of JSON text: TOML has no null,
/// and the text survives hand edits of the rest of the file.
mod json_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::JsonObject;

    pub fn serialize<S: Serializer>(obj: &JsonObject, s: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(obj).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<JsonObject, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim().is_empty() {
            return Ok(JsonObject::new());
        }
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Object(obj)) => Ok(obj),
            Ok(_) => Err(serde::de::Error::custom(
                "must be the text of a JSON object, e.g. '{}'",
            )),
            Err(e) => Err(serde::de::Error::custom(format!("is not valid JSON: {e}"))),
        }
    }
}
