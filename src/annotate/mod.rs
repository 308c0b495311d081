//! `her annotate QUEUE.jsonl`: the sitting an annotator starts. The queue
//! and the annotator's own log are read before the screen opens (so their
//! errors are plain messages); the screen is the TUI's annotate screen
//! ([`crate::tui::annotate`]). Each answer is appended to the log as it is
//! given, so quitting (or a crash) loses nothing and the next sitting
//! resumes where this one stopped; several annotators label the same queue
//! into separate logs.

use std::path::{Path, PathBuf};

use her_core::prefs::queue::{AnnotationRun, read_queue};
use her_core::prefs::read_log;

/// How the sitting ended, for the line printed afterwards.
pub struct Sitting {
    pub answered: usize,
    pub total: usize,
    pub log: PathBuf,
}

/// The queue with this annotator's earlier answers applied. Notes about
/// the log's unreadable lines go to stderr, before the screen opens.
pub fn open_sitting(queue: &Path, annotator: &str, log: &Path) -> anyhow::Result<AnnotationRun> {
    let items = read_queue(queue)?;
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let already = if log.exists() {
        let contents = read_log(log)?;
        // Printed before the screen opens, so they are there after it closes.
        for note in contents.notes(log) {
            eprintln!("note: {note}");
            tracing::warn!("{note}");
        }
        contents.records
    } else {
        Vec::new()
    };
    Ok(AnnotationRun::new(items, annotator, &already))
}
