//! The data model of a preference log: pairs and ratings, one JSON line each.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::ValidationError;

/// HER-RM's principle dimensions (her-format.md §4): the only allowed rating tags.
pub const PRINCIPLE_DIMENSIONS: [&str; 12] = [
    "Character Development",
    "Relationship Development",
    "Emotional Expression",
    "Action Description",
    "Atmosphere & Environment",
    "Dialogue & Interaction",
    "Narrative & Plot",
    "Conflict & Tension",
    "Details & Description",
    "Overall Quality",
    "Safety & Boundaries",
    "Worldview Consistency",
];

/// The canonical spelling of a dimension typed in any case ("overall quality").
pub fn canonical_dimension(tag: &str) -> Option<&'static str> {
    let tag = tag.trim();
    PRINCIPLE_DIMENSIONS
        .iter()
        .copied()
        .find(|d| d.eq_ignore_ascii_case(tag))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }

    /// The block label HER-RM's context uses ("System", "User", "Assistant").
    pub fn rm_label(self) -> &'static str {
        match self {
            Self::System => "System",
            Self::User => "User",
            Self::Assistant => "Assistant",
        }
    }
}

/// One message of the prompt, in HER's layout (§2): the system prompt, merged
/// "Name: text" user turns, and assistant turns with history rules applied.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContextMessage {
    pub role: Role,
    pub content: String,
}

impl ContextMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// What produced a reply: enough to reproduce it and to tell models apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The exact rendered prompt text (ChatML, ending with the prefill).
    pub prompt: String,
    pub prompt_sha256: String,
    /// sha256 of the prompt's token ids as the model read them (engine
    /// records only; see `engine::local::tokens_sha256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_sha256: Option<String>,
    pub model: String,
    pub model_fingerprint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_sha256: Option<String>,
    /// The adapter's file name, for people reading a leaderboard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_name: Option<String>,
    #[serde(default)]
    pub sampling: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    // Spelled as HER-RM's better_response ("cand1" read for older logs).
    #[serde(rename = "cand_1", alias = "cand1")]
    Cand1,
    #[serde(rename = "cand_2", alias = "cand2")]
    Cand2,
    Tie,
    BothBad,
}

