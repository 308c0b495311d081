//! The lorebooks a session may draw on, read from `characters/lore/` once
//! (when a session opens or its books change) so that building a prompt
//! reads no files: [`prepare`](super::prepare) takes them from here.

use std::collections::BTreeMap;
use std::path::Path;

use crate::character::Character;
use crate::lore::{Book, find_book, load_book};

use super::{StoryConfig, StoryLog};

/// Books by the name they are attached under; a book that could not be
/// found or read keeps why, for the prompt's warnings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shelf {
    books: BTreeMap<String, Result<Book, String>>,
}

impl Shelf {
    /// Reads each named book from `lore_dir` (each name once).
    pub fn load<'a>(lore_dir: &Path, names: impl IntoIterator<Item = &'a str>) -> Shelf {
        let mut shelf = Shelf::default();
        for name in names {
            if shelf.books.contains_key(name) {
                continue;
            }
            let loaded = find_book(lore_dir, name)
                .and_then(|path| load_book(&path))
                .map_err(|err| err.to_string());
            shelf.books.insert(name.to_string(), loaded);
        }
        shelf
    }

    /// Puts a book (or why it is missing) under `name`, replacing what was there.
    pub fn insert(&mut self, name: impl Into<String>, book: Result<Book, String>) {
        self.books.insert(name.into(), book);
    }

    /// The book attached as `name`; `None` when it was never asked for.
    pub fn get(&self, name: &str) -> Option<&Result<Book, String>> {
        self.books.get(name)
    }
}

/// Every book name a session's prompts may need: attached to the session,
/// named by a cast member or the scene, or global in the config.
pub fn wanted_books<'a>(
    cfg: &'a StoryConfig,
    log: &'a StoryLog,
    cast: impl IntoIterator<Item = &'a Character>,
    scene_lore: &'a [String],
) -> Vec<String> {
    let mut names: Vec<String> = log.attached.clone();
    for character in cast {
        names.extend(character.lore.iter().cloned());
    }
    names.extend(scene_lore.iter().cloned());
    names.extend(cfg.lore.books.iter().cloned());
    let mut seen = std::collections::BTreeSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}
