//! The session's lorebooks, read for `update` (which reads no files): when
//! `/lore` attaches or detaches one, and the lore folder for `/lore books`.

use std::path::{Path, PathBuf};

use crate::tui::message::Msg;
use her_core::lore::file::book_files;
use her_core::lore::find_book;
use her_core::story::Shelf;

/// Reads `names` from `lore_dir`; `attach` is checked to exist first, so a
/// typo is refused rather than attached.
pub fn load(session: PathBuf, lore_dir: &Path, names: &[String], attach: Option<String>) -> Msg {
    let attach = attach.map(|name| {
        let found = find_book(lore_dir, &name)
            .map(|_| ())
            .map_err(|e| e.to_string());
        (name, found)
    });
    Msg::BooksLoaded {
        session,
        books: Shelf::load(lore_dir, names.iter().map(String::as_str)),
        attach,
    }
}

/// The file stems of the books in `lore_dir`.
pub fn list(lore_dir: PathBuf) -> Msg {
    let names = book_files(&lore_dir)
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    Msg::BooksListed { lore_dir, names }
}
