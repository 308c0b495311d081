//! `her import` and `her export card`: bringing characters, scenes and
//! lorebooks in from Character Cards, CoSER JSON and SillyTavern World Info /
//! lorebook V3 files, and taking characters out as cards.

use crate::fsutil::IoError;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::fsutil::read::{self, Kind, ReadError};

use super::card::{self, CardError, Format};
use super::coser::import_coser;
use super::store::{self, StoreError};
use super::{Character, CharacterError};

#[derive(Debug, Error)]
pub enum TransferError {
    #[error(transparent)]
    Card(#[from] CardError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Character(#[from] CharacterError),
    #[error(transparent)]
    Lore(#[from] crate::lore::LoreError),
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(
        "'{0}' is neither a character card (.png or .json), a lorebook (.json) nor CoSER scene JSON"
    )]
    Unknown(PathBuf),
}

/// What an import wrote.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub written: Vec<PathBuf>,
    pub warnings: Vec<String>,
}

/// Imports a card (`.png`/`.json`) into `characters_dir`, a World Info or
/// lorebook V3 book into `characters_dir/lore`, or CoSER scene JSON into
/// `scenes_dir`. Nothing is written when reading fails.
pub fn import(
    path: &Path,
    characters_dir: &Path,
    scenes_dir: &Path,
    overwrite: bool,
) -> Result<ImportReport, TransferError> {
    let mut report = ImportReport::default();
    if Format::from_path(path) == Some(Format::Json) {
        if let Some(imported) = crate::lore::read_book_file(path)? {
            report.warnings.extend(imported.warnings);
            let dir = crate::lore::lore_dir(characters_dir);
            report
                .written
                .push(crate::lore::save_book(&dir, &imported.book, overwrite)?);
            return Ok(report);
        }
    }
    if is_coser(path)? {
        let scenes = import_coser(path)?;
        std::fs::create_dir_all(scenes_dir).map_err(IoError::at("create", scenes_dir))?;
        for s in scenes {
            report
                .written
                .push(store::save_scene(scenes_dir, &s.scene, overwrite)?);
            report.warnings.extend(s.warnings);
        }
        return Ok(report);
    }
    let imported = card::import_card(path)?;
    report.warnings.extend(imported.warnings);
    report.written.push(store::save_character(
        characters_dir,
        &imported.character,
        overwrite,
    )?);
    Ok(report)
}

/// CoSER JSON is recognised by its `character_profiles` field.
fn is_coser(path: &Path) -> Result<bool, TransferError> {
    match Format::from_path(path) {
        Some(Format::Png) => Ok(false),
        Some(Format::Json) => {
            let bytes = read::bytes(path, Kind::Coser)?;
            Ok(memchr::memmem::find(&bytes, b"\"character_profiles\"").is_some())
        }
        None => Err(TransferError::Unknown(path.to_path_buf())),
    }
}

/// Writes `character` as a V3 card (PNG also carries a V2 chunk).
pub fn export(character: &Character, format: Format, out: &Path) -> Result<(), TransferError> {
    card::export_card(character, format, out)?;
    Ok(())
}

/// The default output file for an exported card: `<slug>.png|json`.
pub fn default_card_path(character: &Character, format: Format) -> Result<PathBuf, TransferError> {
    let ext = match format {
        Format::Png => "png",
        Format::Json => "json",
    };
    Ok(PathBuf::from(format!(
        "{}.{ext}",
        store::slug(&character.name)?
    )))
}
