//! Where a studio's preference records live, and gathering them: the
//! session logs (chat ratings, arena rounds, kept swipes, edits) and the
//! JSONL logs in the prefs folder (annotation answers, judge verdicts,
//! logs merged from other machines).

use std::path::{Path, PathBuf};

use super::pairs::{dedup, pairs_from_ratings};
use super::record::PreferenceRecord;
use super::sessions::{SessionPlayers, collect_session};
use super::{PrefsError, read_log};
use crate::session::{list_sessions, load_session};

/// Where the records are, and how to rebuild session prompts.
pub struct Sources<'a> {
    pub sessions_dir: &'a Path,
    pub prefs_dir: &'a Path,
    pub players: SessionPlayers<'a>,
}

/// The gathered records and what was left out, with the reason.
#[derive(Debug, Default)]
pub struct Gathered {
    pub records: Vec<PreferenceRecord>,
    /// "file: reason" for every session or line that could not be used.
    pub notes: Vec<String>,
    /// Lines of preference logs and sessions that could not be read and
    /// were skipped (each also has a note).
    pub lines_skipped: usize,
    pub sessions_read: usize,
    pub logs_read: usize,
}

/// All records of a studio, duplicates removed. Pairs derived from ratings
/// of replies to the same prompt are added (marked by their `rated-` ids).
pub fn gather(sources: &Sources<'_>) -> Result<Gathered, PrefsError> {
    let mut out = Gathered::default();
    if sources.sessions_dir.is_dir() {
        let summaries =
            list_sessions(sources.sessions_dir).map_err(|e| PrefsError::Sessions(e.to_string()))?;
        for summary in summaries {
            read_session(&summary.path, sources, &mut out);
        }
    }
    for log in jsonl_files(sources.prefs_dir) {
        // One unreadable log (a FIFO, too large) must not stop the reports.
        let contents = match read_log(&log) {
            Ok(contents) => contents,
            Err(err) => {
                out.notes.push(format!("{err}; skipped"));
                continue;
            }
        };
        out.notes.extend(contents.notes(&log));
        out.lines_skipped += contents.lines_skipped();
        out.records.extend(contents.records);
        out.logs_read += 1;
    }
    let ratings: Vec<_> = out
        .records
        .iter()
        .filter_map(|r| match r {
            PreferenceRecord::Rating(r) => Some(r.clone()),
            PreferenceRecord::Pair(_) => None,
        })
        .collect();
    out.records.extend(
        pairs_from_ratings(&ratings)
            .into_iter()
            .map(PreferenceRecord::Pair),
    );
    out.records = dedup(std::mem::take(&mut out.records));
    Ok(out)
}

fn read_session(path: &Path, sources: &Sources<'_>, out: &mut Gathered) {
    let (session, issues) = match load_session(path) {
        Ok(loaded) => loaded,
        Err(err) => {
            out.notes.push(format!("{}: {err}", path.display()));
            return;
        }
    };
    for issue in &issues {
        out.notes.push(format!("{}: {issue}", path.display()));
    }
    out.lines_skipped += issues.iter().filter(|i| i.skipped_a_line()).count();
    let collected = collect_session(&session, &sources.players);
    out.records.extend(collected.records);
    out.notes.extend(
        collected
            .notes
            .into_iter()
            .map(|n| format!("{}: {n}", path.display())),
    );
    out.sessions_read += 1;
}

/// `*.jsonl` files under `dir`, in sorted order (any depth; none if absent).
pub fn jsonl_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "jsonl") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The log an annotator's answers to a queue go to.
pub fn annotation_log(prefs_dir: &Path, queue: &Path, annotator: &str) -> PathBuf {
    let stem = queue
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "queue".into());
    prefs_dir
        .join("annotations")
        .join(format!("{stem}.{}.jsonl", file_safe(annotator)))
}

/// The log a judge's verdicts go to.
pub fn judge_log(prefs_dir: &Path, judge: &str) -> PathBuf {
    prefs_dir
        .join("judges")
        .join(format!("{}.jsonl", file_safe(judge)))
}

/// Keeps letters, digits, `-`, `_` and `.`; anything else becomes `_`.
pub(crate) fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}
