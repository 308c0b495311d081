//! Annotation queues for `her annotate QUEUE.jsonl`: items to judge (two
//! candidates), rate (one) or generate for (none), the blind A/B layout, the
//! records an answer becomes, and the resumable state of one sitting.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::pairs::is_newer_or_same;
use super::record::{
    ContextMessage, PreferencePair, PreferenceRecord, Provenance, RatedLayer, Rating, RatingScore,
    Verdict, context_sha256, derive_id, now_rfc3339, prompt_sha256,
};
use super::{PrefsError, write_atomic};
use crate::fsutil::read::{self, Kind, ReadError};

/// One reply offered to the annotator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueCandidate {
    /// The raw reply, system thinking included.
    pub text: String,
    /// A human name for what produced it (e.g. an adapter's name); shown
    /// only after answering, and usable as a leaderboard label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

/// One line of a queue file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// A misspelt "candidate" would otherwise silently mean "generate two".
#[serde(deny_unknown_fields)]
pub struct QueueItem {
    pub id: String,
    pub character: String,
    pub context: Vec<ContextMessage>,
    /// None: the app generates two; one: rate it; two: pick A or B.
    #[serde(default)]
    pub candidates: Vec<QueueCandidate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// What is wrong with one queue item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemProblem {
    #[error("the item has an empty id")]
    EmptyId,
    #[error("id {id:?} is already used on line {first_line}")]
    DuplicateId { id: String, first_line: usize },
    #[error("item {id:?} has {count} candidates; at most 2 are allowed")]
    TooManyCandidates { id: String, count: usize },
    #[error("item {id:?} has no context messages")]
    EmptyContext { id: String },
    #[error("item {id:?}: candidate {number} has an empty text")]
    EmptyCandidate { id: String, number: usize },
    #[error("item {id:?}: both candidates are the same text")]
    IdenticalCandidates { id: String },
    #[error(
        "item {id:?}: candidate {number}'s provenance.prompt_sha256 is {found:?} but the prompt hashes to {expected:?}"
    )]
    PromptHashMismatch {
        id: String,
        number: usize,
        expected: String,
        found: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{}:{line}: {problem}", path.display())]
    Unreadable {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("{}:{line}: not a queue item: {cause}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        cause: serde_json::Error,
    },
    #[error("{}:{line}: {problem}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        problem: ItemProblem,
    },
}

/// Reads a queue file (JSONL, blank lines skipped), checking every item. A
/// queue is input a person prepared: a bad line is an error naming it.
pub fn read_queue(path: &Path) -> Result<Vec<QueueItem>, QueueError> {
    let mut items = Vec::new();
    let mut first_seen: HashMap<String, usize> = HashMap::new();
    for line in read::lines(path, Kind::Dataset)? {
        let line = line?;
        let line_no = line.number;
        if line.is_blank() {
            continue;
        }
        let text = line.text().map_err(|problem| QueueError::Unreadable {
            path: path.to_path_buf(),
            line: line_no,
            problem,
        })?;
        let item: QueueItem = serde_json::from_str(text).map_err(|cause| QueueError::Parse {
            path: path.to_path_buf(),
            line: line_no,
            cause,
        })?;
        let invalid = |problem| QueueError::Invalid {
            path: path.to_path_buf(),
            line: line_no,
            problem,
        };
        check_item(&item).map_err(invalid)?;
        if let Some(&first_line) = first_seen.get(&item.id) {
            let id = item.id.clone();
            return Err(invalid(ItemProblem::DuplicateId { id, first_line }));
        }
        first_seen.insert(item.id.clone(), line_no);
        items.push(item);
    }
    Ok(items)
}

/// Problems that would make an answer an invalid record, caught up front.
fn check_item(item: &QueueItem) -> Result<(), ItemProblem> {
    let id = || item.id.clone();
    if item.id.trim().is_empty() {
        return Err(ItemProblem::EmptyId);
    }
    if item.context.is_empty() {
        return Err(ItemProblem::EmptyContext { id: id() });
    }
    if item.candidates.len() > 2 {
        let count = item.candidates.len();
        return Err(ItemProblem::TooManyCandidates { id: id(), count });
    }
    for (i, cand) in item.candidates.iter().enumerate() {
        check_candidate(&item.id, i + 1, cand)?;
    }
    if let [a, b] = item.candidates.as_slice()
        && a.text == b.text
    {
        return Err(ItemProblem::IdenticalCandidates { id: id() });
    }
    Ok(())
}

