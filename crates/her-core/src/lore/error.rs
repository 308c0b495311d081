//! Errors of reading, checking and writing books: each names the file, and
//! for entries the uid, comment and field.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum LoreError {
    #[error(transparent)]
    Read(#[from] crate::fsutil::read::ReadError),
    #[error("'{path}' is not valid JSON: line '{line}', column '{column}': {message}")]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "'{path}' is not a lorebook: {problem} (expected a SillyTavern World Info export with an \
         'entries' object, or a lorebook V3 file with \"spec\": \"lorebook_v3\")"
    )]
    NotABook { path: PathBuf, problem: String },
    #[error("'{path}': {entry}: field '{field}' {problem}")]
    Entry {
        path: PathBuf,
        /// "entry uid '3' ('The Tower')".
        entry: String,
        field: String,
        problem: String,
    },
    #[error("'{path}': field '{field}' {problem}")]
    Field {
        path: PathBuf,
        field: String,
        problem: String,
    },
    #[error("lorebook file '{path}'{location}: {message}")]
    Toml {
        path: PathBuf,
        /// " line N, column M" when known.
        location: String,
        message: String,
    },
    #[error("'{path}' already exists; use --force to overwrite it")]
    Exists { path: PathBuf },
    #[error("cannot write '{path}': {cause}")]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("no lorebook named '{name}' in '{dir}'")]
    NotFound { name: String, dir: PathBuf },
    #[error(transparent)]
    Name(#[from] crate::character::store::StoreError),
}

/// How an entry is named in messages: its uid and, when it has one, its comment.
pub fn entry_label(uid: Option<u32>, comment: &str, position: usize) -> String {
    let comment: String = comment.chars().take(60).collect();
    let id = match uid {
        Some(uid) => format!("entry uid '{uid}'"),
        None => format!("entries[{position}]"),
    };
    if comment.trim().is_empty() {
        id
    } else {
        format!("{id} ('{}')", comment.trim())
    }
}
