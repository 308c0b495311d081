//! `Character` to card JSON (V2 or V3), with its embedded book.

use std::path::Path;

use serde_json::value::RawValue;

use super::json::{
    HER_STUDIO_KEY, HerStudio, MAPPED, join_examples, join_greetings, split_examples,
};
use super::rawjson::{Obj, ObjWriter, kind, minify};
use super::{CardError, CardSpec};
use crate::character::{Character, Lorebook};

/// The card JSON for `c`. V2 adds the V1 fields at the top level, as
/// SillyTavern does, so that very old readers find the basics too.
pub(crate) fn card_json(
    c: &Character,
    spec: CardSpec,
    pretty: bool,
    path: &Path,
) -> Result<String, CardError> {
    let ser = |e: serde_json::Error| CardError::Field {
        path: path.to_path_buf(),
        field: "(card)".into(),
        problem: format!("could not be written as JSON: {e}"),
    };
    let bad = |field: &str, problem: &str| CardError::Field {
        path: path.to_path_buf(),
        field: field.to_string(),
        problem: problem.to_string(),
    };
    if c.name.trim().is_empty() {
        return Err(bad("name", "is empty"));
    }
    let extras = c.card.clone().unwrap_or_default();
    let first_mes = c.greetings.first().cloned().unwrap_or_default();
    let alternates: &[String] = c.greetings.get(1..).unwrap_or_default();
    let mes_example = join_examples(&c.examples);

    let her = HerStudio {
        version: 1,
        book: Some(c.book.clone()),
        author: Some(c.author.clone()).filter(|s| !s.is_empty()),
        description: Some(c.description.clone()).filter(|s| !s.is_empty()),
        background: Some(c.background.clone()).filter(|s| !s.is_empty()),
        motivation: Some(c.motivation.clone()).filter(|s| !s.is_empty()),
        others: Some(c.others.clone()).filter(|o| !o.is_empty()),
        user: c.user.clone(),
        sampling: c.sampling.clone(),
        source_spec: Some(extras.source_spec.clone()).filter(|s| !s.is_empty()),
        no_card: c.card.is_none(),
        greetings: (join_greetings(&first_mes, alternates.to_vec()) != c.greetings)
            .then(|| c.greetings.clone()),
        examples: (split_examples(&mes_example) != c.examples).then(|| c.examples.clone()),
    };

    // The original extensions, minus any older her_studio entry, plus ours.
    let ext_source = if extras.extensions_json.trim().is_empty() {
        "{}"
    } else {
        &extras.extensions_json
    };
    let ext_min = checked_object(ext_source, path, "card.extensions_json")?;
    let ext = Obj::parse(&ext_min, path, "card.extensions_json")?;
    let mut ext_out = ObjWriter::compact();
    for m in ext.members.iter().filter(|m| m.key != HER_STUDIO_KEY) {
        ext_out.raw_key(m.raw_key, m.raw);
    }
    ext_out.value(HER_STUDIO_KEY, &her).map_err(ser)?;

    let extra_min = if extras.extra_fields_json.trim().is_empty() {
        "{}".to_string()
    } else {
        checked_object(&extras.extra_fields_json, path, "card.extra_fields_json")?
    };
    let extra = Obj::parse(&extra_min, path, "card.extra_fields_json")?;

    let depth = if pretty { Some(1) } else { None };
    let mut data = depth.map_or_else(ObjWriter::compact, ObjWriter::pretty);
    data.value("name", &c.name).map_err(ser)?;
    data.value("description", &c.profile).map_err(ser)?;
    data.value("personality", &c.personality).map_err(ser)?;
    data.value("scenario", &c.scenario).map_err(ser)?;
    data.value("first_mes", &first_mes).map_err(ser)?;
    data.value("mes_example", &mes_example).map_err(ser)?;
    data.value("creator_notes", &extras.creator_notes)
        .map_err(ser)?;
    data.value("system_prompt", &extras.system_prompt)
        .map_err(ser)?;
    data.value(
        "post_history_instructions",
        &extras.post_history_instructions,
    )
    .map_err(ser)?;
    data.value("alternate_greetings", alternates).map_err(ser)?;
    if let Some(book) = &c.lorebook {
        data.raw("character_book", &book_json(book, spec, path)?)
            .map_err(ser)?;
    }
    data.value("tags", &c.tags).map_err(ser)?;
    data.value("creator", &extras.creator).map_err(ser)?;
    data.value("character_version", &extras.character_version)
        .map_err(ser)?;
    data.raw("extensions", &ext_out.finish()).map_err(ser)?;
    if spec == CardSpec::V3 && !extra.has("group_only_greetings") {
        data.raw("group_only_greetings", "[]").map_err(ser)?;
    }
    for m in extra
        .members
        .iter()
        .filter(|m| !MAPPED.contains(&m.key.as_str()))
    {
        data.raw_key(m.raw_key, m.raw);
    }

    let mut top = if pretty {
        ObjWriter::pretty(0)
    } else {
        ObjWriter::compact()
    };
    if spec == CardSpec::V2 {
        top.value("name", &c.name).map_err(ser)?;
        top.value("description", &c.profile).map_err(ser)?;
        top.value("personality", &c.personality).map_err(ser)?;
        top.value("scenario", &c.scenario).map_err(ser)?;
        top.value("first_mes", &first_mes).map_err(ser)?;
        top.value("mes_example", &mes_example).map_err(ser)?;
    }
    top.value("spec", spec.name()).map_err(ser)?;
    top.value("spec_version", spec.version()).map_err(ser)?;
    top.raw("data", &data.finish()).map_err(ser)?;
    Ok(top.finish())
}