fn check_candidate(id: &str, number: usize, cand: &QueueCandidate) -> Result<(), ItemProblem> {
    if cand.text.trim().is_empty() {
        let id = id.to_string();
        return Err(ItemProblem::EmptyCandidate { id, number });
    }
    match &cand.provenance {
        Some(p) if p.prompt_sha256 != prompt_sha256(&p.prompt) => {
            Err(ItemProblem::PromptHashMismatch {
                id: id.to_string(),
                number,
                expected: prompt_sha256(&p.prompt),
                found: p.prompt_sha256.clone(),
            })
        }
        _ => Ok(()),
    }
}

/// Adapter sha256 → the label the queue gives it, for the leaderboard. The
/// first label seen for an adapter wins, so the map does not depend on
/// anything but the queue's order.
pub fn adapter_labels(items: &[QueueItem]) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    for cand in items.iter().flat_map(|i| &i.candidates) {
        let adapter = cand
            .provenance
            .as_ref()
            .and_then(|p| p.adapter_sha256.clone());
        if let (Some(adapter), Some(label)) = (adapter, &cand.label) {
            labels.entry(adapter).or_insert_with(|| label.clone());
        }
    }
    labels
}

/// Whether to show candidate 2 on the left. Hash-based rather than random so
/// a resumed sitting shows the same layout, and keyed by annotator so two
/// annotators do not share one position bias.
pub fn blind_order(item_id: &str, annotator: &str) -> bool {
    let mut h = Sha256::new();
    for part in ["blind", item_id, annotator] {
        // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize()[0] & 1 == 1
}

/// An annotator's answer to the current item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// In the queue's candidate order, never the shown order: undo the
    /// layout with `Verdict::swapped` when [`blind_order`] is true.
    Pick(Verdict),
    Rate(RatingScore),
    Skip,
}

/// The id of `annotator`'s answer to `item`: the same on every re-answer, so
/// a resumed sitting finds it. The context hash keeps item "1" of one queue
/// apart from item "1" of another.
pub fn answer_id(item: &QueueItem, annotator: &str) -> String {
    let context = context_sha256(&item.context);
    derive_id("queue", &[&item.id, annotator, &context])
}

/// The record an answer becomes: a pair for a pick between two candidates,
/// a whole-reply rating for a score of one. `None` for a skip, or when the
/// answer does not fit the item (a pick with fewer than two candidates, a
/// rating with other than one).
pub fn answer_record(
    item: &QueueItem,
    annotator: &str,
    answer: &Answer,
    created_at: &str,
) -> Option<PreferenceRecord> {
    let id = answer_id(item, annotator);
    match (answer, item.candidates.as_slice()) {
        (Answer::Pick(verdict), [a, b]) => Some(PreferenceRecord::Pair(PreferencePair {
            id,
            annotator: annotator.to_string(),
            implicit: false,
            character: item.character.clone(),
            session: item.session.clone(),
            context: item.context.clone(),
            cand_1: a.text.clone(),
            cand_2: b.text.clone(),
            verdict: *verdict,
            cand_1_provenance: a.provenance.clone(),
            cand_2_provenance: b.provenance.clone(),
            principles: Vec::new(),
            rationale: None,
            created_at: created_at.to_string(),
        })),
        (Answer::Rate(score), [only]) => Some(PreferenceRecord::Rating(Rating {
            id,
            annotator: annotator.to_string(),
            implicit: false,
            character: item.character.clone(),
            session: item.session.clone(),
            context: item.context.clone(),
            reply: only.text.clone(),
            score: *score,
            layer: RatedLayer::Whole,
            tags: Vec::new(),
            rationale: None,
            provenance: only.provenance.clone(),
            created_at: created_at.to_string(),
        })),
        _ => None,
    }
}

/// What [`AnnotationRun::undo`] reverted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UndoAction {
    /// An answer: remove `record_id` from the log ([`remove_record`]).
    Retract { item_id: String, record_id: String },
    /// A skip: nothing was written.
    Unskip { item_id: String },
}

impl UndoAction {
    pub fn item_id(&self) -> &str {
        match self {
            Self::Retract { item_id, .. } | Self::Unskip { item_id } => item_id,
        }
    }

    /// The record to remove from the log, if any.
    pub fn record_id(&self) -> Option<&str> {
        match self {
            Self::Retract { record_id, .. } => Some(record_id),
            Self::Unskip { .. } => None,
        }
    }
}

/// Why generated candidates were refused by [`AnnotationRun::supply_candidates`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SupplyError {
    #[error("there is no item left to annotate")]
    NoCurrentItem,
    #[error("item {id:?} already has candidates")]
    HasCandidates { id: String },
    #[error("item {id:?}: candidate {number} has an empty text")]
    EmptyCandidate { id: String, number: usize },
    #[error("item {id:?}: the two candidates are the same text")]
    IdenticalCandidates { id: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Pending,
    /// Skipped in this sitting; the stamp orders the cycle through skips.
    Skipped(u64),
    Done,
}

