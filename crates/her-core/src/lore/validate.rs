//! Checks of a book that hold whatever file it came from: ranges, regex keys
//! that compile, unique uids. Errors name the field as the source file
//! spells it.

use std::path::Path;

use super::activate::check_key;
use super::error::{LoreError, entry_label};
use super::model::{
    Book, Entry, MAX_INSERT_DEPTH, MAX_SCAN_DEPTH, MAX_TIMED, MAX_TOKEN_BUDGET, MAX_WEIGHT,
};

/// A checked field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Probability,
    Depth,
    ScanDepth,
    GroupWeight,
    Sticky,
    Cooldown,
    Delay,
    DelayUntilRecursion,
    TokenBudget,
    Key(usize),
    SecondaryKey(usize),
}

/// Field names of one file format.
pub struct Names {
    pub probability: &'static str,
    pub depth: &'static str,
    pub scan_depth: &'static str,
    pub group_weight: &'static str,
    pub sticky: &'static str,
    pub cooldown: &'static str,
    pub delay: &'static str,
    pub delay_until_recursion: &'static str,
    pub keys: &'static str,
    pub secondary_keys: &'static str,
}

pub const TOML_NAMES: Names = Names {
    probability: "probability",
    depth: "depth",
    scan_depth: "scan_depth",
    group_weight: "group_weight",
    sticky: "sticky",
    cooldown: "cooldown",
    delay: "delay",
    delay_until_recursion: "delay_until_recursion",
    keys: "keys",
    secondary_keys: "secondary_keys",
};

pub const ST_NAMES: Names = Names {
    probability: "probability",
    depth: "depth",
    scan_depth: "scanDepth",
    group_weight: "groupWeight",
    sticky: "sticky",
    cooldown: "cooldown",
    delay: "delay",
    delay_until_recursion: "delayUntilRecursion",
    keys: "key",
    secondary_keys: "keysecondary",
};

pub const CARD_NAMES: Names = Names {
    probability: "extensions.probability",
    depth: "extensions.depth",
    scan_depth: "extensions.scan_depth",
    group_weight: "extensions.group_weight",
    sticky: "extensions.sticky",
    cooldown: "extensions.cooldown",
    delay: "extensions.delay",
    delay_until_recursion: "extensions.delay_until_recursion",
    keys: "keys",
    secondary_keys: "secondary_keys",
};

impl Field {
    pub fn name(self, names: &Names) -> String {
        match self {
            Field::Probability => names.probability.into(),
            Field::Depth => names.depth.into(),
            Field::ScanDepth => names.scan_depth.into(),
            Field::GroupWeight => names.group_weight.into(),
            Field::Sticky => names.sticky.into(),
            Field::Cooldown => names.cooldown.into(),
            Field::Delay => names.delay.into(),
            Field::DelayUntilRecursion => names.delay_until_recursion.into(),
            Field::TokenBudget => "token_budget".into(),
            Field::Key(i) => format!("{}[{i}]", names.keys),
            Field::SecondaryKey(i) => format!("{}[{i}]", names.secondary_keys),
        }
    }
}

/// The range a whole-number field must be in.
pub fn range(field: Field) -> (u32, u32) {
    match field {
        Field::Depth => (0, MAX_INSERT_DEPTH),
        Field::ScanDepth => (0, MAX_SCAN_DEPTH),
        Field::GroupWeight => (1, MAX_WEIGHT),
        Field::Sticky | Field::Cooldown | Field::Delay | Field::DelayUntilRecursion => {
            (0, MAX_TIMED)
        }
        Field::TokenBudget => (1, MAX_TOKEN_BUDGET),
        _ => (0, u32::MAX),
    }
}

pub fn out_of_range(field: Field, value: impl std::fmt::Display) -> String {
    let (min, max) = range(field);
    format!("must be a whole number from {min} to {max}, got '{value}'")
}

/// The first problem of `e`, if any.
pub fn check_entry(e: &Entry) -> Result<(), (Field, String)> {
    if !(0.0..=100.0).contains(&e.probability) {
        return Err((
            Field::Probability,
            format!("must be from 0 to 100, got '{}'", e.probability),
        ));
    }
    let numbers = [
        (Field::Depth, e.depth),
        (Field::GroupWeight, e.group_weight),
        (Field::Sticky, e.sticky),
        (Field::Cooldown, e.cooldown),
        (Field::Delay, e.delay),
        (Field::DelayUntilRecursion, e.delay_until_recursion.level()),
    ];
    let optional = e.scan_depth.map(|d| (Field::ScanDepth, d));
    for (field, value) in numbers.into_iter().chain(optional) {
        let (min, max) = range(field);
        if !(min..=max).contains(&value) {
            return Err((field, out_of_range(field, value)));
        }
    }
    for (i, key) in e.keys.iter().enumerate() {
        check_key(key).map_err(|p| (Field::Key(i), p))?;
    }
    for (i, key) in e.secondary_keys.iter().enumerate() {
        check_key(key).map_err(|p| (Field::SecondaryKey(i), p))?;
    }
    Ok(())
}

/// Checks every entry of `book` and that uids are unique.
pub fn check_book(book: &Book, path: &Path, names: &Names) -> Result<(), LoreError> {
    if book.name.trim().is_empty() {
        return Err(LoreError::Field {
            path: path.to_path_buf(),
            field: "name".into(),
            problem: "must not be empty".into(),
        });
    }
    if let Some(depth) = book.defaults.scan_depth.filter(|d| *d > MAX_SCAN_DEPTH) {
        return Err(LoreError::Field {
            path: path.to_path_buf(),
            field: "defaults.scan_depth".into(),
            problem: out_of_range(Field::ScanDepth, depth),
        });
    }
    if let Some(budget) = book
        .defaults
        .token_budget
        .filter(|b| !(1..=MAX_TOKEN_BUDGET).contains(b))
    {
        return Err(LoreError::Field {
            path: path.to_path_buf(),
            field: "defaults.token_budget".into(),
            problem: out_of_range(Field::TokenBudget, budget),
        });
    }
    let mut uids = std::collections::HashSet::with_capacity(book.entries.len());
    for (position, e) in book.entries.iter().enumerate() {
        let label = entry_label(Some(e.uid), &e.comment, position);
        if !uids.insert(e.uid) {
            return Err(LoreError::Entry {
                path: path.to_path_buf(),
                entry: label,
                field: "uid".into(),
                problem: "is used by an earlier entry too".into(),
            });
        }
        if let Err((field, problem)) = check_entry(e) {
            return Err(LoreError::Entry {
                path: path.to_path_buf(),
                entry: label,
                field: field.name(names),
                problem,
            });
        }
    }
    Ok(())
}
