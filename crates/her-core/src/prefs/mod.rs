//! Preference data: pair and rating records (a JSONL preference log), pairs
//! inferred from swipes, edits and ratings, filters, and dataset exports for
//! TRL (DPO, KTO, SFT) and HER-RM (her-format.md §4–5).

pub mod agreement_report;
mod export;
mod filter;
pub mod leaderboard;
pub mod merge;
mod pairs;
pub mod queue;
mod record;
pub mod sessions;
pub mod stats;
pub mod store;

use crate::fsutil::IoError;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::fsutil::read::{self, Kind, ReadError};

pub use export::{ExportReport, Format, export, export_all, her_rm_context, render};
pub use filter::{Filter, MinHealth, ThinkingEdits};
pub use pairs::{
    Alternative, PairMeta, dedup, implicit_pair_from_edit, implicit_pairs_from_swipes,
    pairs_from_ratings,
};
pub use record::{
    ContextMessage, PRINCIPLE_DIMENSIONS, PreferencePair, PreferenceRecord, Provenance, RatedLayer,
    Rating, RatingScore, Role, Verdict, canonical_dimension, context_sha256, derive_id,
    now_rfc3339, parse_time, prompt_sha256,
};

/// Why a record cannot go into a training set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("record has an empty id")]
    EmptyId,
    #[error("record {id:?} has an empty annotator")]
    EmptyAnnotator { id: String },
    #[error("record {id:?} has no context messages")]
    EmptyContext { id: String },
    #[error("record {id:?}: created_at {value:?} is not an RFC3339 time")]
    BadCreatedAt { id: String, value: String },
    #[error("pair {id:?}: cand_1 and cand_2 are the same text")]
    IdenticalCandidates { id: String },
    #[error("rating {id:?}: {stars} stars is outside 1..=5")]
    StarsOutOfRange { id: String, stars: u8 },
    #[error("rating {id:?}: tag {tag:?} is not one of the 12 principle dimensions")]
    UnknownTag { id: String, tag: String },
    #[error(
        "record {id:?}: {field}.prompt_sha256 is {found:?} but the prompt hashes to {expected:?}"
    )]
    PromptHashMismatch {
        id: String,
        field: &'static str,
        expected: String,
        found: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum PrefsError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("refusing to write an invalid record to {}: {cause}", path.display())]
    Invalid {
        path: PathBuf,
        cause: ValidationError,
    },
    #[error("cannot serialize record {id:?}: {cause}")]
    Serialize {
        id: String,
        cause: serde_json::Error,
    },
    #[error("unknown export format {value:?} (expected dpo, kto, sft or her_rm)")]
    UnknownFormat { value: String },
    #[error("{0}")]
    Sessions(String),
    #[error("filter: {field} = {value:?} is neither an RFC3339 time nor a YYYY-MM-DD date")]
    BadDate { field: &'static str, value: String },
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// A preference log as read from disk.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogContents {
    pub records: Vec<PreferenceRecord>,
    /// Line number of a torn last line (a crash mid-append), which was ignored.
    pub torn_tail: Option<usize>,
    /// Lines in the middle that are not records, skipped: one damaged line
    /// costs that line only.
    pub skipped: Vec<SkippedLine>,
}

impl LogContents {
    /// Lines left out, the torn tail included.
    pub fn lines_skipped(&self) -> usize {
        self.skipped.len() + usize::from(self.torn_tail.is_some())
    }

    /// One "file:line: reason" note per line left out.
    pub fn notes(&self, path: &Path) -> Vec<String> {
        let mut notes: Vec<String> = self
            .skipped
            .iter()
            .map(|s| format!("{}:{}: {}; skipped", path.display(), s.line, s.reason))
            .collect();
        if let Some(line) = self.torn_tail {
            notes.push(format!(
                "{}:{line}: an unfinished last line (a crash while writing) was skipped",
                path.display()
            ));
        }
        notes
    }
}

/// A line of a log that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLine {
    /// 1-based.
    pub line: usize,
    pub reason: String,
}

