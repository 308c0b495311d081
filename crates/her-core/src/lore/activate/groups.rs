//! Inclusion groups (`filterByInclusionGroups`): of the entries a pass
//! activated, each group keeps one.
//!
//! Order of the rules, as in SillyTavern: a group with a sticky member keeps
//! only its sticky members; group scoring drops members that matched fewer
//! keys; a group already represented by an entry of an earlier pass keeps
//! none; one remaining member stays; otherwise "prioritize inclusion" picks
//! the highest order, else a weighted roll.
//!
//! Differences, where SillyTavern's code misses its evident intent: an entry
//! counts as a member of every group in its comma-separated list also for the
//! "already represented" test (SillyTavern compares the raw string); entries
//! are removed by identity (its `splice(indexOf)` can drop the wrong entry);
//! and a roll only chooses among members not already removed by another
//! group, so every group still has a winner.

use crate::lore::explain::{Reason, Why};

use super::Library;

/// An entry a pass activated, before groups, probability and budget.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub entry: usize,
    pub why: Why,
    pub sticky: bool,
}

/// A candidate removed by a group.
#[derive(Debug, Clone)]
pub struct Removed {
    pub candidate: Candidate,
    pub reason: Reason,
}

/// What the group filter needs from the scan.
pub struct GroupContext<'a> {
    pub lib: &'a Library,
    /// The label of an entry activated in an earlier pass that belongs to
    /// this group.
    pub earlier: &'a dyn Fn(&str) -> Option<String>,
    /// Keys matched by an entry (SillyTavern's `getScore`).
    pub score: &'a dyn Fn(usize) -> usize,
    /// A uniform number in [0, 1) for the group's roll.
    pub roll: &'a dyn Fn(&str) -> f64,
}

pub fn filter(candidates: &mut Vec<Candidate>, cx: GroupContext<'_>) -> Vec<Removed> {
    let lib = cx.lib;
    let global_scoring = lib.settings.use_group_scoring;
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    for (position, c) in candidates.iter().enumerate() {
        for group in &lib.entries[c.entry].groups {
            match groups.iter_mut().find(|(name, _)| *name == group.as_str()) {
                Some((_, members)) => members.push(position),
                None => groups.push((group.as_str(), vec![position])),
            }
        }
    }
    let mut removed: Vec<Option<Reason>> = vec![None; candidates.len()];
    let present = |removed: &[Option<Reason>], members: &[usize]| -> Vec<usize> {
        members
            .iter()
            .copied()
            .filter(|&m| removed[m].is_none())
            .collect()
    };
    let label = |position: usize| lib.label(candidates[position].entry);

    let mut sticky_group = vec![false; groups.len()];
    for (g, (name, members)) in groups.iter().enumerate() {
        let Some(&winner) = members.iter().find(|&&m| candidates[m].sticky) else {
            continue;
        };
        sticky_group[g] = true;
        for &m in members {
            if !candidates[m].sticky && removed[m].is_none() {
                removed[m] = Some(Reason::GroupLost {
                    group: name.to_string(),
                    winner: Some(label(winner)),
                });
            }
        }
    }

    for (g, (name, members)) in groups.iter().enumerate() {
        let scored = |m: usize| {
            lib.entries[candidates[m].entry]
                .use_group_scoring
                .unwrap_or(global_scoring)
        };
        let any_opted_in = members
            .iter()
            .any(|&m| lib.entries[candidates[m].entry].use_group_scoring == Some(true));
        if sticky_group[g] || !(global_scoring || any_opted_in) {
            continue;
        }
        let members = present(&removed, members);
        let scores: Vec<usize> = members
            .iter()
            .map(|&m| (cx.score)(candidates[m].entry))
            .collect();
        let best = scores.iter().copied().max().unwrap_or(0);
        for (&m, &score) in members.iter().zip(&scores) {
            if scored(m) && score < best {
                removed[m] = Some(Reason::GroupScore {
                    group: name.to_string(),
                    score,
                    best,
                });
            }
        }
    }

    for (g, (name, members)) in groups.iter().enumerate() {
        if sticky_group[g] {
            continue;
        }
        let members = present(&removed, members);
        let lost = |winner: Option<String>| Reason::GroupLost {
            group: name.to_string(),
            winner,
        };
        if let Some(earlier) = (cx.earlier)(name) {
            for &m in &members {
                removed[m] = Some(lost(Some(earlier.clone())));
            }
            continue;
        }
        if members.len() <= 1 {
            continue;
        }
        let entry = |m: usize| &lib.entries[candidates[m].entry];
        let winner = match members
            .iter()
            .copied()
            .filter(|&m| entry(m).group_override)
            // The first of the highest order wins.
            .fold(None, |best: Option<usize>, m| match best {
                Some(b) if entry(b).order >= entry(m).order => Some(b),
                _ => Some(m),
            }) {
            Some(w) => w,
            None => {
                let total: f64 = members
                    .iter()
                    .map(|&m| f64::from(entry(m).group_weight))
                    .sum();
                let roll = (cx.roll)(name) * total;
                let mut sum = 0.0;
                members
                    .iter()
                    .copied()
                    .find(|&m| {
                        sum += f64::from(entry(m).group_weight);
                        roll <= sum
                    })
                    .unwrap_or(members[members.len() - 1])
            }
        };
        for &m in &members {
            if m != winner {
                removed[m] = Some(lost(Some(label(winner))));
            }
        }
    }

    let mut out = Vec::new();
    let mut kept = Vec::with_capacity(candidates.len());
    for (c, reason) in candidates.drain(..).zip(removed) {
        match reason {
            Some(reason) => out.push(Removed {
                candidate: c,
                reason,
            }),
            None => kept.push(c),
        }
    }
    *candidates = kept;
    out
}
