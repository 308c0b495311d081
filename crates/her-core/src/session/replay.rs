//! Rebuilding a session from its file, one line at a time, without letting a
//! damaged line hide the story after it.
//!
//! A line that cannot be read is skipped and reported. If later events name
//! the message it held (as their parent, or in a `select` or `delete`), a
//! placeholder node takes that message's key in its place in the tree, so
//! the turns after it still hang together and their branches stay intact.
//! (A lost message no later message hangs under gets no placeholder: a
//! `select` or `delete` of it is skipped, as an unknown key.)
//! The placeholder's parent is, in order of trust: what the damaged line
//! still shows of its own `parent` field, the parent a later `select` names,
//! or the message written just before the damaged line. The file is never
//! changed: replaying it again rebuilds the same tree, placeholders included.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use crate::fsutil::read::{self, Kind, Line};

use super::error::{LoadIssue, SessionError};
use super::event::{FORMAT_VERSION, SessionEvent, decode_line};
use super::state::Session;
use super::tree::NodeId;

/// What a replay found.
pub(super) struct Replayed {
    pub session: Session,
    pub issues: Vec<LoadIssue>,
    /// Number of '\n' bytes in the file.
    pub newlines: usize,
    /// The file ends inside a line (cut off by a crash).
    pub partial_tail: bool,
}

/// One line after decoding (blank lines are left out).
enum Entry {
    Event(SessionEvent),
    Damaged {
        reason: String,
        /// What can still be made out of a damaged `message` line.
        salvage: Salvage,
    },
}

/// The `key` and `parent` fields a damaged message line still shows, when
/// the damage is after them (our writer puts them first).
#[derive(Default)]
struct Salvage {
    key: Option<String>,
    /// `Some(None)`: the line was a first message (parent `null`).
    parent: Option<Option<String>>,
}

/// A placeholder to insert when the replay reaches `line`.
struct Planned {
    key: String,
    /// `Some(None)` = at the top level.
    parent_hint: Option<Option<String>>,
    /// The damaged line it stands for, if one could be told.
    damaged_line: Option<usize>,
}

/// Reads and replays `path`. Only a missing or invalid header (line 1) or a
/// file that cannot be read fails; every other problem is a [`LoadIssue`].
pub(super) fn replay_file(path: &Path) -> Result<Replayed, SessionError> {
    let bad_header = |reason: String| SessionError::BadHeader {
        path: path.to_path_buf(),
        reason,
    };
    let mut lines = read::lines(path, Kind::Session)?;
    let first = lines
        .next()
        .transpose()?
        .ok_or_else(|| bad_header("the file is empty".to_string()))?;
    let header = match decode_line(first.text().map_err(bad_header)?).map_err(bad_header)? {
        SessionEvent::Header(h) => h,
        other => return Err(bad_header(format!("a '{}' event", other.type_name()))),
    };
    let mut issues = Vec::new();
    if header.version > FORMAT_VERSION {
        issues.push(LoadIssue {
            line: 1,
            message: format!(
                "written by a newer format version '{}' (this is '{FORMAT_VERSION}'); \
                 unknown events are kept as they are",
                header.version
            ),
        });
    }
    let mut newlines = usize::from(first.terminated);
    let mut partial_tail = !first.terminated;
    let mut entries: Vec<(usize, Entry)> = Vec::new();
    for line in lines {
        let line = line?;
        newlines += usize::from(line.terminated);
        partial_tail = !line.terminated;
        if !line.is_blank() {
            entries.push((line.number, decode(&line)));
        }
    }
    let plan = plan_placeholders(&entries);
    let mut session = Session::new(header);
    let mut last_created = NodeId::ROOT;
    let last_line = entries.last().map(|(n, _)| *n);
    for (number, entry) in entries {
        if let Some(planned) = plan.get(&number) {
            for p in planned {
                last_created = insert_placeholder(&mut session, p, number, last_created);
            }
        }
        let skipped = |reason: String| {
            let tail = if Some(number) == last_line && partial_tail {
                " (the last line is incomplete: the writer was probably interrupted)"
            } else {
                ""
            };
            LoadIssue {
                line: number,
                message: format!("{reason}; skipped{tail}"),
            }
        };
        match entry {
            Entry::Event(event) => match session.apply_at(&event, number) {
                Ok(Some(created)) => last_created = created,
                Ok(None) => {}
                Err(e) => issues.push(skipped(e.to_string())),
            },
            Entry::Damaged { reason, .. } => {
                let stands_in = plan
                    .get(&number)
                    .is_some_and(|ps| ps.iter().any(|p| p.damaged_line == Some(number)));
                let reason = if stands_in {
                    format!(
                        "{reason}; a placeholder keeps its place so the messages after it stay in the story"
                    )
                } else {
                    reason
                };
                issues.push(skipped(reason));
            }
        }
    }
    Ok(Replayed {
        session,
        issues,
        newlines,
        partial_tail,
    })
}

fn decode(line: &Line) -> Entry {
    let damaged = |reason: String| Entry::Damaged {
        salvage: salvage(line.bytes()),
        reason,
    };
    match line.text() {
        Ok(text) => match decode_line(text) {
            Ok(event) => Entry::Event(event),
            Err(reason) => damaged(reason),
        },
        Err(reason) => damaged(reason),
    }
}