/// Reads a JSONL preference log line by line. Blank lines are skipped; a
/// line that is not a record is reported in [`LogContents::skipped`] and the
/// rest still load; an unparseable last line without a newline is a torn
/// append. Only a file that cannot be read at all is an error.
pub fn read_log(path: &Path) -> Result<LogContents, PrefsError> {
    let mut out = LogContents::default();
    for line in read::lines(path, Kind::Dataset)? {
        let line = line?;
        if line.is_blank() {
            continue;
        }
        let parsed = line.text().and_then(|text| {
            serde_json::from_str::<PreferenceRecord>(text)
                .map_err(|e| format!("not a preference record: {e}"))
        });
        match parsed {
            Ok(r) => out.records.push(r),
            Err(_) if !line.terminated => out.torn_tail = Some(line.number),
            Err(reason) => out.skipped.push(SkippedLine {
                line: line.number,
                reason,
            }),
        }
    }
    Ok(out)
}

/// Appends validated records to a log, one line each, and syncs. All lines go
/// in one write so a reader never sees half a batch unless the process dies.
pub fn append_to_log(path: &Path, records: &[PreferenceRecord]) -> Result<(), PrefsError> {
    let mut buf = String::new();
    for r in records {
        r.validate().map_err(|cause| PrefsError::Invalid {
            path: path.to_path_buf(),
            cause,
        })?;
        buf.push_str(&to_line(r)?);
        buf.push('\n');
    }
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(IoError::at("open", path))?;
    // After a torn append, start on a fresh line so the new records parse.
    if needs_newline(&mut file).map_err(IoError::at("read", path))? {
        buf.insert(0, '\n');
    }
    file.write_all(buf.as_bytes())
        .and_then(|()| file.sync_data())
        .map_err(IoError::at("append to", path))?;
    Ok(())
}

fn needs_newline(file: &mut File) -> io::Result<bool> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

pub(crate) fn to_line(record: &PreferenceRecord) -> Result<String, PrefsError> {
    serde_json::to_string(record).map_err(|cause| PrefsError::Serialize {
        id: record.id().to_string(),
        cause,
    })
}

/// Writes `bytes` so a reader sees the old file or the whole new one: a temp
/// file in the same folder (rename is atomic only within a filesystem),
/// fsync, rename, then fsync the folder so the rename itself survives a crash.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PrefsError> {
    crate::fsutil::write_atomic(path, bytes, true).map_err(IoError::at("write", path))?;
    Ok(())
}

/// Small fixtures shared by the prefs tests.
#[cfg(test)]
mod test_support {
    use super::record::{
        ContextMessage, PreferencePair, Provenance, RatedLayer, Rating, RatingScore, Role, Verdict,
        prompt_sha256,
    };

    /// System prompt, one merged user turn, an earlier reply (with a stray
    /// plan, as a careless caller might pass it), another user turn.
    pub fn context() -> Vec<ContextMessage> {
        vec![
            ContextMessage::new(
                Role::System,
                "You are Elizabeth Bennet from Pride and Prejudice.",
            ),
            ContextMessage::new(
                Role::User,
                "===Conversation Start===\n\nDarcy: Miss Bennet.",
            ),
            ContextMessage::new(
                Role::Assistant,
                "<system_thinking>Cool politeness.</system_thinking>Elizabeth: <role_thinking>Him.</role_thinking>Mr. Darcy.",
            ),
            ContextMessage::new(Role::User, "Darcy: Do you dance?"),
        ]
    }

    pub fn provenance(prompt: &str) -> Provenance {
        Provenance {
            prompt: prompt.to_string(),
            prompt_sha256: prompt_sha256(prompt),
            model: "her-32b-q4_k_m".into(),
            model_fingerprint: "fp".into(),
            adapter_sha256: None,
            adapter_name: None,
            prompt_tokens_sha256: None,
            sampling: serde_json::json!({"temperature": 0.7, "top_p": 0.9}),
            seed: Some(7),
        }
    }

    pub fn rating(id: &str, reply: &str, score: RatingScore) -> Rating {
        Rating {
            id: id.into(),
            annotator: "ann".into(),
            implicit: false,
            character: "Elizabeth".into(),
            session: None,
            context: context(),
            reply: reply.into(),
            score,
            layer: RatedLayer::Whole,
            tags: Vec::new(),
            rationale: None,
            provenance: None,
            created_at: "2025-03-01T10:00:00Z".into(),
        }
    }

