//! `her import BOOK.json` and `her export lore NAME`.

use std::path::Path;

use serde_json::Value;

use super::error::LoreError;
use super::file::MAX_BOOK_FILE;
use super::model::Book;
use super::{st_json, v3};

/// Which kind of file a book came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookFormat {
    /// SillyTavern's World Info export.
    WorldInfo,
    /// `{"spec": "lorebook_v3", "data": …}`.
    LorebookV3,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImportedBook {
    pub book: Book,
    pub format: BookFormat,
    pub warnings: Vec<String>,
}

/// Reads `text` as a book if it is one: `Ok(None)` when it is not JSON or
/// JSON of another kind (a card, a scene), so another importer can say why.
/// A book is named after the file unless it carries a name.
pub fn parse_book_json(text: &str, path: &Path) -> Result<Option<ImportedBook>, LoreError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let Ok(Value::Object(top)) = serde_json::from_str::<Value>(text) else {
        return Ok(None);
    };
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "lorebook".to_string());
    let mut warnings = Vec::new();
    let (book, format) = if v3::is_lorebook_v3(&top) {
        (
            v3::from_lorebook_v3(&top, &name, path, &mut warnings)?,
            BookFormat::LorebookV3,
        )
    } else if st_json::is_world_info(&top) {
        (
            st_json::from_st(&top, &name, path, &mut warnings)?,
            BookFormat::WorldInfo,
        )
    } else {
        return Ok(None);
    };
    Ok(Some(ImportedBook {
        book,
        format,
        warnings,
    }))
}

/// Reads a book file (bounded); `Ok(None)` when it is not a book.
pub fn read_book_file(path: &Path) -> Result<Option<ImportedBook>, LoreError> {
    let bytes =
        crate::fsutil::read::bytes_within(path, crate::fsutil::read::Kind::Book, MAX_BOOK_FILE)?;
    match std::str::from_utf8(&bytes) {
        Ok(text) => parse_book_json(text, path),
        Err(_) => Ok(None),
    }
}

/// Writes `book` as SillyTavern World Info JSON to `out` (replacing it).
pub fn export_book(book: &Book, out: &Path) -> Result<(), LoreError> {
    let text = st_json::to_st(book).map_err(|e| LoreError::Field {
        path: out.to_path_buf(),
        field: "(book)".into(),
        problem: format!("could not be written as JSON: {e}"),
    })?;
    crate::fsutil::write_atomic(out, text.as_bytes(), true).map_err(|cause| LoreError::Write {
        path: out.to_path_buf(),
        cause,
    })
}
