//! Card lorebooks: the `character_book` inside a V2/V3 card and a standalone
//! lorebook V3 file (`{"spec": "lorebook_v3", "data": <book>}`), mapped onto
//! the same model as SillyTavern's `convertCharacterBook` does, so card books
//! run on the same engine.
//!
//! SillyTavern keeps its own options in each entry's `extensions`
//! (`position`, `depth`, `probability`, `group`, `sticky`, …, with
//! `selectiveLogic` and `useProbability` in camelCase); those become fields
//! and the other extension keys stay in `extensions`. Where SillyTavern
//! ignores a card field her-studio keeps it: the entry's top-level
//! `case_sensitive` is used when `extensions.case_sensitive` is absent, the
//! book's `scan_depth`, `token_budget` and `recursive_scanning` become book
//! defaults, and `name`, `priority` and `use_regex` stay in `extra_fields`
//! (keys are regexes only when written `/like this/`, as in SillyTavern,
//! whatever `use_regex` says).

use std::collections::HashSet;
use std::path::Path;

use serde_json::Value;

use super::error::{LoreError, entry_label};
use super::json::{Reader, kind};
use super::model::{
    Book, DEFAULT_DEPTH, DEFAULT_PROBABILITY, DEFAULT_WEIGHT, Entry, JsonObject, Logic, Position,
    Role, ScanSources, percent,
};
use super::st_json::recursion_delay;
use super::validate::{CARD_NAMES, Field, check_book};
use crate::character::Lorebook;

pub const LOREBOOK_V3: &str = "lorebook_v3";

pub fn is_lorebook_v3(top: &JsonObject) -> bool {
    top.get("spec").and_then(Value::as_str) == Some(LOREBOOK_V3)
}