/// One undoable step of this sitting, with the status it replaced.
#[derive(Debug, Clone, Copy)]
enum Step {
    Answered { index: usize, before: Status },
    Skipped { index: usize, before: Status },
}

/// One annotator's pass over a queue, as the TUI drives it: the current
/// item, answers, skips and undo. Pure state; the caller writes the records.
#[derive(Debug, Clone)]
pub struct AnnotationRun {
    items: Vec<QueueItem>,
    annotator: String,
    status: Vec<Status>,
    /// The effective answer per item: from the log, or from this sitting.
    records: Vec<Option<PreferenceRecord>>,
    history: Vec<Step>,
    next_stamp: u64,
}

impl AnnotationRun {
    /// Starts a sitting. Items `annotator` already answered in `already` (a
    /// record with the item's [`answer_id`]) are done; where an id repeats,
    /// the newest record wins (later lines win ties).
    pub fn new(items: Vec<QueueItem>, annotator: &str, already: &[PreferenceRecord]) -> Self {
        let newest = newest_by_id(already.iter().filter(|r| r.annotator() == annotator));
        let records: Vec<Option<PreferenceRecord>> = items
            .iter()
            .map(|item| {
                newest
                    .get(answer_id(item, annotator).as_str())
                    .map(|r| (*r).clone())
            })
            .collect();
        let status = records
            .iter()
            .map(|r| match r {
                Some(_) => Status::Done,
                None => Status::Pending,
            })
            .collect();
        Self {
            items,
            annotator: annotator.to_string(),
            status,
            records,
            history: Vec::new(),
            next_stamp: 0,
        }
    }

    pub fn annotator(&self) -> &str {
        &self.annotator
    }

    pub fn items(&self) -> &[QueueItem] {
        &self.items
    }

    /// The item to show: the first unanswered one not skipped in this
    /// sitting; once only skipped ones remain, them in the order skipped.
    pub fn current(&self) -> Option<&QueueItem> {
        self.current_index().and_then(|i| self.items.get(i))
    }

    fn current_index(&self) -> Option<usize> {
        let pending = self.status.iter().position(|s| *s == Status::Pending);
        pending.or_else(|| {
            let skipped = self.status.iter().enumerate().filter_map(|(i, s)| match s {
                Status::Skipped(stamp) => Some((*stamp, i)),
                _ => None,
            });
            skipped.min().map(|(_, i)| i)
        })
    }

    /// The answer on record for an item (from the log or this sitting).
    pub fn recorded(&self, item_id: &str) -> Option<&PreferenceRecord> {
        let index = self.items.iter().position(|i| i.id == item_id)?;
        self.records.get(index)?.as_ref()
    }

    /// Gives a generate-item (no candidates in the queue) the two replies
    /// the app generated for it, in the order that becomes cand_1, cand_2.
    pub fn supply_candidates(
        &mut self,
        first: QueueCandidate,
        second: QueueCandidate,
    ) -> Result<(), SupplyError> {
        let index = self.current_index().ok_or(SupplyError::NoCurrentItem)?;
        let item = self
            .items
            .get_mut(index)
            .ok_or(SupplyError::NoCurrentItem)?;
        let id = || item.id.clone();
        if !item.candidates.is_empty() {
            return Err(SupplyError::HasCandidates { id: id() });
        }
        for (number, cand) in [(1, &first), (2, &second)] {
            if cand.text.trim().is_empty() {
                return Err(SupplyError::EmptyCandidate { id: id(), number });
            }
        }
        if first.text == second.text {
            return Err(SupplyError::IdenticalCandidates { id: id() });
        }
        item.candidates = vec![first, second];
        Ok(())
    }

    /// Records an answer to the current item, timestamped now, and moves on.
    /// See [`AnnotationRun::answer_at`].
    pub fn answer(&mut self, answer: Answer) -> Option<PreferenceRecord> {
        self.answer_at(answer, &now_rfc3339())
    }

    /// Records an answer to the current item and moves on; returns the
    /// record for the caller to append to the log. `Skip` skips and returns
    /// `None`; an answer that does not fit the item (see [`answer_record`])
    /// also returns `None` and changes nothing.
    pub fn answer_at(&mut self, answer: Answer, created_at: &str) -> Option<PreferenceRecord> {
        if answer == Answer::Skip {
            self.skip();
            return None;
        }
        let index = self.current_index()?;
        let item = self.items.get(index)?;
        let record = answer_record(item, &self.annotator, &answer, created_at)?;
        let before = self.status.get(index).copied().unwrap_or(Status::Pending);
        self.set(index, Status::Done, Some(record.clone()));
        self.history.push(Step::Answered { index, before });
        Some(record)
    }

