//! Character Card import (V1, V2, V3; `.json` or `.png`) and V3 export.
//!
//! Cards map onto `Character`; what her-studio does not use is kept as raw
//! JSON text in `CardExtras` so an export gives the same card back. What
//! cards cannot hold (book, background, motivation, …) travels in
//! `data.extensions.her_studio`.

mod json;
mod png;
mod rawjson;
mod write;

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use thiserror::Error;

use super::Character;
use crate::fsutil::read::{self, Kind, ReadError};

pub(crate) use json::json_error;
pub use json::{DEFAULT_BOOK, HER_STUDIO_KEY};

/// Largest card file read (a PNG with a big avatar); `Kind::Card`'s limit.
pub const MAX_FILE: u64 = 32 * 1024 * 1024;
/// Largest `tEXt` chunk accepted.
pub const MAX_TEXT_CHUNK: usize = 8 * 1024 * 1024;
/// Largest card JSON accepted, decoded.
pub const MAX_JSON: usize = 8 * 1024 * 1024;
/// Most lorebook entries accepted.
pub const MAX_LORE_ENTRIES: usize = 10_000;

#[derive(Debug, Error)]
pub enum CardError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("cannot write '{path}': {cause}")]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("'{path}' is too large: {what} is '{size}' bytes, the limit is '{limit}'")]
    TooLarge {
        path: PathBuf,
        what: String,
        size: u64,
        limit: u64,
    },
    #[error("'{path}' is not a PNG file (bad signature)")]
    BadSignature { path: PathBuf },
    #[error("'{path}' is damaged: chunk '{chunk}' at byte '{offset}' {problem}")]
    BadChunk {
        path: PathBuf,
        chunk: String,
        offset: usize,
        problem: String,
    },
    #[error("'{path}' has no character card (no 'chara' or 'ccv3' text chunk)")]
    NoCard { path: PathBuf },
    #[error("'{path}': the '{chunk}' chunk is not valid base64: {message}")]
    Base64 {
        path: PathBuf,
        chunk: String,
        message: String,
    },
    #[error("'{path}': {what} is not valid UTF-8 (bad byte at offset '{offset}')")]
    Utf8 {
        path: PathBuf,
        what: String,
        offset: usize,
    },
    #[error("'{path}': {what} is not valid JSON: line '{line}', column '{column}': {message}")]
    Json {
        path: PathBuf,
        what: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("'{path}': {what} is not a character card: {problem}")]
    NotACard {
        path: PathBuf,
        what: String,
        problem: String,
    },
    #[error("'{path}': field '{field}' {problem}")]
    Field {
        path: PathBuf,
        field: String,
        problem: String,
    },
    #[error(
        "'{path}': unsupported card spec '{spec}' (expected 'chara_card_v2' or 'chara_card_v3')"
    )]
    UnsupportedSpec { path: PathBuf, spec: String },
}

/// Which card spec a card was read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardSpec {
    V1,
    V2,
    V3,
}

impl CardSpec {
    /// The `spec` value ("chara_card_v1" is ours: V1 cards have none).
    pub fn name(self) -> &'static str {
        match self {
            CardSpec::V1 => "chara_card_v1",
            CardSpec::V2 => "chara_card_v2",
            CardSpec::V3 => "chara_card_v3",
        }
    }

    fn version(self) -> &'static str {
        match self {
            CardSpec::V1 => "1.0",
            CardSpec::V2 => "2.0",
            CardSpec::V3 => "3.0",
        }
    }
}

/// A card read into a character, with what the import could not keep or had to guess.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedCard {
    pub character: Character,
    pub spec: CardSpec,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Png,
}

impl Format {
    /// From the file extension (`.json` / `.png`, any case).
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "json" => Some(Format::Json),
            "png" => Some(Format::Png),
            _ => None,
        }
    }
}

/// Reads a card from a `.png` or `.json` file (other names: by content).
pub fn import_card(path: &Path) -> Result<ImportedCard, CardError> {
    let bytes = read::bytes(path, Kind::Card)?;
    let format = Format::from_path(path).unwrap_or(if bytes.starts_with(&png::SIGNATURE) {
        Format::Png
    } else {
        Format::Json
    });
    read_card_bytes(&bytes, format, path)
}

