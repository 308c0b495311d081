//! Which records go into an export: by character, annotator, date, reply
//! format health and whether the preference was explicit.

use serde::{Deserialize, Serialize};
use time::macros::format_description;
use time::{Date, OffsetDateTime};

use super::PrefsError;
use super::record::{PreferenceRecord, Verdict, parse_time};
use crate::format::{Ending, LintContext, health, lint, parse_reply};

/// How clean the reply a record endorses must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MinHealth {
    /// No linter errors (nested tags, lines for other characters, …).
    NoErrors,
    /// Neither errors nor warnings (e.g. a missing plan, an unclosed tag).
    NoWarnings,
}

/// What to do with pairs from a rewritten thinking block (`/plan`,
/// `/thought`): the writer steered the reply rather than picking among the
/// model's own, which some datasets want and some do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThinkingEdits {
    #[default]
    Keep,
    Drop,
    Only,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Filter {
    /// Empty: every character. Compared ignoring case.
    pub characters: Vec<String>,
    /// Empty: every annotator. A trailing `*` matches a prefix ("judge:*").
    pub annotators: Vec<String>,
    /// Inclusive; RFC3339, or YYYY-MM-DD for the start of that day (UTC).
    pub since: Option<String>,
    /// Inclusive; RFC3339, or YYYY-MM-DD for the whole of that day (UTC).
    pub until: Option<String>,
    pub min_format_health: Option<MinHealth>,
    /// Keep preferences inferred from swipes and edits.
    pub include_implicit: bool,
    pub thinking_edits: ThinkingEdits,
}

impl Default for Filter {
    /// Lets everything through.
    fn default() -> Self {
        Self {
            characters: Vec::new(),
            annotators: Vec::new(),
            since: None,
            until: None,
            min_format_health: None,
            include_implicit: true,
            thinking_edits: ThinkingEdits::Keep,
        }
    }
}

/// A time bound and whether a record at exactly that time passes.
type Bound = (OffsetDateTime, bool);

impl Filter {
    /// Checks the date bounds, so a typo is reported instead of silently
    /// matching nothing.
    pub fn check(&self) -> Result<(), PrefsError> {
        self.bounds().map(|_| ())
    }

    /// Keeps the records that match; fails on a malformed date bound.
    pub fn apply(
        &self,
        records: Vec<PreferenceRecord>,
    ) -> Result<Vec<PreferenceRecord>, PrefsError> {
        let bounds = self.bounds()?;
        Ok(records
            .into_iter()
            .filter(|r| self.matches_with(r, bounds))
            .collect())
    }

    /// Whether `record` passes. A malformed date bound matches nothing (call
    /// [`Filter::check`] first to report it).
    pub fn matches(&self, record: &PreferenceRecord) -> bool {
        self.bounds()
            .is_ok_and(|bounds| self.matches_with(record, bounds))
    }

    fn bounds(&self) -> Result<(Option<Bound>, Option<Bound>), PrefsError> {
        let since = self
            .since
            .as_deref()
            .map(|v| parse_bound("since", v, false))
            .transpose()?;
        let until = self
            .until
            .as_deref()
            .map(|v| parse_bound("until", v, true))
            .transpose()?;
        Ok((since, until))
    }

    fn matches_with(
        &self,
        record: &PreferenceRecord,
        (since, until): (Option<Bound>, Option<Bound>),
    ) -> bool {
        if record.implicit() && !self.include_implicit {
            return false;
        }
        let steered = matches!(record, PreferenceRecord::Pair(p) if p.thinking_edit.is_some());
        match self.thinking_edits {
            ThinkingEdits::Drop if steered => return false,
            ThinkingEdits::Only if !steered => return false,
            _ => {}
        }
        if !self.characters.is_empty() {
            let character = record.character().trim().to_lowercase();
            if !self
                .characters
                .iter()
                .any(|c| c.trim().to_lowercase() == character)
            {
                return false;
            }
        }
        if !self.annotators.is_empty()
            && !self
                .annotators
                .iter()
                .any(|pattern| annotator_matches(pattern, record.annotator()))
        {
            return false;
        }
        if since.is_some() || until.is_some() {
            // A record we cannot place in time cannot be said to be in range.
            let Some(at) = parse_time(record.created_at()) else {
                return false;
            };
            if since.is_some_and(|(t, _)| at < t) {
                return false;
            }
            if until.is_some_and(|(t, inclusive)| if inclusive { at > t } else { at >= t }) {
                return false;
            }
        }
        match self.min_format_health {
            Some(min) => endorsed_replies(record)
                .into_iter()
                .all(|reply| healthy(reply, record.character(), min)),
            None => true,
        }
    }
}

