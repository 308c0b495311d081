//! Lorebook entries: world knowledge inserted when its keys come up.
//!
//! As in SillyTavern's world info: an entry is active when one of its keys
//! appears in the last `scan_depth` transcript lines (or it is constant);
//! active entries go in by priority until the token budget is spent, then
//! appear in insertion order.

use crate::character::{LoreEntry, Lorebook};

use super::Line;

/// Lines searched for keys when the book does not say.
pub const DEFAULT_SCAN_DEPTH: usize = 4;
/// Token budget when the book does not say.
pub const DEFAULT_TOKEN_BUDGET: usize = 512;

/// A cheap token estimate for budgeting (about four characters per token in
/// English for the BPE vocabularies we run); exact counts are in `her prompt`.
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4)
}

fn contains_key(haystack: &str, haystack_lower: &str, key: &str, case_sensitive: bool) -> bool {
    let key = key.trim();
    if key.is_empty() {
        return false;
    }
    if case_sensitive {
        haystack.contains(key)
    } else {
        haystack_lower.contains(&key.to_lowercase())
    }
}

fn is_active(entry: &LoreEntry, text: &str, lower: &str) -> bool {
    if !entry.enabled {
        return false;
    }
    if entry.constant {
        return true;
    }
    let hit = |keys: &[String]| {
        keys.iter()
            .any(|k| contains_key(text, lower, k, entry.case_sensitive))
    };
    hit(&entry.keys)
        && (!entry.selective || entry.secondary_keys.is_empty() || hit(&entry.secondary_keys))
}

/// The entries to insert for this transcript, in insertion order.
pub fn active_entries<'a>(book: &'a Lorebook, transcript: &[Line]) -> Vec<&'a LoreEntry> {
    let depth = book.scan_depth.map_or(DEFAULT_SCAN_DEPTH, |d| d as usize);
    let recent: String = transcript
        .iter()
        .rev()
        .take(depth)
        .map(|l| l.text.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let lower = recent.to_lowercase();
    let mut active: Vec<&LoreEntry> = book
        .entries
        .iter()
        .filter(|e| is_active(e, &recent, &lower))
        .collect();
    // Spend the budget on the most important entries first.
    active.sort_by_key(|e| (std::cmp::Reverse(e.priority), e.insertion_order));
    let budget = book
        .token_budget
        .map_or(DEFAULT_TOKEN_BUDGET, |b| b as usize);
    let mut used = 0;
    active.retain(|e| {
        let cost = estimate_tokens(&e.content);
        let fits = used + cost <= budget;
        if fits {
            used += cost;
        }
        fits
    });
    active.sort_by_key(|e| e.insertion_order);
    active
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(keys: &[&str], content: &str, order: i64) -> LoreEntry {
        LoreEntry {
            keys: keys.iter().map(|k| k.to_string()).collect(),
            content: content.into(),
            enabled: true,
            insertion_order: order,
            ..LoreEntry::default()
        }
    }

    #[test]
    fn entries_fire_on_their_keys_in_recent_lines() {
        let book = Lorebook {
            entries: vec![
                entry(&["Pemberley"], "Darcy's estate in Derbyshire.", 2),
                entry(&["Rosings"], "Lady Catherine's house.", 1),
                LoreEntry {
                    constant: true,
                    ..entry(&[], "It is 1811.", 0)
                },
            ],
            ..Lorebook::default()
        };
        let lines = [Line::new("Mr. Darcy", "Have you seen PEMBERLEY?")];
        let active: Vec<&str> = active_entries(&book, &lines)
            .iter()
            .map(|e| e.content.as_str())
            .collect();
        assert_eq!(active, ["It is 1811.", "Darcy's estate in Derbyshire."]);
        // Out of scan depth: not active.
        let mut many = vec![Line::new("A", "Pemberley")];
        many.extend((0..4).map(|i| Line::new("B", format!("line {i}"))));
        assert_eq!(active_entries(&book, &many).len(), 1);
    }

    #[test]
    fn the_budget_keeps_the_highest_priority() {
        let book = Lorebook {
            token_budget: Some(10),
            entries: vec![
                LoreEntry {
                    priority: 1,
                    ..entry(&["ball"], "A long note about the ball at Netherfield.", 0)
                },
                LoreEntry {
                    priority: 5,
                    ..entry(&["ball"], "Short note.", 1)
                },
            ],
            ..Lorebook::default()
        };
        let active = active_entries(&book, &[Line::new("A", "the ball")]);
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].content, "Short note.");
    }
}
