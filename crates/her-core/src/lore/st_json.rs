//! SillyTavern's World Info file: `{"entries": {"<uid>": {...}, ...}}`
//! with the field names of `newWorldInfoEntryDefinition`.
//!
//! Import accepts what SillyTavern itself loads (nulls, missing fields,
//! `delayUntilRecursion` as a boolean or a number) and refuses values it
//! could not mean (wrong types, out-of-range numbers, regex keys that do not
//! compile), naming the entry and the field. Unknown fields are kept and
//! written back. Export writes every field in SillyTavern's order; the
//! book's name, description and defaults travel in a top-level `her_studio`
//! object SillyTavern keeps without reading.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::error::{LoreError, entry_label};
use super::json::{Reader, number_value};
use super::model::{
    Book, BookDefaults, CharacterFilter, DEFAULT_DEPTH, DEFAULT_ORDER, DEFAULT_PROBABILITY,
    DEFAULT_WEIGHT, Entry, JsonObject, Logic, Position, RecursionDelay, Role, ScanSources, percent,
};
use super::validate::{Field, ST_NAMES, check_book};

/// Where her-studio keeps what SillyTavern has no field for.
pub const HER_STUDIO_KEY: &str = "her_studio";

/// A World Info export has an `entries` object (and no card `spec`/`data`).
pub fn is_world_info(top: &JsonObject) -> bool {
    matches!(top.get("entries"), Some(Value::Object(_)))
        && !top.contains_key("spec")
        && !top.contains_key("data")
}