    /// Puts the current item aside until the unskipped ones are done.
    /// Returns false when there is nothing to skip.
    pub fn skip(&mut self) -> bool {
        let Some(index) = self.current_index() else {
            return false;
        };
        let before = self.status.get(index).copied().unwrap_or(Status::Pending);
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.set(index, Status::Skipped(stamp), None);
        self.history.push(Step::Skipped { index, before });
        true
    }

    /// Reverts the last answer or skip of this sitting; that item becomes
    /// current again. Earlier sittings cannot be undone from here.
    pub fn undo(&mut self) -> Option<UndoAction> {
        let step = self.history.pop()?;
        let (index, before) = match step {
            Step::Answered { index, before } | Step::Skipped { index, before } => (index, before),
        };
        self.set(index, before, None);
        let item = self.items.get(index)?;
        let item_id = item.id.clone();
        Some(match step {
            Step::Answered { .. } => UndoAction::Retract {
                record_id: answer_id(item, &self.annotator),
                item_id,
            },
            Step::Skipped { .. } => UndoAction::Unskip { item_id },
        })
    }

    /// (answered, total), answers of earlier sittings included.
    pub fn progress(&self) -> (usize, usize) {
        let done = self.status.iter().filter(|s| **s == Status::Done).count();
        (done, self.items.len())
    }

    /// Every item answered (skipped ones still count as open).
    pub fn is_finished(&self) -> bool {
        self.status.iter().all(|s| *s == Status::Done)
    }

    fn set(&mut self, index: usize, status: Status, record: Option<PreferenceRecord>) {
        if let (Some(s), Some(r)) = (self.status.get_mut(index), self.records.get_mut(index)) {
            *s = status;
            *r = record;
        }
    }
}

/// Records by id, the newest of each (later ones win ties; an unparseable
/// time counts as oldest).
fn newest_by_id<'a>(
    records: impl Iterator<Item = &'a PreferenceRecord>,
) -> HashMap<&'a str, &'a PreferenceRecord> {
    let mut newest: HashMap<&str, &PreferenceRecord> = HashMap::new();
    for r in records {
        match newest.get(r.id()) {
            Some(old) if !is_newer_or_same(r.created_at(), old.created_at()) => {}
            _ => {
                newest.insert(r.id(), r);
            }
        }
    }
    newest
}

/// Just enough of a log line to know its id; any other field, known or
/// not, is ignored.
#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