/// Reads a lorebook V3 file. `name` is used when the book has none.
pub fn from_lorebook_v3(
    top: &JsonObject,
    name: &str,
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<Book, LoreError> {
    let mut r = Reader::new(top, path, String::new());
    r.string("spec")?;
    let data = r.object("data")?.ok_or_else(|| LoreError::NotABook {
        path: path.to_path_buf(),
        problem: "its \"spec\" is \"lorebook_v3\" but it has no 'data' object".into(),
    })?;
    let book = from_character_book(data, name, path, "data.", warnings)?;
    let dropped: Vec<String> = r
        .rest()
        .keys()
        .filter(|k| *k != "spec_version")
        .map(|k| format!("'{k}'"))
        .collect();
    if !dropped.is_empty() {
        warnings.push(format!(
            "fields next to 'data' are not kept: {}",
            dropped.join(", ")
        ));
    }
    Ok(book)
}

/// The book embedded in a character (as her-studio stores cards), on the
/// engine's model. `name` names it when the card's book has no name.
pub fn from_card_lorebook(
    lorebook: &Lorebook,
    name: &str,
    path: &Path,
) -> Result<(Book, Vec<String>), LoreError> {
    let bad_json = |field: String, e: String| LoreError::Field {
        path: path.to_path_buf(),
        field,
        problem: format!("is not a JSON object: {e}"),
    };
    let object = |text: &str, field: String| -> Result<Value, LoreError> {
        if text.trim().is_empty() {
            return Ok(Value::Object(JsonObject::new()));
        }
        match serde_json::from_str::<Value>(text) {
            Ok(v @ Value::Object(_)) => Ok(v),
            Ok(v) => Err(bad_json(field, format!("it is {}", kind(&v)))),
            Err(e) => Err(bad_json(field, e.to_string())),
        }
    };
    let mut entries = Vec::with_capacity(lorebook.entries.len());
    for (i, e) in lorebook.entries.iter().enumerate() {
        let mut o = JsonObject::new();
        o.insert("keys".into(), Value::from(e.keys.clone()));
        o.insert("content".into(), Value::from(e.content.clone()));
        o.insert(
            "extensions".into(),
            object(
                &e.extensions_json,
                format!("lorebook.entry[{i}].extensions_json"),
            )?,
        );
        o.insert("enabled".into(), Value::from(e.enabled));
        o.insert("insertion_order".into(), Value::from(e.insertion_order));
        if e.case_sensitive {
            o.insert("case_sensitive".into(), Value::from(true));
        }
        o.insert("constant".into(), Value::from(e.constant));
        o.insert(
            "secondary_keys".into(),
            Value::from(e.secondary_keys.clone()),
        );
        o.insert("selective".into(), Value::from(e.selective));
        if e.priority != 0 {
            o.insert("priority".into(), Value::from(e.priority));
        }
        if !e.name.is_empty() {
            o.insert("name".into(), Value::from(e.name.clone()));
        }
        o.insert("comment".into(), Value::from(e.comment.clone()));
        if let Some(id) = e.id {
            o.insert("id".into(), Value::from(id));
        }
        if !e.position.is_empty() {
            o.insert("position".into(), Value::from(e.position.clone()));
        }
        entries.push(Value::Object(o));
    }
    let mut data = JsonObject::new();
    data.insert("name".into(), Value::from(lorebook.name.clone()));
    data.insert(
        "description".into(),
        Value::from(lorebook.description.clone()),
    );
    if let Some(d) = lorebook.scan_depth {
        data.insert("scan_depth".into(), Value::from(d));
    }
    if let Some(b) = lorebook.token_budget {
        data.insert("token_budget".into(), Value::from(b));
    }
    if lorebook.recursive_scanning {
        data.insert("recursive_scanning".into(), Value::from(true));
    }
    data.insert(
        "extensions".into(),
        object(&lorebook.extensions_json, "lorebook.extensions_json".into())?,
    );
    data.insert("entries".into(), Value::Array(entries));
    let mut warnings = Vec::new();
    let book = from_character_book(&data, name, path, "lorebook.", &mut warnings)?;
    Ok((book, warnings))
}

/// SillyTavern's `convertCharacterBook` on a `character_book` object.
pub fn from_character_book(
    data: &JsonObject,
    name: &str,
    path: &Path,
    prefix: &str,
    warnings: &mut Vec<String>,
) -> Result<Book, LoreError> {
    let mut r = Reader::new(data, path, String::new());
    let mut book = Book {
        name: r
            .string("name")?
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| name.to_string()),
        description: r.string("description")?.unwrap_or_default(),
        ..Book::default()
    };
    book.defaults.scan_depth = r.uint("scan_depth", Field::ScanDepth)?;
    book.defaults.token_budget = r.uint("token_budget", Field::TokenBudget)?;
    book.defaults.recursive_scanning = r.bool("recursive_scanning")?;
    book.extensions = r.object("extensions")?.cloned().unwrap_or_default();
    let Some(Value::Array(items)) = r.get("entries") else {
        return Err(LoreError::Field {
            path: path.to_path_buf(),
            field: format!("{prefix}entries"),
            problem: "must be an array of entries".into(),
        });
    };
    book.extra_fields = r.rest();
    let mut entries = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let Value::Object(obj) = item else {
            return Err(LoreError::Field {
                path: path.to_path_buf(),
                field: format!("{prefix}entries[{index}]"),
                problem: format!("must be an object, got {}", kind(item)),
            });
        };
        entries.push(card_entry(obj, index, path)?);
    }
    // Ids become uids; missing or repeated ones get the smallest free uids.
    let mut taken: HashSet<u32> = HashSet::new();
    let kept: Vec<bool> = entries
        .iter()
        .map(|(_, id)| id.is_some_and(|id| taken.insert(id)))
        .collect();
    let mut next_free = 0u32;
    for (index, ((e, id), kept)) in entries.iter_mut().zip(kept).enumerate() {
        e.uid = match (*id, kept) {
            (Some(id), true) => id,
            _ => {
                while taken.contains(&next_free) {
                    next_free += 1;
                }
                taken.insert(next_free);
                if id.is_some() {
                    warnings.push(format!(
                        "{}: its id is used by an earlier entry; it gets uid '{next_free}'",
                        entry_label(None, &e.comment, index)
                    ));
                }
                next_free
            }
        };
    }
    book.entries = entries.into_iter().map(|(e, _)| e).collect();
    book.entries.sort_by_key(|e| e.uid);
    check_book(&book, path, &CARD_NAMES)?;
    Ok(book)
}

