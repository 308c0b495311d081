//! `her prefs merge`: bring preference logs from other machines (each
//! annotator's answers, judge verdicts) into this studio's prefs folder.
//!
//! A record is identified by its whole content (its canonical JSON line),
//! which already carries the annotator and the record's stable id: the same
//! answer copied twice is kept once, while a changed answer with the same
//! id (a re-labelled item) is a second line, as in the annotator's own log;
//! `dedup` picks the newest when the records are read. New records are
//! appended (fsynced) to `prefs/merged/<annotator>.jsonl`; nothing existing
//! is rewritten, so merging again, or merging a partial copy, is harmless.

use crate::fsutil::IoError;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use super::store::{file_safe, jsonl_files};
use super::{PreferenceRecord, PrefsError, append_to_log, read_log, to_line};

/// What a merge read and wrote.
#[derive(Debug, Default, PartialEq)]
pub struct MergeReport {
    pub files_read: usize,
    pub records_read: usize,
    /// Already in this studio (or seen earlier in this merge).
    pub already_present: usize,
    /// New records per annotator.
    pub added: BTreeMap<String, usize>,
    /// The logs appended to.
    pub written: Vec<PathBuf>,
    /// Lines or records left out, with the reason.
    pub notes: Vec<String>,
    /// Lines of the sources that could not be read (each also has a note).
    pub lines_skipped: usize,
}

impl MergeReport {
    pub fn added_total(&self) -> usize {
        self.added.values().sum()
    }
}

/// The identity of a record: its canonical line (old logs re-serialize to
/// the same line as new ones, so field order or spacing does not matter).
fn record_key(record: &PreferenceRecord) -> Result<String, PrefsError> {
    Ok(crate::hashing::sha256_hex(to_line(record)?.as_bytes()))
}

/// The `*.jsonl` files a source names: every log under a folder, or the
/// path itself (whose read then says what is wrong with it, if anything).
fn source_files(source: &Path) -> Vec<PathBuf> {
    if source.is_dir() {
        jsonl_files(source)
    } else {
        vec![source.to_path_buf()]
    }
}