/// Reads a card from bytes; `path` only names the source in errors.
pub fn read_card_bytes(
    bytes: &[u8],
    format: Format,
    path: &Path,
) -> Result<ImportedCard, CardError> {
    if bytes.len() as u64 > MAX_FILE {
        return Err(too_large(path, "the file", bytes.len() as u64, MAX_FILE));
    }
    match format {
        Format::Json => {
            if bytes.len() > MAX_JSON {
                return Err(too_large(
                    path,
                    "the JSON text",
                    bytes.len() as u64,
                    MAX_JSON as u64,
                ));
            }
            let text = utf8(bytes, path, "the file")?;
            json::parse_card(text, path, "the file")
        }
        Format::Png => {
            let chunks = png::read_card_chunks(bytes, path)?;
            // V3 is the newer, richer copy when a writer stored both.
            let (name, encoded) = match (chunks.ccv3, chunks.chara) {
                (Some(v3), _) => ("ccv3", v3),
                (None, Some(v2)) => ("chara", v2),
                (None, None) => {
                    return Err(CardError::NoCard {
                        path: path.to_path_buf(),
                    });
                }
            };
            let decoded = decode_base64(&encoded, path, name)?;
            if decoded.len() > MAX_JSON {
                return Err(too_large(
                    path,
                    &format!("the decoded '{name}' chunk"),
                    decoded.len() as u64,
                    MAX_JSON as u64,
                ));
            }
            let what = format!("the '{name}' chunk");
            let text = utf8(&decoded, path, &what)?;
            json::parse_card(text, path, &what)
        }
    }
}

/// Entry point for fuzzing: any bytes in, a result out, never a panic.
pub fn fuzz_card_bytes(data: &[u8]) -> Result<ImportedCard, CardError> {
    let format = if data.starts_with(&png::SIGNATURE) {
        Format::Png
    } else {
        Format::Json
    };
    read_card_bytes(data, format, Path::new("<fuzz input>"))
}

/// Writes `character` as a V3 card. A PNG also carries a V2 copy in a
/// `chara` chunk for readers that predate V3. Replaces `path` atomically.
pub fn export_card(character: &Character, format: Format, path: &Path) -> Result<(), CardError> {
    let bytes = card_bytes(character, format, path)?;
    crate::fsutil::write_atomic(path, &bytes, true).map_err(|cause| CardError::Write {
        path: path.to_path_buf(),
        cause,
    })
}

/// The bytes `export_card` writes; `path` only names the target in errors.
pub fn card_bytes(
    character: &Character,
    format: Format,
    path: &Path,
) -> Result<Vec<u8>, CardError> {
    match format {
        Format::Json => {
            let mut text = write::card_json(character, CardSpec::V3, true, path)?;
            text.push('\n');
            Ok(text.into_bytes())
        }
        Format::Png => {
            let engine = base64::engine::general_purpose::STANDARD;
            let v2 = engine.encode(write::card_json(character, CardSpec::V2, false, path)?);
            let v3 = engine.encode(write::card_json(character, CardSpec::V3, false, path)?);
            // Refuse what our own reader would refuse.
            if let Some(big) = [&v2, &v3].into_iter().find(|s| s.len() > MAX_TEXT_CHUNK) {
                return Err(too_large(
                    path,
                    "the card text chunk",
                    big.len() as u64,
                    MAX_TEXT_CHUNK as u64,
                ));
            }
            let (w, h, rgb) = png::avatar(&character.name);
            Ok(png::write_png(w, h, &rgb, &[("chara", &v2), ("ccv3", &v3)]))
        }
    }
}

fn too_large(path: &Path, what: &str, size: u64, limit: u64) -> CardError {
    CardError::TooLarge {
        path: path.to_path_buf(),
        what: what.to_string(),
        size,
        limit,
    }
}

fn utf8<'a>(bytes: &'a [u8], path: &Path, what: &str) -> Result<&'a str, CardError> {
    std::str::from_utf8(bytes).map_err(|e| CardError::Utf8 {
        path: path.to_path_buf(),
        what: what.to_string(),
        offset: e.valid_up_to(),
    })
}

fn decode_base64(encoded: &[u8], path: &Path, chunk: &str) -> Result<Vec<u8>, CardError> {
    // Lenient about padding and line breaks, which some writers vary.
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let compact: Vec<u8> = encoded
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    ENGINE.decode(&compact).map_err(|e| CardError::Base64 {
        path: path.to_path_buf(),
        chunk: chunk.to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests;