    pub fn pair(id: &str, cand_1: &str, cand_2: &str, verdict: Verdict) -> PreferencePair {
        PreferencePair {
            id: id.into(),
            annotator: "ann".into(),
            implicit: false,
            character: "Elizabeth".into(),
            session: None,
            context: context(),
            cand_1: cand_1.into(),
            cand_2: cand_2.into(),
            verdict,
            cand_1_provenance: None,
            cand_2_provenance: None,
            principles: Vec::new(),
            thinking_edit: None,
            rationale: None,
            created_at: "2025-03-01T10:00:00Z".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::test_support::{pair, rating};
    use super::*;

    fn tmp() -> Result<tempfile::TempDir, PrefsError> {
        Ok(tempfile::tempdir().map_err(IoError::at("create", "a temp folder"))?)
    }

    #[test]
    fn log_appends_and_reads_back() -> Result<(), PrefsError> {
        let dir = tmp()?;
        let path = dir.path().join("prefs.jsonl");
        let a = PreferenceRecord::Rating(rating("r1", "Hi.", RatingScore::ThumbsUp));
        let b = PreferenceRecord::Pair(pair("p1", "A", "B", Verdict::Cand1));
        append_to_log(&path, std::slice::from_ref(&a))?;
        append_to_log(&path, std::slice::from_ref(&b))?;
        let log = read_log(&path)?;
        assert_eq!(log.records, vec![a, b]);
        assert_eq!(log.torn_tail, None);
        Ok(())
    }

    #[test]
    fn log_refuses_invalid_records_naming_the_file() -> Result<(), PrefsError> {
        let dir = tmp()?;
        let path = dir.path().join("prefs.jsonl");
        let bad = PreferenceRecord::Rating(rating("r1", "Hi.", RatingScore::Stars(6)));
        let err = append_to_log(&path, &[bad]).map_err(|e| e.to_string());
        let expected = format!(
            "refusing to write an invalid record to {}: rating \"r1\": 6 stars is outside 1..=5",
            path.display()
        );
        assert_eq!(err, Err(expected));
        assert!(!path.exists());
        Ok(())
    }

    #[test]
    fn a_torn_tail_is_reported_and_the_next_append_starts_a_new_line() -> Result<(), PrefsError> {
        let dir = tmp()?;
        let path = dir.path().join("prefs.jsonl");
        let a = PreferenceRecord::Rating(rating("r1", "Hi.", RatingScore::ThumbsUp));
        append_to_log(&path, std::slice::from_ref(&a))?;
        let torn = format!("{}\n{{\"kind\":\"rat", to_line(&a)?);
        fs::write(&path, torn).map_err(IoError::at("write", &path))?;
        let log = read_log(&path)?;
        assert_eq!((log.records.len(), log.torn_tail), (1, Some(2)));

        let b = PreferenceRecord::Rating(rating("r2", "Hello.", RatingScore::ThumbsDown));
        append_to_log(&path, std::slice::from_ref(&b))?;
        // The torn line is now a complete bad line in the middle: reported
        // with its number and skipped, and the records after it still load.
        let log = read_log(&path)?;
        assert_eq!(log.records, vec![a, b]);
        assert_eq!(log.torn_tail, None);
        assert_eq!(log.skipped.len(), 1);
        assert_eq!(log.skipped[0].line, 2);
        assert_eq!(log.lines_skipped(), 1);
        assert!(
            log.notes(&path)[0]
                .starts_with(&format!("{}:2: not a preference record", path.display()))
        );
        Ok(())
    }

    #[test]
    fn write_atomic_replaces_the_whole_file() -> Result<(), PrefsError> {
        let dir = tmp()?;
        let path = dir.path().join("out.jsonl");
        write_atomic(&path, b"old\n")?;
        write_atomic(&path, b"new\n")?;
        assert_eq!(fs::read_to_string(&path).ok().as_deref(), Some("new\n"));
        assert_eq!(fs::read_dir(dir.path()).map(Iterator::count).ok(), Some(1));
        let missing = dir.path().join("no/such/dir/out.jsonl");
        let err = write_atomic(&missing, b"x").map_err(|e| e.to_string());
        assert!(err.is_err_and(|e| e.starts_with("cannot write ") && e.contains("no/such/dir")));
        Ok(())
    }
}