fn book_json(book: &Lorebook, spec: CardSpec, path: &Path) -> Result<String, CardError> {
    let ser = |e: serde_json::Error| CardError::Field {
        path: path.to_path_buf(),
        field: "lorebook".into(),
        problem: format!("could not be written as JSON: {e}"),
    };
    let extensions = |text: &str, field: &str| -> Result<String, CardError> {
        if text.trim().is_empty() {
            Ok("{}".into())
        } else {
            checked_object(text, path, field)
        }
    };
    let mut out = ObjWriter::compact();
    out.value("name", &book.name).map_err(ser)?;
    out.value("description", &book.description).map_err(ser)?;
    if let Some(depth) = book.scan_depth {
        out.value("scan_depth", &depth).map_err(ser)?;
    }
    if let Some(budget) = book.token_budget {
        out.value("token_budget", &budget).map_err(ser)?;
    }
    out.value("recursive_scanning", &book.recursive_scanning)
        .map_err(ser)?;
    out.raw(
        "extensions",
        &extensions(&book.extensions_json, "lorebook.extensions_json")?,
    )
    .map_err(ser)?;
    let mut entries = Vec::with_capacity(book.entries.len());
    for (i, e) in book.entries.iter().enumerate() {
        let mut w = ObjWriter::compact();
        w.value("keys", &e.keys).map_err(ser)?;
        w.value("content", &e.content).map_err(ser)?;
        let field = format!("lorebook.entry[{i}].extensions_json");
        w.raw("extensions", &extensions(&e.extensions_json, &field)?)
            .map_err(ser)?;
        w.value("enabled", &e.enabled).map_err(ser)?;
        w.value("insertion_order", &e.insertion_order)
            .map_err(ser)?;
        w.value("case_sensitive", &e.case_sensitive).map_err(ser)?;
        w.value("constant", &e.constant).map_err(ser)?;
        w.value("secondary_keys", &e.secondary_keys).map_err(ser)?;
        w.value("selective", &e.selective).map_err(ser)?;
        w.value("priority", &e.priority).map_err(ser)?;
        w.value("name", &e.name).map_err(ser)?;
        w.value("comment", &e.comment).map_err(ser)?;
        if let Some(id) = e.id {
            w.value("id", &id).map_err(ser)?;
        }
        if !e.position.is_empty() {
            w.value("position", &e.position).map_err(ser)?;
        }
        if spec == CardSpec::V3 {
            w.value("use_regex", &false).map_err(ser)?;
        }
        entries.push(w.finish());
    }
    out.raw("entries", &format!("[{}]", entries.join(",")))
        .map_err(ser)?;
    Ok(out.finish())
}

/// Checks that stored JSON text (from a TOML file a person may have edited)
/// is one object, and returns it minified.
fn checked_object(text: &str, path: &Path, field: &str) -> Result<String, CardError> {
    let bad = |problem: String| CardError::Field {
        path: path.to_path_buf(),
        field: field.to_string(),
        problem,
    };
    let raw: &RawValue =
        serde_json::from_str(text).map_err(|e| bad(format!("is not valid JSON: {e}")))?;
    let min = minify(raw.get());
    if !min.starts_with('{') {
        return Err(bad(format!("must be a JSON object, got {}", kind(&min))));
    }
    Ok(min)
}
