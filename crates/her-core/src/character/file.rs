//! Reading character files with errors that name the file, line and field.

use crate::fsutil::IoError;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::fsutil::read::{self, Kind, ReadError};

use super::Character;

#[derive(Debug, Error)]
pub enum CharacterError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("character file '{path}'{location}: {message}")]
    Invalid {
        path: PathBuf,
        /// " line N, column M" when known.
        location: String,
        message: String,
    },
    #[error("no character named '{name}' in '{dir}'; `her characters` lists them")]
    NotFound { name: String, dir: PathBuf },
}

/// Parses and validates one character file.
pub fn load_character(path: &Path) -> Result<Character, CharacterError> {
    let text = read::text(path, Kind::Character)?;
    parse_character(&text, path)
}

/// Deserializes TOML, turning the parser's error into one naming file, line and column.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    path: &Path,
) -> Result<T, CharacterError> {
    toml::from_str(text).map_err(|e| CharacterError::Invalid {
        path: path.to_path_buf(),
        location: toml_error_location(text, &e),
        message: e.message().trim_end().to_string(),
    })
}

/// " line L, column C" of a TOML error in `text`, or nothing without a span.
pub(crate) fn toml_error_location(text: &str, e: &toml::de::Error) -> String {
    e.span()
        .map(|span| {
            let (line, col) = line_col(text, span.start);
            format!(" line {line}, column {col}")
        })
        .unwrap_or_default()
}

pub fn parse_character(text: &str, path: &Path) -> Result<Character, CharacterError> {
    let character: Character = parse_toml(text, path)?;
    let invalid = |field: &str, why: &str| CharacterError::Invalid {
        path: path.to_path_buf(),
        location: String::new(),
        message: format!("field '{field}' {why}"),
    };
    for (field, value) in [
        ("name", &character.name),
        ("book", &character.book),
        ("profile", &character.profile),
    ] {
        if value.trim().is_empty() {
            return Err(invalid(field, "must not be empty"));
        }
    }
    if character.name.chars().any(char::is_control) {
        return Err(invalid("name", "must not contain control characters"));
    }
    Ok(character)
}

pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// A character file and what reading it gave.
pub type ListedCharacter = (PathBuf, Result<Character, CharacterError>);

/// Every `*.toml` character in `dir`, sorted by file name, each with its
/// result: one broken file must not hide the others.
pub fn list_characters(dir: &Path) -> Result<Vec<ListedCharacter>, CharacterError> {
    let paths =
        crate::fsutil::toml_files(dir).map_err(IoError::at("read the characters folder", dir))?;
    Ok(paths
        .into_iter()
        .map(|p| {
            let loaded = load_character(&p);
            (p, loaded)
        })
        .collect())
}

/// Finds a character by file stem ("elizabeth-bennet") or by its name,
/// case-insensitively; a path to a `.toml` file is accepted as well.
pub fn load_character_by_name(dir: &Path, name: &str) -> Result<Character, CharacterError> {
    let as_path = Path::new(name);
    // Whatever is there is read: the reader says what is wrong with it.
    if as_path.extension().is_some_and(|x| x == "toml") && as_path.exists() {
        return load_character(as_path);
    }
    let by_stem = dir.join(format!("{name}.toml"));
    if by_stem.exists() {
        return load_character(&by_stem);
    }
    for (_, loaded) in list_characters(dir)? {
        if let Ok(character) = loaded
            && character.name.eq_ignore_ascii_case(name)
        {
            return Ok(character);
        }
    }
    Err(CharacterError::NotFound {
        name: name.to_string(),
        dir: dir.to_path_buf(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn error_names_line_and_field() {
        let text = "name = \"A\"\nbook = \"B\"\nprofile = \"C\"\ncolour = \"red\"\n";
        let err = parse_character(text, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.toml"), "{err}");
        assert!(err.contains("line 4"), "{err}");
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn empty_profile_is_refused() {
        let text = "name = \"A\"\nbook = \"B\"\nprofile = \"  \"\n";
        let err = parse_character(text, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("field 'profile' must not be empty"), "{err}");
    }
}