/// One card entry; the id it asks for (a number, or a string of one).
fn card_entry(
    obj: &JsonObject,
    index: usize,
    path: &Path,
) -> Result<(Entry, Option<u32>), LoreError> {
    let comment = obj.get("comment").and_then(Value::as_str).unwrap_or("");
    let id = match obj.get("id") {
        Some(Value::String(s)) => s.trim().parse::<u32>().ok(),
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        _ => None,
    };
    let mut r = Reader::new(obj, path, entry_label(id, comment, index));
    if let Some(v) = r.get("id").filter(|v| !v.is_string() && !v.is_number()) {
        return Err(r.error(
            "id",
            format!("must be a number or a string, got {}", kind(v)),
        ));
    }
    let mut e = Entry::new(0);
    e.keys = r.strings("keys")?.unwrap_or_default();
    e.content = r.string("content")?.unwrap_or_default();
    e.disabled = !r.bool("enabled")?.unwrap_or(true);
    e.order = r.int("insertion_order")?.unwrap_or(0);
    let top_case = r.bool("case_sensitive")?;
    e.constant = r.bool("constant")?.unwrap_or(false);
    e.secondary_keys = r.strings("secondary_keys")?.unwrap_or_default();
    e.selective = r.bool("selective")?.unwrap_or(false);
    e.comment = r.string("comment")?.unwrap_or_default();
    e.add_memo = !e.comment.is_empty();
    let top_position = r.string("position")?;
    let ext = r.object("extensions")?.cloned().unwrap_or_default();
    let mut x = r.nested(&ext, "extensions");
    e.position = match x.int("position")? {
        Some(n) => Position::from_st_number(n).ok_or_else(|| {
            x.error(
                "position",
                format!("must be a position from 0 to 7, got '{n}'"),
            )
        })?,
        None if top_position.as_deref() == Some("before_char") => Position::BeforeChar,
        None => Position::AfterChar,
    };
    e.exclude_recursion = x.bool("exclude_recursion")?.unwrap_or(false);
    e.prevent_recursion = x.bool("prevent_recursion")?.unwrap_or(false);
    e.delay_until_recursion = recursion_delay(&mut x, "delay_until_recursion")?;
    e.display_index = Some(x.int("display_index")?.unwrap_or(index as i64));
    e.probability = x
        .number("probability")?
        .map_or(DEFAULT_PROBABILITY, percent);
    e.use_probability = x.bool("useProbability")?.unwrap_or(true);
    e.depth = x.uint("depth", Field::Depth)?.unwrap_or(DEFAULT_DEPTH);
    if let Some(n) = x.int("selectiveLogic")? {
        e.logic = Logic::from_st_number(n)
            .ok_or_else(|| x.error("selectiveLogic", format!("must be 0, 1, 2 or 3, got '{n}'")))?;
    }
    e.outlet = x.string("outlet_name")?.unwrap_or_default();
    e.group = x.string("group")?.unwrap_or_default();
    e.group_override = x.bool("group_override")?.unwrap_or(false);
    e.group_weight = x
        .uint("group_weight", Field::GroupWeight)?
        .unwrap_or(DEFAULT_WEIGHT);
    e.scan_depth = x.uint("scan_depth", Field::ScanDepth)?;
    e.case_sensitive = match x.has("case_sensitive") {
        true => x.bool("case_sensitive")?,
        false => top_case,
    };
    e.match_whole_words = x.bool("match_whole_words")?;
    e.use_group_scoring = x.bool("use_group_scoring")?;
    e.automation_id = x.string("automation_id")?.unwrap_or_default();
    if let Some(n) = x.int("role")? {
        e.role = Some(Role::from_st_number(n).ok_or_else(|| {
            x.error(
                "role",
                format!("must be 0 (system), 1 (user) or 2 (assistant), got '{n}'"),
            )
        })?);
    }
    e.vectorized = x.bool("vectorized")?.unwrap_or(false);
    e.sticky = x.uint("sticky", Field::Sticky)?.unwrap_or(0);
    e.cooldown = x.uint("cooldown", Field::Cooldown)?.unwrap_or(0);
    e.delay = x.uint("delay", Field::Delay)?.unwrap_or(0);
    e.also_scan = ScanSources {
        persona_description: x.bool("match_persona_description")?.unwrap_or(false),
        character_description: x.bool("match_character_description")?.unwrap_or(false),
        character_personality: x.bool("match_character_personality")?.unwrap_or(false),
        character_depth_prompt: x.bool("match_character_depth_prompt")?.unwrap_or(false),
        scenario: x.bool("match_scenario")?.unwrap_or(false),
        creator_notes: x.bool("match_creator_notes")?.unwrap_or(false),
    };
    e.triggers = x.strings("triggers")?.unwrap_or_default();
    e.ignore_budget = x.bool("ignore_budget")?.unwrap_or(false);
    e.extensions = x.rest();
    e.extra_fields = r.rest();
    Ok((e, id))
}