/// Reads a World Info export. `name` is the book's name when the file does
/// not carry one (SillyTavern names books after their file).
pub fn from_st(
    top: &JsonObject,
    name: &str,
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<Book, LoreError> {
    let mut r = Reader::new(top, path, String::new());
    let entries = r.object("entries")?.ok_or_else(|| LoreError::NotABook {
        path: path.to_path_buf(),
        problem: "it has no 'entries' object".into(),
    })?;
    let mut book = Book {
        name: name.to_string(),
        ..Book::default()
    };
    if let Some(ours) = r.object(HER_STUDIO_KEY)? {
        let mut h = r.nested(ours, HER_STUDIO_KEY);
        if let Some(n) = h.string("name")?.filter(|n| !n.trim().is_empty()) {
            book.name = n;
        }
        book.description = h.string("description")?.unwrap_or_default();
        if let Some(d) = h.get("defaults") {
            book.defaults = serde_json::from_value::<BookDefaults>(d.clone())
                .map_err(|e| h.error("defaults", format!("is malformed: {e}")))?;
        }
    }
    book.extra_fields = r.rest();
    for (position, (key, value)) in entries.iter().enumerate() {
        let Value::Object(obj) = value else {
            return Err(LoreError::Field {
                path: path.to_path_buf(),
                field: format!("entries.{key}"),
                problem: format!("must be an object, got {}", super::json::kind(value)),
            });
        };
        book.entries
            .push(entry_from_st(key, obj, position, path, warnings)?);
    }
    // SillyTavern walks entries in ascending uid order (JavaScript object keys).
    book.entries.sort_by_key(|e| e.uid);
    check_book(&book, path, &ST_NAMES)?;
    Ok(book)
}

fn entry_from_st(
    key: &str,
    obj: &JsonObject,
    position: usize,
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<Entry, LoreError> {
    let comment = match obj.get("comment") {
        Some(Value::String(c)) => c.as_str(),
        _ => "",
    };
    let key_uid = key.parse::<u32>().ok();
    let uid_field = obj
        .get("uid")
        .and_then(Value::as_u64)
        .and_then(|u| u32::try_from(u).ok());
    let label = entry_label(uid_field.or(key_uid), comment, position);
    let mut r = Reader::new(obj, path, label.clone());
    let uid = match (r.int("uid")?, key_uid) {
        (Some(n), _) => u32::try_from(n).map_err(|_| {
            r.error(
                "uid",
                format!("must be a whole number from 0 to {}, got '{n}'", u32::MAX),
            )
        })?,
        (None, Some(k)) => k,
        (None, None) => {
            return Err(r.error(
                "uid",
                format!("is missing and the entry's key '{key}' is not a number"),
            ));
        }
    };
    if key_uid.is_some_and(|k| k != uid) {
        warnings.push(format!(
            "{label}: it is filed under '{key}' but its uid is '{uid}'; the uid is kept"
        ));
    }
    let mut e = Entry::new(uid);
    e.keys = r.strings("key")?.unwrap_or_default();
    e.secondary_keys = r.strings("keysecondary")?.unwrap_or_default();
    e.comment = r.string("comment")?.unwrap_or_default();
    e.content = r.string("content")?.unwrap_or_default();
    e.constant = r.bool("constant")?.unwrap_or(false);
    e.vectorized = r.bool("vectorized")?.unwrap_or(false);
    e.selective = r.bool("selective")?.unwrap_or(true);
    if let Some(n) = r.int("selectiveLogic")? {
        e.logic = Logic::from_st_number(n).ok_or_else(|| {
            r.error(
                "selectiveLogic",
                format!("must be 0 (AND ANY), 1 (NOT ALL), 2 (NOT ANY) or 3 (AND ALL), got '{n}'"),
            )
        })?;
    }
    e.add_memo = r.bool("addMemo")?.unwrap_or(false);
    e.order = r.int("order")?.unwrap_or(DEFAULT_ORDER);
    if let Some(n) = r.int("position")? {
        e.position = Position::from_st_number(n).ok_or_else(|| {
            r.error(
                "position",
                format!("must be a position from 0 to 7, got '{n}'"),
            )
        })?;
    }
    e.disabled = r.bool("disable")?.unwrap_or(false);
    e.ignore_budget = r.bool("ignoreBudget")?.unwrap_or(false);
    e.exclude_recursion = r.bool("excludeRecursion")?.unwrap_or(false);
    e.prevent_recursion = r.bool("preventRecursion")?.unwrap_or(false);
    e.also_scan = ScanSources {
        persona_description: r.bool("matchPersonaDescription")?.unwrap_or(false),
        character_description: r.bool("matchCharacterDescription")?.unwrap_or(false),
        character_personality: r.bool("matchCharacterPersonality")?.unwrap_or(false),
        character_depth_prompt: r.bool("matchCharacterDepthPrompt")?.unwrap_or(false),
        scenario: r.bool("matchScenario")?.unwrap_or(false),
        creator_notes: r.bool("matchCreatorNotes")?.unwrap_or(false),
    };
    e.delay_until_recursion = recursion_delay(&mut r, "delayUntilRecursion")?;
    e.probability = r
        .number("probability")?
        .map_or(DEFAULT_PROBABILITY, percent);
    e.use_probability = r.bool("useProbability")?.unwrap_or(true);
    e.depth = r.uint("depth", Field::Depth)?.unwrap_or(DEFAULT_DEPTH);
    e.outlet = r.string("outletName")?.unwrap_or_default();
    e.group = r.string("group")?.unwrap_or_default();
    e.group_override = r.bool("groupOverride")?.unwrap_or(false);
    e.group_weight = r
        .uint("groupWeight", Field::GroupWeight)?
        .unwrap_or(DEFAULT_WEIGHT);
    e.scan_depth = r.uint("scanDepth", Field::ScanDepth)?;
    e.case_sensitive = r.bool("caseSensitive")?;
    e.match_whole_words = r.bool("matchWholeWords")?;
    e.use_group_scoring = r.bool("useGroupScoring")?;
    e.automation_id = r.string("automationId")?.unwrap_or_default();
    if let Some(n) = r.int("role")? {
        e.role = Some(Role::from_st_number(n).ok_or_else(|| {
            r.error(
                "role",
                format!("must be 0 (system), 1 (user) or 2 (assistant), got '{n}'"),
            )
        })?);
    }
    e.sticky = r.uint("sticky", Field::Sticky)?.unwrap_or(0);
    e.cooldown = r.uint("cooldown", Field::Cooldown)?.unwrap_or(0);
    e.delay = r.uint("delay", Field::Delay)?.unwrap_or(0);
    e.triggers = r.strings("triggers")?.unwrap_or_default();
    if let Some(filter) = r.object("characterFilter")? {
        let mut f = r.nested(filter, "characterFilter");
        e.character_filter = Some(CharacterFilter {
            exclude: f.bool("isExclude")?.unwrap_or(false),
            names: f.strings("names")?.unwrap_or_default(),
            tags: f.strings("tags")?.unwrap_or_default(),
        });
        let unknown: Vec<String> = f.rest().keys().cloned().collect();
        if !unknown.is_empty() {
            warnings.push(format!(
                "{label}: characterFilter fields not kept: {}",
                unknown.join(", ")
            ));
        }
    }
    e.display_index = r.int("displayIndex")?;
    e.extensions = r.object("extensions")?.cloned().unwrap_or_default();
    take_scenario_marker(&mut e);
    e.extra_fields = r.rest();
    Ok(e)
}

/// `false`, `true` or a level number (SillyTavern's editor writes all three).
pub fn recursion_delay(r: &mut Reader<'_>, key: &str) -> Result<RecursionDelay, LoreError> {
    Ok(match r.get(key) {
        None | Some(Value::Bool(false)) => RecursionDelay::Off,
        Some(Value::Bool(true)) => RecursionDelay::On,
        Some(Value::Number(_)) => match r.uint(key, Field::DelayUntilRecursion)? {
            None | Some(0) => RecursionDelay::Off,
            Some(n) => RecursionDelay::Level(n),
        },
        Some(v) => {
            return Err(r.error(
                key,
                format!(
                    "must be true, false or a level number, got {}",
                    super::json::kind(v)
                ),
            ));
        }
    })
}

/// Our export marks "in the scenario" entries, which SillyTavern places after
/// the character, in `extensions.her_studio.position`.
fn take_scenario_marker(e: &mut Entry) {
    let Some(Value::Object(ours)) = e.extensions.get_mut(HER_STUDIO_KEY) else {
        return;
    };
    if ours.get("position").and_then(Value::as_str) == Some("scenario")
        && e.position == Position::AfterChar
    {
        ours.remove("position");
        e.position = Position::Scenario;
        if ours.is_empty() {
            e.extensions.remove(HER_STUDIO_KEY);
        }
    }
}

/// The export of `book` as SillyTavern's World Info JSON (pretty-printed).
pub fn to_st(book: &Book) -> Result<String, serde_json::Error> {
    let mut ours = JsonObject::new();
    ours.insert("version".into(), Value::from(1));
    ours.insert("name".into(), Value::from(book.name.clone()));
    if !book.description.is_empty() {
        ours.insert("description".into(), Value::from(book.description.clone()));
    }
    if !book.defaults.is_empty() {
        ours.insert("defaults".into(), serde_json::to_value(&book.defaults)?);
    }
    let mut entries: Vec<&Entry> = book.entries.iter().collect();
    entries.sort_by_key(|e| e.uid);
    let file = StFile {
        entries: StEntries(entries.into_iter().map(StEntry::from).collect()),
        her_studio: ours,
        extra: &book.extra_fields,
    };
    let mut text = serde_json::to_string_pretty(&file)?;
    text.push('\n');
    Ok(text)
}

#[derive(Serialize)]
struct StFile<'a> {
    entries: StEntries<'a>,
    her_studio: JsonObject,
    #[serde(flatten)]
    extra: &'a JsonObject,
}

/// Entries keyed by uid, in uid order.
struct StEntries<'a>(Vec<StEntry<'a>>);