/// Reads `"key":"…"` and `"parent":"…"|null` from the start of a damaged
/// `message` line, as our writer lays them out.
fn salvage(bytes: &[u8]) -> Salvage {
    let Some(rest) = bytes.strip_prefix(br#"{"type":"message","key":""#) else {
        return Salvage::default();
    };
    let Some((key, rest)) = plain_string(rest) else {
        return Salvage::default();
    };
    let parent = if let Some(rest) = rest.strip_prefix(br#","parent":""#) {
        plain_string(rest).map(|(p, _)| Some(p))
    } else if rest.starts_with(br#","parent":null"#) {
        Some(None)
    } else {
        None
    };
    Salvage {
        key: Some(key),
        parent,
    }
}

/// A JSON string body without escapes up to its closing quote, and the rest.
fn plain_string(bytes: &[u8]) -> Option<(String, &[u8])> {
    let end = memchr::memchr(b'"', bytes)?;
    let body = std::str::from_utf8(&bytes[..end]).ok()?;
    if body.is_empty() || body.contains('\\') {
        return None;
    }
    Some((body.to_string(), &bytes[end + 1..]))
}

/// The parent a `message` event needs to exist. Only messages call for a
/// placeholder: a lost message matters when later turns hang under it.
fn needed_parent(event: &SessionEvent) -> Option<&str> {
    match event {
        SessionEvent::Message {
            parent: Some(p), ..
        } => Some(p.as_str()),
        _ => None,
    }
}

/// Decides which missing keys get a placeholder, at which line and under
/// which parent. Only keys no readable line defines get one, so a valid
/// line is never shadowed.
fn plan_placeholders(entries: &[(usize, Entry)]) -> HashMap<usize, Vec<Planned>> {
    let mut planner = Planner::default();
    for (number, entry) in entries {
        match entry {
            Entry::Event(SessionEvent::Message { key, .. }) => {
                planner.defined.insert(key.as_str());
            }
            // A `select` names the parent of its child: where a lost child goes.
            Entry::Event(SessionEvent::Select { parent, child }) => {
                planner
                    .selected_under
                    .entry(child.as_str())
                    .or_insert(parent.clone());
            }
            Entry::Event(_) => {}
            Entry::Damaged { salvage, .. } => {
                planner.salvaged.insert(*number, salvage);
                match &salvage.key {
                    Some(key) => {
                        planner.by_key.entry(key.as_str()).or_insert(*number);
                        planner.free_keyed.insert(*number);
                    }
                    None => {
                        planner.free_unkeyed.insert(*number);
                    }
                }
            }
        }
    }
    for (number, entry) in entries {
        if let Entry::Event(event) = entry
            && let Some(parent) = needed_parent(event)
        {
            planner.need(parent, *number);
        }
    }
    planner.plan
}

#[derive(Default)]
struct Planner<'a> {
    /// Keys of the readable `message` lines.
    defined: HashSet<&'a str>,
    /// Child key → the parent the first `select` of it names.
    selected_under: HashMap<&'a str, Option<String>>,
    salvaged: HashMap<usize, &'a Salvage>,
    /// Salvaged key → its (first) damaged line.
    by_key: HashMap<&'a str, usize>,
    /// Damaged lines not claimed yet, with and without a salvaged key.
    free_keyed: BTreeSet<usize>,
    free_unkeyed: BTreeSet<usize>,
    planned: HashSet<String>,
    plan: HashMap<usize, Vec<Planned>>,
}

impl Planner<'_> {
    /// Plans a placeholder for `key`, first referenced at line `at`, and
    /// for the missing parents its damaged line still names.
    fn need(&mut self, key: &str, at: usize) {
        let mut work = vec![(key.to_string(), at)];
        while let Some((key, at)) = work.pop() {
            if self.defined.contains(key.as_str()) || self.planned.contains(&key) {
                continue;
            }
            let damaged_line = self.claim_damaged_line(&key, at);
            let salvaged = damaged_line
                .and_then(|line| self.salvaged.get(&line))
                .and_then(|s| s.parent.clone());
            let line = damaged_line.unwrap_or(at);
            if let Some(Some(parent)) = &salvaged {
                work.push((parent.clone(), line));
            }
            let hint = salvaged.or_else(|| self.selected_under.get(key.as_str()).cloned());
            self.planned.insert(key.clone());
            self.plan.entry(line).or_default().push(Planned {
                key,
                parent_hint: hint,
                damaged_line,
            });
        }
    }

    /// The damaged line before `at` that most likely held `key`: the one
    /// whose salvaged key it is, else the nearest one not claimed yet,
    /// preferring lines without a salvaged key (those are kept for their key).
    fn claim_damaged_line(&mut self, key: &str, at: usize) -> Option<usize> {
        let exact = self.by_key.get(key).copied().filter(|&n| n < at);
        let line = exact
            .or_else(|| self.free_unkeyed.range(..at).next_back().copied())
            .or_else(|| self.free_keyed.range(..at).next_back().copied())?;
        self.free_keyed.remove(&line);
        self.free_unkeyed.remove(&line);
        Some(line)
    }
}

/// Inserts a planned placeholder; returns its node.
fn insert_placeholder(
    session: &mut Session,
    planned: &Planned,
    line: usize,
    last_created: NodeId,
) -> NodeId {
    let tree = session.tree();
    let parent = match &planned.parent_hint {
        Some(None) => Some(NodeId::ROOT),
        Some(Some(key)) => tree.find(key),
        None => None,
    }
    .unwrap_or(last_created);
    session.insert_placeholder(&planned.key, parent, planned.damaged_line.unwrap_or(line))
}