/// Rewrites a JSONL preference log without the last record with id `id`
/// (the one an undo retracts). Every other line is kept byte for byte,
/// lines that are not records included. Returns whether a record was
/// removed; the file is not touched if not. Not safe against a concurrent
/// append by another process: a line appended between read and rename is
/// lost, so the caller must be the log's only writer.
pub fn remove_record(path: &Path, id: &str) -> Result<bool, PrefsError> {
    let bytes = read::bytes(path, Kind::Dataset)?;
    let lines: Vec<&[u8]> = bytes.split_inclusive(|&b| b == b'\n').collect();
    let has_id = |line: &[u8]| serde_json::from_slice::<IdOnly>(line).is_ok_and(|r| r.id == id);
    let Some(last) = lines.iter().rposition(|line| has_id(line)) else {
        return Ok(false);
    };
    let mut out = Vec::with_capacity(bytes.len());
    for (i, line) in lines.iter().enumerate() {
        if i != last {
            out.extend_from_slice(line);
        }
    }
    write_atomic(path, &out)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::fsutil::IoError;
    use crate::prefs::test_support::{context, provenance};
    use crate::prefs::{append_to_log, read_log};

    const AT: &str = "2025-03-01T10:00:00Z";

    fn tmp() -> Result<tempfile::TempDir, PrefsError> {
        Ok(tempfile::tempdir().map_err(IoError::at("create", "a temp folder"))?)
    }

    fn cand(text: &str) -> QueueCandidate {
        QueueCandidate {
            text: text.into(),
            label: None,
            provenance: None,
        }
    }

    fn item(id: &str, texts: &[&str]) -> QueueItem {
        QueueItem {
            id: id.into(),
            character: "Elizabeth".into(),
            context: context(),
            candidates: texts.iter().map(|t| cand(t)).collect(),
            session: None,
        }
    }

    fn line(item: &QueueItem) -> String {
        serde_json::to_string(item).unwrap_or_default()
    }

    /// Writes `lines` to a queue file and reads it back; errors as text.
    fn read_lines(lines: &[String]) -> Result<Result<Vec<QueueItem>, String>, PrefsError> {
        let dir = tmp()?;
        let path = dir.path().join("queue.jsonl");
        fs::write(&path, lines.join("\n")).map_err(IoError::at("write", &path))?;
        let shown = path.display().to_string();
        Ok(read_queue(&path).map_err(|e| e.to_string().replace(&shown, "Q")))
    }

    #[test]
    fn a_queue_holds_generate_rate_and_pick_items() -> Result<(), PrefsError> {
        let mut pick = item("p", &["A", "B"]);
        pick.candidates[0].provenance = Some(provenance("P"));
        pick.candidates[0].label = Some("lora-v2".into());
        let items = [item("g", &[]), item("r", &["Only."]), pick];
        let mut lines: Vec<String> = items.iter().map(line).collect();
        lines.insert(1, "   ".into());
        // A hand-written line: candidates and session may be left out.
        lines.push(
            r#"{"id": "h", "character": "Darcy", "context": [{"role": "user", "content": "Hi"}]}"#
                .into(),
        );
        let read = read_lines(&lines)?;
        let Ok(read) = read else { panic!("{read:?}") };
        assert_eq!(read[..3], items[..]);
        assert!(read[3].candidates.is_empty() && read[3].session.is_none());
        Ok(())
    }

    #[test]
    fn queue_errors_name_the_file_and_line() -> Result<(), PrefsError> {
        let ok = line(&item("a", &["A", "B"]));
        let check = |bad: String| -> Result<String, PrefsError> {
            let lines = [ok.clone(), String::new(), bad];
            Ok(read_lines(&lines)?.err().unwrap_or_default())
        };
        assert!(check("{not json".into())?.starts_with("Q:3: not a queue item: "));
        assert_eq!(
            check(line(&item(" ", &[])))?,
            "Q:3: the item has an empty id"
        );
        assert_eq!(
            check(line(&item("a", &["C"])))?,
            "Q:3: id \"a\" is already used on line 1"
        );
        assert_eq!(
            check(line(&item("b", &["A", "B", "C"])))?,
            "Q:3: item \"b\" has 3 candidates; at most 2 are allowed"
        );
        let mut no_context = item("b", &["A"]);
        no_context.context.clear();
        assert_eq!(
            check(line(&no_context))?,
            "Q:3: item \"b\" has no context messages"
        );
        assert_eq!(
            check(line(&item("b", &["A", "A"])))?,
            "Q:3: item \"b\": both candidates are the same text"
        );
        assert_eq!(
            check(line(&item("b", &["A", " "])))?,
            "Q:3: item \"b\": candidate 2 has an empty text"
        );
        let mut stale = item("b", &["A"]);
        let mut prov = provenance("P");
        prov.prompt = "P, edited".into();
        stale.candidates[0].provenance = Some(prov);
        assert!(
            check(line(&stale))?
                .starts_with("Q:3: item \"b\": candidate 1's provenance.prompt_sha256 is ")
        );
        let typo = line(&item("b", &[])).replace("candidates", "candidate");
        let typo = typo.replace("\"candidate\":[]", "\"candidate\":[{\"text\":\"A\"}]");
        assert!(check(typo)?.contains("unknown field `candidate`"));

        let missing = Path::new("/no/such/queue.jsonl");
        let err = read_queue(missing).map_err(|e| e.to_string());
        assert!(err.is_err_and(|e| e.starts_with("cannot read '/no/such/queue.jsonl': ")));
        Ok(())
    }

    #[test]
    fn blind_order_is_stable_varied_and_per_annotator() {
        let ids: Vec<String> = (0..200).map(|i| format!("item-{i}")).collect();
        let ann: Vec<bool> = ids.iter().map(|id| blind_order(id, "ann")).collect();
        let again: Vec<bool> = ids.iter().map(|id| blind_order(id, "ann")).collect();
        assert_eq!(ann, again);
        let swapped = ann.iter().filter(|&&b| b).count();
        // Binomial(200, 1/2): 60..140 is more than 5 standard deviations wide.
        assert!((60..140).contains(&swapped), "{swapped}");
        let other: Vec<bool> = ids.iter().map(|id| blind_order(id, "bob")).collect();
        assert_ne!(ann, other);
    }

    #[test]
    fn a_pick_becomes_a_pair_in_queue_order_and_a_score_a_whole_rating() {
        let mut pick = item("p", &["A", "B"]);
        pick.candidates[1].provenance = Some(provenance("P"));
        pick.session = Some("s1".into());
        let rec = answer_record(&pick, "ann", &Answer::Pick(Verdict::Cand2), AT);
        let Some(PreferenceRecord::Pair(pair)) = rec else {
            panic!("a pick gives a pair: {rec:?}")
        };
        assert_eq!((pair.cand_1.as_str(), pair.cand_2.as_str()), ("A", "B"));
        assert_eq!(pair.winner_loser(), Some(("B", "A")));
        assert_eq!(pair.cand_1_provenance, None);
        assert_eq!(pair.cand_2_provenance, Some(provenance("P")));
        assert_eq!(pair.session.as_deref(), Some("s1"));
        assert!(!pair.implicit && pair.annotator == "ann" && pair.created_at == AT);
        assert!(pair.validate().is_ok());

        let rate = item("r", &["Only."]);
        let rec = answer_record(&rate, "ann", &Answer::Rate(RatingScore::Stars(4)), AT);
        let Some(PreferenceRecord::Rating(rating)) = rec else {
            panic!("a score gives a rating: {rec:?}")
        };
        assert_eq!(rating.layer, RatedLayer::Whole);
        assert_eq!(
            (rating.reply.as_str(), rating.score),
            ("Only.", RatingScore::Stars(4))
        );
        assert!(rating.validate().is_ok());

        // Skips and answers that do not fit the item give nothing.
        assert_eq!(answer_record(&pick, "ann", &Answer::Skip, AT), None);
        let thumbs = Answer::Rate(RatingScore::ThumbsUp);
        assert_eq!(answer_record(&pick, "ann", &thumbs, AT), None);
        let cand1 = Answer::Pick(Verdict::Cand1);
        assert_eq!(answer_record(&rate, "ann", &cand1, AT), None);
        assert_eq!(answer_record(&item("g", &[]), "ann", &cand1, AT), None);
    }

    #[test]
    fn answer_ids_are_stable_per_item_annotator_and_context() {
        let a = item("1", &["A", "B"]);
        let first = answer_record(&a, "ann", &Answer::Pick(Verdict::Cand1), AT);
        let later = "2025-04-01T00:00:00Z";
        let again = answer_record(&a, "ann", &Answer::Pick(Verdict::Tie), later);
        let id = |r: Option<PreferenceRecord>| r.map(|r| r.id().to_string());
        assert_eq!(id(first), Some(answer_id(&a, "ann")));
        assert_eq!(id(again), Some(answer_id(&a, "ann")));
        assert!(answer_id(&a, "ann").starts_with("queue-"));
        assert_ne!(answer_id(&a, "ann"), answer_id(&a, "bob"));
        // Item "1" of another queue, over another context, is another item.
        let mut other = a.clone();
        other.context.pop();
        assert_ne!(answer_id(&a, "ann"), answer_id(&other, "ann"));
    }

    fn ids(run: &AnnotationRun) -> Option<&str> {
        run.current().map(|i| i.id.as_str())
    }

    #[test]
    fn a_run_answers_in_order_and_cycles_through_skips() {
        let items = vec![
            item("a", &["A1", "A2"]),
            item("b", &["B"]),
            item("c", &["C1", "C2"]),
        ];
        let mut run = AnnotationRun::new(items, "ann", &[]);
        assert_eq!((ids(&run), run.progress()), (Some("a"), (0, 3)));
        assert!(run.skip());
        assert_eq!(ids(&run), Some("b"));
        // A pick does not fit a rate-item: nothing changes.
        assert_eq!(run.answer_at(Answer::Pick(Verdict::Cand1), AT), None);
        assert_eq!(ids(&run), Some("b"));
        let rec = run.answer_at(Answer::Rate(RatingScore::ThumbsUp), AT);
        assert!(matches!(rec, Some(PreferenceRecord::Rating(_))));
        assert_eq!(run.answer_at(Answer::Skip, AT), None);
        // Only skipped items remain: back to them, oldest skip first.
        assert_eq!((ids(&run), run.progress()), (Some("a"), (1, 3)));
        assert!(run.skip());
        assert_eq!(ids(&run), Some("c"));
        assert!(run.skip());
        assert_eq!(ids(&run), Some("a"));
        assert!(run.answer_at(Answer::Pick(Verdict::Cand2), AT).is_some());
        assert!(!run.is_finished());
        assert!(run.answer_at(Answer::Pick(Verdict::Tie), AT).is_some());
        assert!(run.is_finished());
        assert_eq!((ids(&run), run.progress()), (None, (3, 3)));
        assert!(!run.skip());
        assert_eq!(run.answer_at(Answer::Pick(Verdict::Tie), AT), None);
        assert!(run.recorded("a").is_some_and(|r| r.annotator() == "ann"));
    }

    #[test]
    fn undo_reverts_answers_and_skips_last_first() {
        let items = vec![item("a", &["A1", "A2"]), item("b", &["B"])];
        let mut run = AnnotationRun::new(items.clone(), "ann", &[]);
        assert!(run.skip());
        let rec = run.answer_at(Answer::Rate(RatingScore::ThumbsDown), AT);
        assert_eq!(ids(&run), Some("a"));

        let undone = run.undo();
        let expected = UndoAction::Retract {
            item_id: "b".into(),
            record_id: answer_id(&items[1], "ann"),
        };
        assert_eq!(undone, Some(expected));
        assert_eq!(
            rec.map(|r| r.id().to_string()).as_deref(),
            undone.as_ref().and_then(UndoAction::record_id)
        );
        assert_eq!((ids(&run), run.progress()), (Some("b"), (0, 2)));
        assert!(run.recorded("b").is_none());

        let undone = run.undo();
        assert_eq!(
            undone,
            Some(UndoAction::Unskip {
                item_id: "a".into()
            })
        );
        assert_eq!(undone.as_ref().map(UndoAction::item_id), Some("a"));
        assert_eq!(ids(&run), Some("a"));
        assert_eq!(run.undo(), None);

        // Undoing a re-skip restores the first skip's place in the cycle.
        assert!(run.skip() && run.skip()); // a, then b
        assert_eq!(ids(&run), Some("a"));
        assert!(run.skip()); // a again: now after b
        assert_eq!(ids(&run), Some("b"));
        assert!(run.undo().is_some());
        assert_eq!(ids(&run), Some("a"));
    }

    #[test]
    fn a_run_resumes_from_the_log_with_the_newest_answer() {
        let items = vec![
            item("a", &["A1", "A2"]),
            item("b", &["B"]),
            item("c", &["C"]),
        ];
        let old = answer_record(&items[0], "ann", &Answer::Pick(Verdict::Cand1), AT);
        let newer_at = "2025-03-02T10:00:00Z";
        let newer = answer_record(&items[0], "ann", &Answer::Pick(Verdict::Cand2), newer_at);
        let bobs = answer_record(&items[1], "bob", &Answer::Rate(RatingScore::ThumbsUp), AT);
        // An answer by "ann" under bob's id is not ann's answer.
        let mut forged = bobs.clone();
        if let Some(PreferenceRecord::Rating(r)) = &mut forged {
            r.annotator = "ann".into();
        }
        let already: Vec<PreferenceRecord> = [newer.clone(), old, bobs, forged]
            .into_iter()
            .flatten()
            .collect();
        let run = AnnotationRun::new(items, "ann", &already);
        assert_eq!((ids(&run), run.progress()), (Some("b"), (1, 3)));
        assert_eq!(run.recorded("a"), newer.as_ref());
        assert_eq!(run.annotator(), "ann");
        assert_eq!(run.items().len(), 3);
    }

    #[test]
    fn generate_items_take_two_supplied_candidates() {
        let mut run = AnnotationRun::new(vec![item("g", &[]), item("r", &["R"])], "ann", &[]);
        assert_eq!(run.answer_at(Answer::Pick(Verdict::Cand1), AT), None);
        let generated = |t: &str| QueueCandidate {
            provenance: Some(provenance("P")),
            ..cand(t)
        };
        assert_eq!(
            run.supply_candidates(generated("X"), generated("X")),
            Err(SupplyError::IdenticalCandidates { id: "g".into() })
        );
        assert_eq!(
            run.supply_candidates(generated("X"), generated("")),
            Err(SupplyError::EmptyCandidate {
                id: "g".into(),
                number: 2
            })
        );
        assert_eq!(
            run.supply_candidates(generated("X"), generated("Y")),
            Ok(())
        );
        assert_eq!(
            run.supply_candidates(generated("X"), generated("Y")),
            Err(SupplyError::HasCandidates { id: "g".into() })
        );
        let rec = run.answer_at(Answer::Pick(Verdict::Cand1), AT);
        let Some(PreferenceRecord::Pair(pair)) = rec else {
            panic!("{rec:?}")
        };
        assert_eq!(pair.winner_loser(), Some(("X", "Y")));
        assert!(pair.validate().is_ok());
        // The answer's id does not depend on what was generated.
        assert_eq!(pair.id, answer_id(&item("g", &[]), "ann"));
        // Undo keeps the generated pair on screen rather than regenerating.
        assert!(run.undo().is_some());
        assert_eq!(run.current().map(|i| i.candidates.len()), Some(2));
        assert!(
            run.skip()
                && run
                    .answer_at(Answer::Rate(RatingScore::ThumbsUp), AT)
                    .is_some()
        );
        assert!(run.answer_at(Answer::Pick(Verdict::Tie), AT).is_some());
        assert_eq!(
            run.supply_candidates(cand("X"), cand("Y")),
            Err(SupplyError::NoCurrentItem)
        );
    }

    #[test]
    fn adapter_labels_come_from_labelled_candidates() {
        let with = |label: Option<&str>, adapter: &str| {
            let mut prov = provenance("P");
            prov.adapter_sha256 = Some(adapter.into());
            QueueCandidate {
                text: format!("{label:?}{adapter}"),
                label: label.map(str::to_string),
                provenance: Some(prov),
            }
        };
        let mut a = item("a", &[]);
        a.candidates = vec![with(Some("v1"), "aaa"), with(None, "bbb")];
        let mut b = item("b", &[]);
        b.candidates = vec![with(Some("v1-renamed"), "aaa"), with(Some("v2"), "ccc")];
        let labels = adapter_labels(&[a, b]);
        let expected: BTreeMap<String, String> = [("aaa", "v1"), ("ccc", "v2")]
            .map(|(k, v)| (k.into(), v.into()))
            .into();
        assert_eq!(labels, expected);
    }

    #[test]
    fn remove_record_drops_only_the_last_copy_and_keeps_other_bytes() -> Result<(), PrefsError> {
        let dir = tmp()?;
        let path = dir.path().join("prefs.jsonl");
        let items = [item("a", &["A1", "A2"]), item("b", &["B"])];
        let answer = |i: usize, a: Answer, at: &str| answer_record(&items[i], "ann", &a, at);
        let first = answer(0, Answer::Pick(Verdict::Cand1), AT);
        let rated = answer(1, Answer::Rate(RatingScore::Stars(5)), AT);
        let redo = answer(0, Answer::Pick(Verdict::Tie), "2025-03-03T00:00:00Z");
        let records: Vec<PreferenceRecord> = [first, rated, redo].into_iter().flatten().collect();
        append_to_log(&path, &records)?;
        // Lines a future version might write, and odd spacing, survive as is.
        let mut text = fs::read_to_string(&path).map_err(IoError::at("read", &path))?;
        text.insert_str(0, "{\"kind\":\"note\",\"text\":\"hello\"}\n\n");
        text.push_str("{ \"kind\": \"future\", \"id\": \"x\" }\r\n");
        fs::write(&path, &text).map_err(IoError::at("write", &path))?;

        let id = answer_id(&items[0], "ann");
        assert!(remove_record(&path, &id)?);
        let after = fs::read_to_string(&path).map_err(IoError::at("read", &path))?;
        let removed = format!("{}\n", crate::prefs::to_line(&records[2])?);
        assert_eq!(after, text.replacen(&removed, "", 1));
        // The older answer is still there; removing again takes it.
        assert!(remove_record(&path, &id)?);
        assert!(!remove_record(&path, &id)?);
        assert!(remove_record(&path, "x")?);
        let after = fs::read_to_string(&path).map_err(IoError::at("read", &path))?;
        assert_eq!(
            after,
            format!(
                "{{\"kind\":\"note\",\"text\":\"hello\"}}\n\n{}\n",
                crate::prefs::to_line(&records[1])?
            )
        );
        let missing = dir.path().join("none.jsonl");
        assert!(
            remove_record(&missing, &id).is_err_and(|e| e.to_string().starts_with("cannot read "))
        );
        Ok(())
    }

    #[test]
    fn a_sitting_round_trips_through_the_log() -> Result<(), PrefsError> {
        let dir = tmp()?;
        let log = dir.path().join("prefs.jsonl");
        let items = vec![
            item("a", &["A1", "A2"]),
            item("b", &["B"]),
            item("c", &["C1", "C2"]),
        ];
        let mut run = AnnotationRun::new(items.clone(), "ann", &[]);
        for answer in [
            Answer::Pick(Verdict::Cand1),
            Answer::Rate(RatingScore::ThumbsUp),
        ] {
            let rec = run.answer_at(answer, AT).into_iter().collect::<Vec<_>>();
            append_to_log(&log, &rec)?;
        }
        let undone = run.undo();
        if let Some(id) = undone.as_ref().and_then(UndoAction::record_id) {
            assert!(remove_record(&log, id)?);
        }
        // A new sitting picks up where this one ended: at "b".
        let resumed = AnnotationRun::new(items, "ann", &read_log(&log)?.records);
        assert_eq!((ids(&resumed), resumed.progress()), (Some("b"), (1, 3)));
        Ok(())
    }
}