fn annotator_matches(pattern: &str, annotator: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => annotator.starts_with(prefix),
        None => pattern == annotator,
    }
}

/// `since` dates start at midnight; `until` dates run to the next midnight.
fn parse_bound(field: &'static str, value: &str, end_of_day: bool) -> Result<Bound, PrefsError> {
    if let Some(t) = parse_time(value) {
        return Ok((t, true));
    }
    let bad = || PrefsError::BadDate {
        field,
        value: value.to_string(),
    };
    let date = Date::parse(value.trim(), format_description!("[year]-[month]-[day]"))
        .map_err(|_| bad())?;
    if end_of_day {
        let next = date.next_day().ok_or_else(bad)?;
        Ok((next.midnight().assume_utc(), false))
    } else {
        Ok((date.midnight().assume_utc(), true))
    }
}

/// The replies a record holds up as good: a pair's winner (both for a tie),
/// a rating's reply. A both-bad pair endorses nothing.
fn endorsed_replies(record: &PreferenceRecord) -> Vec<&str> {
    match record {
        PreferenceRecord::Pair(p) => match p.verdict {
            Verdict::Cand1 => vec![&p.cand_1],
            Verdict::Cand2 => vec![&p.cand_2],
            Verdict::Tie => vec![&p.cand_1, &p.cand_2],
            Verdict::BothBad => Vec::new(),
        },
        PreferenceRecord::Rating(r) => vec![&r.reply],
    }
}