impl Serialize for StEntries<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|e| (e.uid.to_string(), e)))
    }
}

/// One entry in SillyTavern's field order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StEntry<'a> {
    uid: u32,
    key: &'a [String],
    keysecondary: &'a [String],
    comment: &'a str,
    content: &'a str,
    constant: bool,
    vectorized: bool,
    selective: bool,
    selective_logic: u8,
    add_memo: bool,
    order: i64,
    position: u8,
    disable: bool,
    ignore_budget: bool,
    exclude_recursion: bool,
    prevent_recursion: bool,
    match_persona_description: bool,
    match_character_description: bool,
    match_character_personality: bool,
    match_character_depth_prompt: bool,
    match_scenario: bool,
    match_creator_notes: bool,
    delay_until_recursion: RecursionDelay,
    probability: Value,
    use_probability: bool,
    depth: u32,
    outlet_name: &'a str,
    group: &'a str,
    group_override: bool,
    group_weight: u32,
    scan_depth: Option<u32>,
    case_sensitive: Option<bool>,
    match_whole_words: Option<bool>,
    use_group_scoring: Option<bool>,
    automation_id: &'a str,
    role: Option<u8>,
    sticky: Option<u32>,
    cooldown: Option<u32>,
    delay: Option<u32>,
    triggers: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    character_filter: Option<StFilter<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_index: Option<i64>,
    #[serde(skip_serializing_if = "JsonObject::is_empty")]
    extensions: JsonObject,
    #[serde(flatten)]
    extra: &'a JsonObject,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StFilter<'a> {
    is_exclude: bool,
    names: &'a [String],
    tags: &'a [String],
}

