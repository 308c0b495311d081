//! Card JSON (V1, V2, V3) to `Character` and back.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::rawjson::{Obj, kind, minify};
use super::{CardError, CardSpec, ImportedCard, MAX_LORE_ENTRIES};
use crate::character::{
    CardExtras, Character, LoreEntry, Lorebook, OtherCharacter, Persona, SamplingOverrides,
};

/// The book given to characters whose card names none (validation needs one).
pub const DEFAULT_BOOK: &str = "an original story";

/// The key under `data.extensions` that carries what cards have no field for.
pub const HER_STUDIO_KEY: &str = "her_studio";

/// `data` fields mapped onto `Character`; anything else is kept as raw text.
pub(super) const MAPPED: &[&str] = &[
    "name",
    "description",
    "personality",
    "scenario",
    "first_mes",
    "mes_example",
    "creator_notes",
    "system_prompt",
    "post_history_instructions",
    "alternate_greetings",
    "character_book",
    "tags",
    "creator",
    "character_version",
    "extensions",
];

const BOOK_FIELDS: &[&str] = &[
    "name",
    "description",
    "scan_depth",
    "token_budget",
    "recursive_scanning",
    "extensions",
    "entries",
];

const ENTRY_FIELDS: &[&str] = &[
    "keys",
    "content",
    "extensions",
    "enabled",
    "insertion_order",
    "case_sensitive",
    "constant",
    "secondary_keys",
    "selective",
    "priority",
    "name",
    "comment",
    "id",
    "position",
    "use_regex",
];

/// Character fields Character Cards lack, stored in `data.extensions.her_studio`
/// so that her-studio → card → her-studio loses nothing.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct HerStudio {
    pub(super) version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) book: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) author: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) background: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) motivation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) others: Option<Vec<OtherCharacter>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) user: Option<Persona>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) sampling: Option<SamplingOverrides>,
    /// The spec the character was first imported from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) source_spec: Option<String>,
    /// The character had no `card` section before export.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(super) no_card: bool,
    /// Only when `first_mes`/`alternate_greetings` cannot carry them exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) greetings: Option<Vec<String>>,
    /// Only when `mes_example` cannot carry them exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) examples: Option<Vec<String>>,
}

/// Parses card JSON text. `what` names its source in errors ("the 'ccv3' chunk").
pub(crate) fn parse_card(text: &str, path: &Path, what: &str) -> Result<ImportedCard, CardError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let root: &RawValue = serde_json::from_str(text).map_err(|e| json_error(&e, path, what))?;
    let min = minify(root.get());
    if !min.starts_with('{') {
        return Err(CardError::NotACard {
            path: path.to_path_buf(),
            what: what.to_string(),
            problem: format!("it is {}, not a JSON object", kind(&min)),
        });
    }
    let top = Obj::parse(&min, path, "")?;
    let mut warnings = Vec::new();
    let (spec, data) = match top.string("spec")?.as_deref() {
        Some("chara_card_v2") => (CardSpec::V2, required_data(&top)?),
        Some("chara_card_v3") => (CardSpec::V3, required_data(&top)?),
        Some(other) => {
            return Err(CardError::UnsupportedSpec {
                path: path.to_path_buf(),
                spec: other.to_string(),
            });
        }
        None => match top.object("data")? {
            Some(data) => {
                warnings.push(
                    "the card has no 'spec' field; it was read as 'chara_card_v2'".to_string(),
                );
                (CardSpec::V2, data)
            }
            None => {
                if !top.has("name") {
                    return Err(CardError::NotACard {
                        path: path.to_path_buf(),
                        what: what.to_string(),
                        problem: "it has no 'spec', no 'data' and no 'name' field".into(),
                    });
                }
                (CardSpec::V1, top)
            }
        },
    };
    let character = map_data(&data, spec, path, &mut warnings)?;
    Ok(ImportedCard {
        character,
        spec,
        warnings,
    })
}

fn required_data<'a>(top: &Obj<'a>) -> Result<Obj<'a>, CardError> {
    top.object("data")?.ok_or_else(|| CardError::Field {
        path: top.path().to_path_buf(),
        field: "data".into(),
        problem: "is missing".into(),
    })
}

pub(crate) fn json_error(e: &serde_json::Error, path: &Path, what: &str) -> CardError {
    let full = e.to_string();
    // serde_json appends " at line L column C"; the error states it itself.
    let message = full
        .rsplit_once(" at line ")
        .map_or(full.as_str(), |(m, _)| m)
        .to_string();
    CardError::Json {
        path: path.to_path_buf(),
        what: what.to_string(),
        line: e.line(),
        column: e.column(),
        message,
    }
}

