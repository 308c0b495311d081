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
            thinking_edit: None,
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
mod tests;