impl Verdict {
    /// The same judgement with the candidates swapped.
    pub fn swapped(self) -> Self {
        match self {
            Self::Cand1 => Self::Cand2,
            Self::Cand2 => Self::Cand1,
            other => other,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreferencePair {
    pub id: String,
    /// A human id, or "judge:MODEL" for a reward model.
    pub annotator: String,
    /// Inferred from a swipe choice or an edit rather than asked for.
    #[serde(default)]
    pub implicit: bool,
    pub character: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    pub context: Vec<ContextMessage>,
    /// Raw replies, system thinking included.
    pub cand_1: String,
    pub cand_2: String,
    pub verdict: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cand_1_provenance: Option<Provenance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cand_2_provenance: Option<Provenance>,
    /// The judge's case-specific principles, if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principles: Vec<String>,
    /// Set when the winner is a reply generated under a thinking block the
    /// writer rewrote (a plan edit): which block, before and after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking_edit: Option<crate::format::ThinkingEdit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
    /// RFC3339.
    pub created_at: String,
}

impl PreferencePair {
    /// (winner, loser) for a decided pair; `None` for a tie or both bad.
    pub fn winner_loser(&self) -> Option<(&str, &str)> {
        match self.verdict {
            Verdict::Cand1 => Some((&self.cand_1, &self.cand_2)),
            Verdict::Cand2 => Some((&self.cand_2, &self.cand_1)),
            Verdict::Tie | Verdict::BothBad => None,
        }
    }

    /// The same record with the candidates (and the verdict) swapped.
    pub fn swapped(mut self) -> Self {
        std::mem::swap(&mut self.cand_1, &mut self.cand_2);
        std::mem::swap(&mut self.cand_1_provenance, &mut self.cand_2_provenance);
        self.verdict = self.verdict.swapped();
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RatingScore {
    ThumbsUp,
    ThumbsDown,
    /// 1..=5.
    Stars(u8),
}

impl RatingScore {
    /// Whether the score says the reply is good (`Some(true)`), bad
    /// (`Some(false)`) or neither (3 stars).
    pub fn polarity(self) -> Option<bool> {
        match self {
            Self::ThumbsUp => Some(true),
            Self::ThumbsDown => Some(false),
            Self::Stars(n) if n >= 4 => Some(true),
            Self::Stars(n) if n <= 2 => Some(false),
            Self::Stars(_) => None,
        }
    }

    /// Orders two scores on the same scale; `None` across scales, since a
    /// thumbs up and three stars were never compared by the annotator.
    pub fn compare(self, other: Self) -> Option<std::cmp::Ordering> {
        let rank = |s: Self| match s {
            Self::ThumbsDown => 0,
            Self::ThumbsUp => 1,
            Self::Stars(n) => n,
        };
        let same_scale = matches!(
            (self, other),
            (Self::Stars(_), Self::Stars(_))
                | (
                    Self::ThumbsUp | Self::ThumbsDown,
                    Self::ThumbsUp | Self::ThumbsDown
                )
        );
        same_scale.then(|| rank(self).cmp(&rank(other)))
    }
}

/// Which part of the reply a rating is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RatedLayer {
    Whole,
    Plan,
    Thinking,
    Visible,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rating {
    pub id: String,
    pub annotator: String,
    #[serde(default)]
    pub implicit: bool,
    pub character: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    pub context: Vec<ContextMessage>,
    /// The raw reply, system thinking included.
    pub reply: String,
    pub score: RatingScore,
    pub layer: RatedLayer,
    /// Entries of [`PRINCIPLE_DIMENSIONS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    pub created_at: String,
}

/// One line of a preference log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
// Records live in Vecs read from logs; both variants are large anyway.
#[allow(clippy::large_enum_variant)]
pub enum PreferenceRecord {
    Pair(PreferencePair),
    Rating(Rating),
}

impl PreferenceRecord {
    pub fn id(&self) -> &str {
        match self {
            Self::Pair(p) => &p.id,
            Self::Rating(r) => &r.id,
        }
    }

    pub fn annotator(&self) -> &str {
        match self {
            Self::Pair(p) => &p.annotator,
            Self::Rating(r) => &r.annotator,
        }
    }

    pub fn implicit(&self) -> bool {
        match self {
            Self::Pair(p) => p.implicit,
            Self::Rating(r) => r.implicit,
        }
    }

    pub fn character(&self) -> &str {
        match self {
            Self::Pair(p) => &p.character,
            Self::Rating(r) => &r.character,
        }
    }

    pub fn context(&self) -> &[ContextMessage] {
        match self {
            Self::Pair(p) => &p.context,
            Self::Rating(r) => &r.context,
        }
    }

    pub fn created_at(&self) -> &str {
        match self {
            Self::Pair(p) => &p.created_at,
            Self::Rating(r) => &r.created_at,
        }
    }

    /// Prompt hashes the record's provenance claims (a pair has up to two).
    pub fn prompt_hashes(&self) -> Vec<&str> {
        let provs = match self {
            Self::Pair(p) => vec![p.cand_1_provenance.as_ref(), p.cand_2_provenance.as_ref()],
            Self::Rating(r) => vec![r.provenance.as_ref()],
        };
        provs
            .into_iter()
            .flatten()
            .map(|p| p.prompt_sha256.as_str())
            .collect()
    }

    /// Checks what a training set relies on; the first problem found.
    pub fn validate(&self) -> Result<(), ValidationError> {
        match self {
            Self::Pair(p) => p.validate(),
            Self::Rating(r) => r.validate(),
        }
    }
}

impl PreferencePair {
    /// Checks what a training set relies on; the first problem found.
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_common(&self.id, &self.annotator, &self.context, &self.created_at)?;
        if self.cand_1 == self.cand_2 {
            return Err(ValidationError::IdenticalCandidates {
                id: self.id.clone(),
            });
        }
        check_provenance(
            &self.id,
            "cand_1_provenance",
            self.cand_1_provenance.as_ref(),
        )?;
        check_provenance(
            &self.id,
            "cand_2_provenance",
            self.cand_2_provenance.as_ref(),
        )
    }
}

impl Rating {
    /// Checks what a training set relies on; the first problem found.
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_common(&self.id, &self.annotator, &self.context, &self.created_at)?;
        if let RatingScore::Stars(stars) = self.score
            && !(1..=5).contains(&stars)
        {
            return Err(ValidationError::StarsOutOfRange {
                id: self.id.clone(),
                stars,
            });
        }
        if let Some(tag) = self
            .tags
            .iter()
            .find(|t| !PRINCIPLE_DIMENSIONS.contains(&t.as_str()))
        {
            return Err(ValidationError::UnknownTag {
                id: self.id.clone(),
                tag: tag.clone(),
            });
        }
        check_provenance(&self.id, "provenance", self.provenance.as_ref())
    }
}

fn check_common(
    id: &str,
    annotator: &str,
    context: &[ContextMessage],
    created_at: &str,
) -> Result<(), ValidationError> {
    if id.trim().is_empty() {
        return Err(ValidationError::EmptyId);
    }
    if annotator.trim().is_empty() {
        return Err(ValidationError::EmptyAnnotator { id: id.to_string() });
    }
    if context.is_empty() {
        return Err(ValidationError::EmptyContext { id: id.to_string() });
    }
    if parse_time(created_at).is_none() {
        return Err(ValidationError::BadCreatedAt {
            id: id.to_string(),
            value: created_at.to_string(),
        });
    }
    Ok(())
}

/// A stale or hand-edited hash would group unrelated prompts together.
fn check_provenance(
    id: &str,
    field: &'static str,
    prov: Option<&Provenance>,
) -> Result<(), ValidationError> {
    let Some(prov) = prov else { return Ok(()) };
    let expected = prompt_sha256(&prov.prompt);
    if prov.prompt_sha256 != expected {
        return Err(ValidationError::PromptHashMismatch {
            id: id.to_string(),
            field,
            expected,
            found: prov.prompt_sha256.clone(),
        });
    }
    Ok(())
}

/// Lower-case hex sha256 of the exact rendered prompt text.
pub fn prompt_sha256(prompt: &str) -> String {
    hex(&Sha256::digest(prompt.as_bytes()))
}

pub(crate) use crate::hashing::hex;

/// Identity of a context: sha256 over roles and contents, unambiguous
/// (each field is length-prefixed).
pub fn context_sha256(context: &[ContextMessage]) -> String {
    let mut h = Sha256::new();
    for m in context {
        hash_part(&mut h, m.role.as_str());
        hash_part(&mut h, &m.content);
    }
    hex(&h.finalize())
}

/// A short deterministic id (`prefix-` + 16 hex digits) from its parts, so
/// recording the same event twice yields the same id.
pub fn derive_id(prefix: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    hash_part(&mut h, prefix);
    for p in parts {
        hash_part(&mut h, p);
    }
    let digest = h.finalize();
    format!("{prefix}-{}", hex(&digest[..8]))
}

fn hash_part(h: &mut Sha256, part: &str) {
    h.update((part.len() as u64).to_le_bytes());
    h.update(part.as_bytes());
}

/// Parses an RFC3339 timestamp.
pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s.trim(), &Rfc3339).ok()
}

/// Now, as RFC3339 in UTC.
pub fn now_rfc3339() -> String {
    // Formatting "now" cannot fail in practice (it fails only for years past
    // 9999); an empty string would then be caught by `validate`.
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prefs::test_support::{pair, provenance, rating};

    #[test]
    fn prompt_hash_is_lowercase_hex_sha256() {
        assert_eq!(
            prompt_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_log_line_is_tagged_by_kind_and_round_trips() -> Result<(), serde_json::Error> {
        let mut r = rating("r1", "Hi.", RatingScore::Stars(4));
        r.context = vec![ContextMessage::new(Role::System, "S")];
        r.tags = vec!["Overall Quality".into()];
        let record = PreferenceRecord::Rating(r);
        let line = serde_json::to_string(&record)?;
        assert_eq!(
            line,
            r#"{"kind":"rating","id":"r1","annotator":"ann","implicit":false,"character":"Elizabeth","context":[{"role":"system","content":"S"}],"reply":"Hi.","score":{"stars":4},"layer":"whole","tags":["Overall Quality"],"created_at":"2025-03-01T10:00:00Z"}"#
        );
        assert_eq!(serde_json::from_str::<PreferenceRecord>(&line)?, record);

        let mut p = pair("p1", "A", "B", Verdict::BothBad);
        p.cand_1_provenance = Some(provenance("P"));
        p.principles = vec!["Do not speak for Darcy.".into()];
        let record = PreferenceRecord::Pair(p);
        let line = serde_json::to_string(&record)?;
        assert!(line.starts_with(r#"{"kind":"pair","id":"p1","#));
        assert!(line.contains(r#""verdict":"both_bad""#));
        assert_eq!(serde_json::from_str::<PreferenceRecord>(&line)?, record);
        Ok(())
    }

    #[test]
    fn validation_names_the_record_and_the_value() {
        let check = |r: Rating| {
            PreferenceRecord::Rating(r)
                .validate()
                .map_err(|e| e.to_string())
        };
        assert_eq!(check(rating("r", "x", RatingScore::Stars(5))), Ok(()));
        assert_eq!(
            check(rating("r", "x", RatingScore::Stars(0))),
            Err("rating \"r\": 0 stars is outside 1..=5".into())
        );
        let mut tagged = rating("r", "x", RatingScore::ThumbsUp);
        tagged.tags = vec!["Character Development".into(), "Vibes".into()];
        assert_eq!(
            check(tagged),
            Err("rating \"r\": tag \"Vibes\" is not one of the 12 principle dimensions".into())
        );
        let mut anon = rating("r", "x", RatingScore::ThumbsUp);
        anon.annotator = " ".into();
        assert_eq!(
            check(anon),
            Err("record \"r\" has an empty annotator".into())
        );
        assert_eq!(
            check(rating("", "x", RatingScore::ThumbsUp)),
            Err("record has an empty id".into())
        );
        let mut stale = rating("r", "x", RatingScore::ThumbsUp);
        let mut prov = provenance("P");
        prov.prompt = "P, edited".into();
        stale.provenance = Some(prov);
        assert!(check(stale).is_err_and(|e| e.contains("provenance.prompt_sha256")));
        let mut undated = rating("r", "x", RatingScore::ThumbsUp);
        undated.created_at = "yesterday".into();
        assert!(check(undated).is_err_and(|e| e.contains("\"yesterday\"")));

        let same = pair("p", "A", "A", Verdict::Cand1);
        assert_eq!(
            PreferenceRecord::Pair(same)
                .validate()
                .map_err(|e| e.to_string()),
            Err("pair \"p\": cand_1 and cand_2 are the same text".into())
        );
    }

    #[test]
    fn dimensions_and_scores() {
        assert_eq!(PRINCIPLE_DIMENSIONS.len(), 12);
        assert_eq!(
            canonical_dimension(" overall quality"),
            Some("Overall Quality")
        );
        assert_eq!(canonical_dimension("vibes"), None);
        assert_eq!(RatingScore::Stars(4).polarity(), Some(true));
        assert_eq!(RatingScore::Stars(3).polarity(), None);
        assert_eq!(RatingScore::Stars(2).polarity(), Some(false));
        assert_eq!(
            RatingScore::ThumbsUp.compare(RatingScore::ThumbsDown),
            Some(std::cmp::Ordering::Greater)
        );
        assert_eq!(RatingScore::ThumbsUp.compare(RatingScore::Stars(1)), None);
        assert!(parse_time(&now_rfc3339()).is_some());
    }

    #[test]
    fn derived_ids_are_stable_and_unambiguous() {
        assert_eq!(derive_id("x", &["ab", "c"]), derive_id("x", &["ab", "c"]));
        assert_ne!(derive_id("x", &["ab", "c"]), derive_id("x", &["a", "bc"]));
        assert!(derive_id("swipe", &["a"]).starts_with("swipe-"));
        assert_eq!(derive_id("swipe", &["a"]).len(), "swipe-".len() + 16);
    }
}