fn healthy(reply: &str, character: &str, min: MinHealth) -> bool {
    let cx = LintContext {
        character: character.to_string(),
        // Training targets are HER replies: a missing plan is a defect.
        expect_system_thinking: true,
        in_history: false,
    };
    let (errors, warnings) = health(&lint(&parse_reply(reply, Ending::Natural), &cx));
    match min {
        MinHealth::NoErrors => errors == 0,
        MinHealth::NoWarnings => errors == 0 && warnings == 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prefs::record::RatingScore;
    use crate::prefs::test_support::{pair, rating};

    fn rec_rating(id: &str, reply: &str) -> PreferenceRecord {
        PreferenceRecord::Rating(rating(id, reply, RatingScore::ThumbsUp))
    }

    #[test]
    fn default_lets_everything_through() {
        let f = Filter::default();
        let mut r = rating("r", "x", RatingScore::ThumbsDown);
        r.implicit = true;
        assert!(f.matches(&PreferenceRecord::Rating(r)));
    }

    #[test]
    fn thinking_edit_pairs_are_kept_dropped_or_kept_alone() {
        let plain = PreferenceRecord::Pair(pair("p", "a", "b", Verdict::Cand1));
        let mut steered = pair("s", "a", "c", Verdict::Cand1);
        steered.thinking_edit = Some(crate::format::ThinkingEdit {
            of: "k1".into(),
            layer: crate::format::Layer::SystemThinking,
            index: 0,
            before: "old".into(),
            after: "new".into(),
        });
        let steered = PreferenceRecord::Pair(steered);
        let with = |thinking_edits| Filter {
            thinking_edits,
            ..Filter::default()
        };
        let kept = |f: &Filter| (f.matches(&plain), f.matches(&steered));
        assert_eq!(kept(&with(ThinkingEdits::Keep)), (true, true));
        assert_eq!(kept(&with(ThinkingEdits::Drop)), (true, false));
        assert_eq!(kept(&with(ThinkingEdits::Only)), (false, true));
    }

    #[test]
    fn by_character_and_annotator() {
        let mut darcy = rating("d", "x", RatingScore::ThumbsUp);
        darcy.character = "Darcy".into();
        darcy.annotator = "judge:her-rm-32b".into();
        let darcy = PreferenceRecord::Rating(darcy);
        let liz = rec_rating("e", "x");

        let f = Filter {
            characters: vec!["darcy".into()],
            ..Filter::default()
        };
        assert!(f.matches(&darcy));
        assert!(!f.matches(&liz));

        let f = Filter {
            annotators: vec!["judge:*".into()],
            ..Filter::default()
        };
        assert!(f.matches(&darcy));
        assert!(!f.matches(&liz));
        let f = Filter {
            annotators: vec!["ann".into()],
            ..Filter::default()
        };
        assert!(!f.matches(&darcy));
        assert!(f.matches(&liz));
    }

    #[test]
    fn by_date() {
        let at = |t: &str| {
            let mut r = rating("r", "x", RatingScore::ThumbsUp);
            r.created_at = t.into();
            PreferenceRecord::Rating(r)
        };
        let f = Filter {
            since: Some("2025-03-01".into()),
            until: Some("2025-03-02".into()),
            ..Filter::default()
        };
        assert!(f.check().is_ok());
        assert!(!f.matches(&at("2025-02-28T23:59:59Z")));
        assert!(f.matches(&at("2025-03-01T00:00:00Z")));
        assert!(f.matches(&at("2025-03-02T23:59:59Z"))); // until a date: the whole day
        assert!(!f.matches(&at("2025-03-03T00:00:00Z")));
        // Offsets are honoured: 01:00+02:00 on the 3rd is 23:00 UTC on the 2nd.
        assert!(f.matches(&at("2025-03-03T01:00:00+02:00")));
        assert!(!f.matches(&at("not a time")));

        let f = Filter {
            until: Some("2025-03-01T12:00:00Z".into()),
            ..Filter::default()
        };
        assert!(f.matches(&at("2025-03-01T12:00:00Z")));
        assert!(!f.matches(&at("2025-03-01T12:00:01Z")));

        let bad = Filter {
            since: Some("March 1st".into()),
            ..Filter::default()
        };
        let err = bad.check().map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err(
                "filter: since = \"March 1st\" is neither an RFC3339 time nor a YYYY-MM-DD date"
                    .into()
            )
        );
        assert!(!bad.matches(&at("2025-03-01T00:00:00Z")));
        assert!(bad.apply(vec![at("2025-03-01T00:00:00Z")]).is_err());
    }

    #[test]
    fn by_format_health() {
        let good = rec_rating(
            "g",
            "<system_thinking>She teases.</system_thinking>Elizabeth: <role_action>smiles</role_action>Indeed.",
        );
        // Writes a line for another character: a linter error.
        let for_other = rec_rating(
            "o",
            "<system_thinking>p</system_thinking>Elizabeth: Indeed.\nDarcy: I must protest.",
        );
        // No plan: a warning only.
        let no_plan = rec_rating("n", "Elizabeth: Indeed.");
        let f = Filter {
            min_format_health: Some(MinHealth::NoErrors),
            ..Filter::default()
        };
        assert!(f.matches(&good));
        assert!(!f.matches(&for_other));
        assert!(f.matches(&no_plan));
        let strict = Filter {
            min_format_health: Some(MinHealth::NoWarnings),
            ..Filter::default()
        };
        assert!(strict.matches(&good));
        assert!(!strict.matches(&no_plan));

        // Only the chosen reply of a pair counts.
        let bad_loser = pair(
            "p",
            "<system_thinking>p</system_thinking>Fine.",
            "<system_thinking>p</system_thinking>Elizabeth: Fine.\nDarcy: Indeed.",
            Verdict::Cand1,
        );
        assert!(f.matches(&PreferenceRecord::Pair(bad_loser.clone())));
        let mut bad_winner = bad_loser.clone();
        bad_winner.verdict = Verdict::Cand2;
        assert!(!f.matches(&PreferenceRecord::Pair(bad_winner)));
        // Swapping both the order and the verdict changes nothing.
        assert!(f.matches(&PreferenceRecord::Pair(bad_loser.swapped())));
    }

    #[test]
    fn implicit_can_be_excluded() {
        let mut p = pair("p", "A", "B", Verdict::Cand1);
        p.implicit = true;
        let f = Filter {
            include_implicit: false,
            ..Filter::default()
        };
        assert!(!f.matches(&PreferenceRecord::Pair(p.clone())));
        p.implicit = false;
        assert!(f.matches(&PreferenceRecord::Pair(p)));
    }
}