impl<'a> From<&'a Entry> for StEntry<'a> {
    fn from(e: &'a Entry) -> Self {
        let nonzero = |n: u32| (n > 0).then_some(n);
        let mut extensions = e.extensions.clone();
        if e.position == Position::Scenario {
            let ours = extensions
                .entry(HER_STUDIO_KEY)
                .or_insert_with(|| Value::Object(JsonObject::new()));
            if let Value::Object(ours) = ours {
                ours.insert("position".into(), Value::from("scenario"));
            }
        }
        let s = &e.also_scan;
        StEntry {
            uid: e.uid,
            key: &e.keys,
            keysecondary: &e.secondary_keys,
            comment: &e.comment,
            content: &e.content,
            constant: e.constant,
            vectorized: e.vectorized,
            selective: e.selective,
            selective_logic: e.logic.st_number(),
            add_memo: e.add_memo,
            order: e.order,
            position: e.position.st_number(),
            disable: e.disabled,
            ignore_budget: e.ignore_budget,
            exclude_recursion: e.exclude_recursion,
            prevent_recursion: e.prevent_recursion,
            match_persona_description: s.persona_description,
            match_character_description: s.character_description,
            match_character_personality: s.character_personality,
            match_character_depth_prompt: s.character_depth_prompt,
            match_scenario: s.scenario,
            match_creator_notes: s.creator_notes,
            delay_until_recursion: e.delay_until_recursion,
            probability: number_value(e.probability),
            use_probability: e.use_probability,
            depth: e.depth,
            outlet_name: &e.outlet,
            group: &e.group,
            group_override: e.group_override,
            group_weight: e.group_weight,
            scan_depth: e.scan_depth,
            case_sensitive: e.case_sensitive,
            match_whole_words: e.match_whole_words,
            use_group_scoring: e.use_group_scoring,
            automation_id: &e.automation_id,
            role: e.role.map(Role::st_number),
            sticky: nonzero(e.sticky),
            cooldown: nonzero(e.cooldown),
            delay: nonzero(e.delay),
            triggers: &e.triggers,
            character_filter: e.character_filter.as_ref().map(|f| StFilter {
                is_exclude: f.exclude,
                names: &f.names,
                tags: &f.tags,
            }),
            display_index: e.display_index,
            extensions,
            extra: &e.extra_fields,
        }
    }
}
