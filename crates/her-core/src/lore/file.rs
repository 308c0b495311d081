//! Book files: `characters/lore/NAME.toml`, read with errors naming file,
//! line and field, written atomically and never over an existing file
//! unless asked.

use std::path::{Path, PathBuf};

use super::error::LoreError;
use super::model::Book;
use super::validate::{TOML_NAMES, check_book};
use crate::character::store::slug;
use crate::character::toml_error_location;

/// The folder of books inside the characters folder.
pub const LORE_DIR: &str = "lore";
/// Largest book file read.
pub const MAX_BOOK_FILE: u64 = 64 * 1024 * 1024;

pub fn lore_dir(characters_dir: &Path) -> PathBuf {
    characters_dir.join(LORE_DIR)
}

/// Parses and checks a book file's text.
pub fn parse_book(text: &str, path: &Path) -> Result<Book, LoreError> {
    let book: Book = toml::from_str(text).map_err(|e| LoreError::Toml {
        path: path.to_path_buf(),
        location: toml_error_location(text, &e),
        message: e.message().trim_end().to_string(),
    })?;
    check_book(&book, path, &TOML_NAMES)?;
    Ok(book)
}

pub fn load_book(path: &Path) -> Result<Book, LoreError> {
    let bytes =
        crate::fsutil::read::bytes_within(path, crate::fsutil::read::Kind::Book, MAX_BOOK_FILE)?;
    let text = String::from_utf8(bytes).map_err(|e| LoreError::Toml {
        path: path.to_path_buf(),
        location: String::new(),
        message: format!(
            "is not valid UTF-8 (bad byte at offset '{}')",
            e.utf8_error().valid_up_to()
        ),
    })?;
    parse_book(&text, path)
}

/// The TOML text of `book`.
pub fn book_toml(book: &Book, path: &Path) -> Result<String, LoreError> {
    toml::to_string(book).map_err(|e| LoreError::Toml {
        path: path.to_path_buf(),
        location: String::new(),
        message: format!("cannot be written as TOML: {e}"),
    })
}

/// Writes `dir/<slug of the book's name>.toml`; refuses to replace a file
/// unless `overwrite`, and never writes a file that would not load back.
pub fn save_book(dir: &Path, book: &Book, overwrite: bool) -> Result<PathBuf, LoreError> {
    let path = dir.join(format!("{}.toml", slug(&book.name)?));
    let text = book_toml(book, &path)?;
    let back = parse_book(&text, &path)?;
    if back != *book {
        return Err(LoreError::Toml {
            path,
            location: String::new(),
            message: "would not read back as the same book; nothing was written".into(),
        });
    }
    std::fs::create_dir_all(dir).map_err(|cause| LoreError::Write {
        path: dir.to_path_buf(),
        cause,
    })?;
    match crate::fsutil::write_atomic(&path, text.as_bytes(), overwrite) {
        Ok(()) => Ok(path),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(LoreError::Exists { path }),
        Err(cause) => Err(LoreError::Write { path, cause }),
    }
}

/// The book file for `name`: a file stem, or a book's `name`.
pub fn find_book(dir: &Path, name: &str) -> Result<PathBuf, LoreError> {
    let direct = dir.join(format!("{name}.toml"));
    if !name.contains(['/', '\\']) && direct.is_file() {
        return Ok(direct);
    }
    if let Ok(stem) = slug(name) {
        let by_slug = dir.join(format!("{stem}.toml"));
        if by_slug.is_file() {
            return Ok(by_slug);
        }
    }
    for path in book_files(dir) {
        if load_book(&path).is_ok_and(|b| b.name == name) {
            return Ok(path);
        }
    }
    Err(LoreError::NotFound {
        name: name.to_string(),
        dir: dir.to_path_buf(),
    })
}

/// The `.toml` files of `dir`, sorted.
pub fn book_files(dir: &Path) -> Vec<PathBuf> {
    crate::fsutil::toml_files(dir).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::lore::model::{CharacterFilter, Entry, Position, RecursionDelay, Role};

    fn sample() -> Book {
        let mut e = Entry::new(3);
        e.comment = "The Tower".into();
        e.keys = vec!["tower".into(), "/spire?s/i".into()];
        e.content = "@@depth 2\nThe tower is old.\nVery old.".into();
        e.position = Position::AtDepth;
        e.role = Some(Role::Assistant);
        e.delay_until_recursion = RecursionDelay::Level(2);
        e.probability = 33.5;
        e.character_filter = Some(CharacterFilter {
            exclude: true,
            names: vec!["alice".into()],
            tags: Vec::new(),
        });
        e.extensions
            .insert("x".into(), serde_json::json!({"y": [1, null]}));
        Book {
            name: "Eldoria".into(),
            entries: vec![e, Entry::new(7)],
            ..Book::default()
        }
    }

    #[test]
    fn a_saved_book_loads_back_equal_and_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let book = sample();
        let path = save_book(dir.path(), &book, false).unwrap();
        assert_eq!(path, dir.path().join("eldoria.toml"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("[[entry]]"), "{text}");
        assert!(text.contains("delay_until_recursion = 2"), "{text}");
        assert!(
            !text.contains("selective"),
            "defaults are left out:\n{text}"
        );
        assert_eq!(load_book(&path).unwrap(), book);
        assert!(matches!(
            save_book(dir.path(), &book, false),
            Err(LoreError::Exists { .. })
        ));
        assert_eq!(find_book(dir.path(), "Eldoria").unwrap(), path);
        assert_eq!(find_book(dir.path(), "eldoria").unwrap(), path);
    }

    #[test]
    fn bad_files_name_the_line_or_the_entry() {
        let path = Path::new("lore/x.toml");
        let err = parse_book("name = \"x\"\n[[entry]]\nuid = -1\n", path).unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
        let err = parse_book(
            "name = \"x\"\n[[entry]]\nuid = 1\ncomment = \"Fog\"\ndepth = 10000\n",
            path,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("entry uid '1' ('Fog')")
                && err.contains("field 'depth'")
                && err.contains("10000"),
            "{err}"
        );
        let err = parse_book(
            "name = \"x\"\n[[entry]]\nuid = 1\nkeys = [\"/a(/\"]\n",
            path,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("field 'keys[0]'") && err.contains("regex"),
            "{err}"
        );
        let err = parse_book(
            "name = \"x\"\n[[entry]]\nuid = 1\n[[entry]]\nuid = 1\n",
            path,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("field 'uid'"), "{err}");
        let err = parse_book("name = \"x\"\nsurprise = 1\n", path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("surprise"), "{err}");
        let err = parse_book(
            "name = \"x\"\n[[entry]]\nuid = 1\nextensions_json = '[1]'\n",
            path,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("JSON object"), "{err}");
    }
}