/// Merges `sources` (files or folders) into `prefs_dir`. With `dry_run`
/// the report says what would be added and nothing is written.
pub fn merge(
    prefs_dir: &Path,
    sources: &[PathBuf],
    dry_run: bool,
) -> Result<MergeReport, PrefsError> {
    let mut report = MergeReport::default();
    let mut seen = HashSet::new();
    for log in jsonl_files(prefs_dir) {
        // Damaged lines here are reported by the reports; for the merge only
        // the readable records matter.
        for record in read_log(&log)?.records {
            seen.insert(record_key(&record)?);
        }
    }
    let mut new: BTreeMap<String, Vec<PreferenceRecord>> = BTreeMap::new();
    for source in sources {
        for file in source_files(source) {
            let contents = read_log(&file)?;
            report.files_read += 1;
            report.notes.extend(contents.notes(&file));
            report.lines_skipped += contents.lines_skipped();
            for record in contents.records {
                report.records_read += 1;
                if let Err(err) = record.validate() {
                    report
                        .notes
                        .push(format!("{}: left out: {err}", file.display()));
                    continue;
                }
                if !seen.insert(record_key(&record)?) {
                    report.already_present += 1;
                    continue;
                }
                new.entry(record.annotator().to_owned())
                    .or_default()
                    .push(record);
            }
        }
    }
    for (annotator, records) in new {
        report.added.insert(annotator.clone(), records.len());
        if dry_run {
            continue;
        }
        let path = prefs_dir
            .join("merged")
            .join(format!("{}.jsonl", file_safe(&annotator)));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(IoError::at("create", dir))?;
        }
        append_to_log(&path, &records)?;
        report.written.push(path);
    }
    Ok(report)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::test_support::{pair, rating};
    use super::*;
    use crate::prefs::agreement_report::{AgreementOptions, agreement_report};
    use crate::prefs::store::{Sources, gather};
    use crate::prefs::{RatingScore, Verdict};

    /// Annotator `who`'s answers to items `ids`: the pair verdicts depend on
    /// the item only, so overlapping items agree.
    fn answers(who: &str, ids: &[usize]) -> Vec<PreferenceRecord> {
        ids.iter()
            .flat_map(|i| {
                let mut p = pair(
                    &format!("queue-{who}-{i}"),
                    &format!("A{i}"),
                    &format!("B{i}"),
                    if i % 2 == 0 {
                        Verdict::Cand1
                    } else {
                        Verdict::Cand2
                    },
                );
                p.annotator = who.into();
                let mut r = rating(
                    &format!("rate-{who}-{i}"),
                    &format!("R{i}"),
                    RatingScore::Stars((i % 5 + 1) as u8),
                );
                r.annotator = who.into();
                [PreferenceRecord::Pair(p), PreferenceRecord::Rating(r)]
            })
            .collect()
    }

    fn lines(dir: &Path) -> Vec<String> {
        let mut all: Vec<String> = jsonl_files(dir)
            .iter()
            .flat_map(|f| read_log(f).unwrap().records)
            .map(|r| to_line(&r).unwrap())
            .collect();
        all.sort();
        all
    }

    #[test]
    fn three_annotator_logs_merge_to_the_exact_union() {
        let tmp = tempfile::tempdir().unwrap();
        let studio = tmp.path().join("prefs");
        std::fs::create_dir_all(&studio).unwrap();
        // This studio already holds ann's first answers.
        let local = answers("ann", &[0, 1, 2]);
        append_to_log(&studio.join("annotations/q.ann.jsonl").pipe_dir(), &local).unwrap();
        // Three machines; ann's laptop overlaps with what is here, and bob's
        // log was copied twice (once inside a folder, once as a file).
        let machines = tmp.path().join("machines");
        let ann = answers("ann", &[1, 2, 3, 4]);
        let bob = answers("bob", &[2, 3, 4, 5]);
        let cid = answers("cid", &[0, 4, 5]);
        append_to_log(
            &machines.join("a/prefs/annotations/q.ann.jsonl").pipe_dir(),
            &ann,
        )
        .unwrap();
        append_to_log(
            &machines.join("b/prefs/annotations/q.bob.jsonl").pipe_dir(),
            &bob,
        )
        .unwrap();
        append_to_log(&machines.join("c/cid.jsonl").pipe_dir(), &cid).unwrap();
        let bob_copy = machines.join("bob-copy.jsonl");
        std::fs::copy(machines.join("b/prefs/annotations/q.bob.jsonl"), &bob_copy).unwrap();

        let before = lines(&studio);
        let sources = vec![
            machines.join("a"),
            machines.join("b"),
            machines.join("c"),
            bob_copy,
        ];
        let dry = merge(&studio, &sources, true).unwrap();
        assert_eq!(lines(&studio), before, "a dry run writes nothing");
        let report = merge(&studio, &sources, false).unwrap();
        assert_eq!(report.added, dry.added);

        // The exact union of every record, each once.
        let mut union: Vec<String> = [local, ann, bob, cid]
            .iter()
            .flatten()
            .map(|r| to_line(r).unwrap())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        union.sort();
        assert_eq!(lines(&studio), union);
        assert_eq!(report.records_read, 8 + 8 + 6 + 8);
        assert_eq!(
            report.added,
            BTreeMap::from([
                ("ann".to_string(), 4),
                ("bob".to_string(), 8),
                ("cid".to_string(), 6)
            ])
        );
        assert_eq!(report.already_present, 4 + 8);
        // The studio's own log was not touched; merging again adds nothing.
        assert_eq!(
            read_log(&studio.join("annotations/q.ann.jsonl"))
                .unwrap()
                .records
                .len(),
            6
        );
        let again = merge(&studio, &sources, false).unwrap();
        assert_eq!(again.added_total(), 0);
        assert_eq!(lines(&studio), union);

        // Agreement sees all three annotators on the merged set.
        let players = crate::prefs::sessions::SessionPlayers {
            cast: &[],
            variant: crate::generation::PromptVariant::Training,
            user_name: "User",
            annotator: "ann",
        };
        let gathered = gather(&Sources {
            sessions_dir: &tmp.path().join("no-sessions"),
            prefs_dir: &studio,
            players,
        })
        .unwrap();
        let report = agreement_report(&gathered.records, &AgreementOptions::default());
        let names: Vec<&str> = report
            .annotators
            .iter()
            .map(|a| a.annotator.as_str())
            .collect();
        assert_eq!(names, ["ann", "bob", "cid"]);
        assert!(report.scales.iter().any(|s| s.alpha.is_some()));
    }

    #[test]
    fn a_missing_source_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let err = merge(tmp.path(), &[tmp.path().join("nope")], false).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    /// Creates the parent folder of a log path in tests.
    trait PipeDir {
        fn pipe_dir(&self) -> PathBuf;
    }
    impl PipeDir for PathBuf {
        fn pipe_dir(&self) -> PathBuf {
            std::fs::create_dir_all(self.parent().unwrap()).unwrap();
            self.clone()
        }
    }
}
