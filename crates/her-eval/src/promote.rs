//! Promoted adapters: `adapters/promoted.toml` in the studio maps a
//! character's name to the adapter that passed the gate for it, and
//! `her chat --character NAME` loads that adapter unless `--adapter` says
//! otherwise. Every gate decision is appended to `adapters/gate-log.jsonl`.

use her_core::fsutil::IoError;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::EvalError;
use super::gate::GateDecision;

pub const ADAPTERS_DIR: &str = "adapters";
pub const PROMOTED_FILE: &str = "promoted.toml";
pub const GATE_LOG: &str = "gate-log.jsonl";

/// The adapter a character plays with by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Promotion {
    pub adapter: PathBuf,
    pub sha256: String,
    pub promoted_at: String,
    /// The evaluation folder whose figures justified it.
    pub evaluation: PathBuf,
    /// What it replaced: "base" or the previous adapter's path.
    pub replaced: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Promotions {
    #[serde(default)]
    pub characters: BTreeMap<String, Promotion>,
}

pub fn promoted_file(studio: &Path) -> PathBuf {
    studio.join(ADAPTERS_DIR).join(PROMOTED_FILE)
}

pub fn gate_log(studio: &Path) -> PathBuf {
    studio.join(ADAPTERS_DIR).join(GATE_LOG)
}

/// The promotions in `path`; none when the file does not exist.
pub fn read_promotions(path: &Path) -> Result<Promotions, EvalError> {
    let Some(text) =
        her_core::fsutil::read::optional_text(path, her_core::fsutil::read::Kind::Config)?
    else {
        return Ok(Promotions::default());
    };
    toml::from_str(&text).map_err(|e| EvalError::BadFile {
        path: path.to_path_buf(),
        message: format!("{e}; fix or delete the file (it only records promoted adapters)"),
    })
}

/// The adapter promoted for `character` (its display name), if any.
pub fn promoted_adapter(path: &Path, character: &str) -> Result<Option<Promotion>, EvalError> {
    Ok(read_promotions(path)?.characters.remove(character))
}

/// Records `promotion` for `character`, replacing any earlier one (atomic write).
pub fn promote(path: &Path, character: &str, promotion: Promotion) -> Result<(), EvalError> {
    let mut all = read_promotions(path)?;
    all.characters.insert(character.to_string(), promotion);
    let body = toml::to_string(&all).map_err(|e| EvalError::BadFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let text = format!(
        "# Adapters that passed `her eval --gate` (or `her train sft --gate`), by character.\n\
         # `her chat --character NAME` loads NAME's adapter unless --adapter is given.\n\n{body}"
    );
    super::results::write_in_new_folder(path, text.as_bytes())
}

/// One line of the gate log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateLogEntry {
    pub decided_at: String,
    pub character: String,
    pub evaluation: PathBuf,
    pub baseline_adapter: Option<PathBuf>,
    pub candidate_adapter: Option<PathBuf>,
    pub decision: GateDecision,
}

/// Appends `entry` to the gate log (fsynced).
pub fn append_gate_log(path: &Path, entry: &GateLogEntry) -> Result<(), EvalError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(IoError::at("create the folder of", path))?;
    }
    let mut line = serde_json::to_string(entry)?;
    line.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(IoError::at("open", path))?;
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_data())
        .map_err(IoError::at("append to", path))?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn promotion(adapter: &str) -> Promotion {
        Promotion {
            adapter: adapter.into(),
            sha256: "ab".repeat(32),
            promoted_at: "2026-01-01T00:00:00.000Z".into(),
            evaluation: "evals/x".into(),
            replaced: "base".into(),
        }
    }

    #[test]
    fn promote_read_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let path = promoted_file(dir.path());
        assert_eq!(promoted_adapter(&path, "Elizabeth Bennet").unwrap(), None);
        promote(&path, "Elizabeth Bennet", promotion("a.gguf")).unwrap();
        promote(&path, "Jay Gatsby", promotion("g.gguf")).unwrap();
        promote(&path, "Elizabeth Bennet", promotion("b.gguf")).unwrap();
        let got = promoted_adapter(&path, "Elizabeth Bennet")
            .unwrap()
            .unwrap();
        assert_eq!(got.adapter, PathBuf::from("b.gguf"));
        assert_eq!(read_promotions(&path).unwrap().characters.len(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# Adapters that passed"));
    }

    #[test]
    fn a_broken_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = promoted_file(dir.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "[characters.x]\nadapter = 3\n").unwrap();
        let err = read_promotions(&path).unwrap_err().to_string();
        assert!(
            err.contains("promoted.toml") && err.contains("delete"),
            "{err}"
        );
    }
}