fn map_data(
    data: &Obj<'_>,
    spec: CardSpec,
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<Character, CardError> {
    let field_error = |field: &str, problem: &str| CardError::Field {
        path: path.to_path_buf(),
        field: data.field(field),
        problem: problem.to_string(),
    };
    let name = data.string("name")?.unwrap_or_default().trim().to_string();
    if name.is_empty() {
        return Err(field_error("name", "is missing or empty"));
    }
    if name.chars().any(char::is_control) {
        return Err(field_error("name", "contains control characters"));
    }
    let description = data.text("description")?;
    let personality = data.text("personality")?;
    let first_mes = data.text("first_mes")?;
    let mes_example = data.text("mes_example")?;
    let alternate = if spec == CardSpec::V1 {
        Vec::new()
    } else {
        data.strings("alternate_greetings")?
    };

    let mut c = Character {
        name,
        profile: description,
        personality,
        scenario: data.text("scenario")?,
        greetings: join_greetings(&first_mes, alternate),
        examples: split_examples(&mes_example),
        ..Character::default()
    };

    if spec == CardSpec::V1 {
        let dropped: Vec<String> = data
            .members
            .iter()
            .filter(|m| !MAPPED.contains(&m.key.as_str()))
            .map(|m| format!("'{}'", m.key))
            .collect();
        if !dropped.is_empty() {
            warnings.push(format!("V1 card fields not kept: {}", dropped.join(", ")));
        }
        c.card = Some(CardExtras {
            source_spec: spec.name().to_string(),
            ..CardExtras::default()
        });
    } else {
        c.tags = data.strings("tags")?;
        // Validate even though unmapped: the field's type is part of the V3 spec.
        let group_only = data.strings("group_only_greetings")?;
        let mut extras = CardExtras {
            creator: data.text("creator")?,
            character_version: data.text("character_version")?,
            creator_notes: data.text("creator_notes")?,
            system_prompt: data.text("system_prompt")?,
            post_history_instructions: data.text("post_history_instructions")?,
            source_spec: spec.name().to_string(),
            // An empty `group_only_greetings` is what export writes anyway.
            extra_fields_json: data.rebuild(|m| {
                let default_group_only = m.key == "group_only_greetings" && group_only.is_empty();
                !MAPPED.contains(&m.key.as_str()) && !default_group_only
            }),
            ..CardExtras::default()
        };
        let mut her = HerStudio::default();
        if let Some(ext) = data.object("extensions")? {
            if let Some(raw) = ext.get(HER_STUDIO_KEY) {
                her = serde_json::from_str(raw).map_err(|e| CardError::Field {
                    path: path.to_path_buf(),
                    field: ext.field(HER_STUDIO_KEY),
                    problem: format!("is malformed: {e}"),
                })?;
            }
            extras.extensions_json = ext.rebuild(|m| m.key != HER_STUDIO_KEY);
        }
        if let Some(book) = data.object("character_book")? {
            c.lorebook = Some(map_book(&book, warnings)?);
        }
        apply_her_studio(&mut c, &mut extras, her);
    }

    if c.profile.trim().is_empty() {
        if c.personality.trim().is_empty() {
            return Err(field_error(
                "description",
                "is empty and so is 'personality'; her-studio needs a profile",
            ));
        }
        c.profile = c.personality.clone();
        warnings.push("the card has no description; its personality is used as the profile".into());
    }
    if c.book.trim().is_empty() {
        c.book = DEFAULT_BOOK.to_string();
        warnings.push(format!(
            "the card names no book; 'book' is set to '{DEFAULT_BOOK}' (edit it if the character comes from one)"
        ));
    }
    Ok(c)
}

fn apply_her_studio(c: &mut Character, extras: &mut CardExtras, her: HerStudio) {
    let set = |target: &mut String, value: Option<String>| {
        if let Some(v) = value {
            *target = v;
        }
    };
    set(&mut c.book, her.book);
    set(&mut c.author, her.author);
    set(&mut c.description, her.description);
    set(&mut c.background, her.background);
    set(&mut c.motivation, her.motivation);
    set(&mut extras.source_spec, her.source_spec);
    if let Some(others) = her.others {
        c.others = others;
    }
    c.user = her.user;
    c.sampling = her.sampling;
    if let Some(greetings) = her.greetings {
        c.greetings = greetings;
    }
    if let Some(examples) = her.examples {
        c.examples = examples;
    }
    let bare = CardExtras {
        source_spec: extras.source_spec.clone(),
        ..CardExtras::default()
    };
    // Keep "no card section" only while the card adds nothing of its own.
    c.card = if her.no_card && *extras == bare {
        None
    } else {
        Some(extras.clone())
    };
}

fn map_book(book: &Obj<'_>, warnings: &mut Vec<String>) -> Result<Lorebook, CardError> {
    let mut dropped: Vec<String> = book
        .members
        .iter()
        .filter(|m| !BOOK_FIELDS.contains(&m.key.as_str()))
        .map(|m| book.field(&m.key))
        .collect();
    let mut lore = Lorebook {
        name: book.text("name")?,
        description: book.text("description")?,
        scan_depth: book.u32("scan_depth")?,
        token_budget: book.u32("token_budget")?,
        recursive_scanning: book.bool("recursive_scanning")?.unwrap_or(false),
        extensions_json: extensions_text(book)?,
        entries: Vec::new(),
    };
    let mut regex_entries = 0usize;
    let mut dropped_entry_fields: Vec<String> = Vec::new();
    for entry in book.objects("entries", MAX_LORE_ENTRIES)? {
        for m in &entry.members {
            if !ENTRY_FIELDS.contains(&m.key.as_str()) && !dropped_entry_fields.contains(&m.key) {
                dropped_entry_fields.push(m.key.clone());
            }
        }
        if entry.bool("use_regex")? == Some(true) {
            regex_entries += 1;
        }
        let id = match entry.get("id") {
            Some(raw) if raw.starts_with('"') => {
                // V3 allows string ids; keep those that are numbers.
                let text = entry.text("id")?;
                let parsed = text.trim().parse::<i64>().ok();
                if parsed.is_none() {
                    dropped.push(format!("{} ('{text}' is not a number)", entry.field("id")));
                }
                parsed
            }
            _ => entry.int("id")?,
        };
        lore.entries.push(LoreEntry {
            keys: entry.strings("keys")?,
            content: entry.text("content")?,
            enabled: entry.bool("enabled")?.unwrap_or(true),
            insertion_order: entry.int("insertion_order")?.unwrap_or(0),
            case_sensitive: entry.bool("case_sensitive")?.unwrap_or(false),
            constant: entry.bool("constant")?.unwrap_or(false),
            secondary_keys: entry.strings("secondary_keys")?,
            selective: entry.bool("selective")?.unwrap_or(false),
            priority: entry.int("priority")?.unwrap_or(0),
            name: entry.text("name")?,
            comment: entry.text("comment")?,
            id,
            position: entry.text("position")?,
            extensions_json: extensions_text(&entry)?,
        });
    }
    if regex_entries > 0 {
        warnings.push(format!(
            "'{regex_entries}' lorebook entries use regex keys; her-studio matches keys as plain text"
        ));
    }
    dropped.extend(
        dropped_entry_fields
            .iter()
            .map(|k| format!("{}.entries[].{k}", book.prefix)),
    );
    if !dropped.is_empty() {
        warnings.push(format!("lorebook fields not kept: {}", dropped.join(", ")));
    }
    Ok(lore)
}

/// The `extensions` object of `obj` as compact text; "" when absent or empty.
fn extensions_text(obj: &Obj<'_>) -> Result<String, CardError> {
    Ok(obj
        .object("extensions")?
        .map(|e| e.rebuild(|_| true))
        .unwrap_or_default())
}

/// first_mes first, then the alternates; an empty first_mes is no greeting.
pub(super) fn join_greetings(first: &str, alternates: Vec<String>) -> Vec<String> {
    let mut greetings = Vec::with_capacity(alternates.len() + 1);
    if !first.is_empty() {
        greetings.push(first.to_string());
    }
    greetings.extend(alternates);
    greetings
}

/// `mes_example` holds blocks each introduced by `<START>` (any case).
pub(crate) fn split_examples(text: &str) -> Vec<String> {
    const MARK: &[u8] = b"<start>";
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut block_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'<'
            && bytes
                .get(i..i + MARK.len())
                .is_some_and(|b| b.eq_ignore_ascii_case(MARK))
        {
            // The mark is ASCII, so both ends are char boundaries.
            out.push(&text[block_start..i]);
            i += MARK.len();
            block_start = i;
        } else {
            i += 1;
        }
    }
    out.push(&text[block_start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

pub(crate) fn join_examples(examples: &[String]) -> String {
    examples
        .iter()
        .map(|e| format!("<START>\n{e}"))
        .collect::<Vec<_>>()
        .join("\n")
}
