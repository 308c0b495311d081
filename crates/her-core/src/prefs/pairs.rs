//! Pairs inferred from what the user did (kept a swipe, edited a reply, rated
//! replies), and removal of duplicate records.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::format::ThinkingEdit;

use super::record::{
    ContextMessage, PreferencePair, PreferenceRecord, Provenance, RatedLayer, Rating, Verdict,
    context_sha256, derive_id, parse_time,
};

/// One sibling reply to the same prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Alternative {
    /// The raw reply, system thinking included.
    pub text: String,
    pub provenance: Option<Provenance>,
}

impl Alternative {
    pub fn new(text: impl Into<String>, provenance: Option<Provenance>) -> Self {
        Self {
            text: text.into(),
            provenance,
        }
    }
}

/// What every pair inferred from one moment of a session shares.
#[derive(Debug, Clone, PartialEq)]
pub struct PairMeta {
    pub annotator: String,
    pub character: String,
    pub session: Option<String>,
    pub context: Vec<ContextMessage>,
    /// RFC3339; see [`super::now_rfc3339`].
    pub created_at: String,
}

/// The user kept `kept` among its siblings: each discarded sibling gives a
/// pair kept ≻ discarded. Blank siblings (cancelled generations) and copies of
/// the kept text say nothing about preference and are skipped.
pub fn implicit_pairs_from_swipes(
    kept: &Alternative,
    discarded: &[Alternative],
    meta: &PairMeta,
) -> Vec<PreferencePair> {
    let ctx = context_sha256(&meta.context);
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for loser in discarded {
        if loser.text.trim().is_empty()
            || loser.text == kept.text
            || seen.contains(&loser.text.as_str())
        {
            continue;
        }
        seen.push(&loser.text);
        let id = derive_id("swipe", &[&meta.annotator, &ctx, &kept.text, &loser.text]);
        out.push(build_pair(id, meta, true, kept, loser));
    }
    out
}

/// The user rewrote `original` into `edited`: the edit is preferred. `None`
/// when nothing changed. The edited text has no provenance (a human wrote it).
pub fn implicit_pair_from_edit(
    original: &Alternative,
    edited: &str,
    meta: &PairMeta,
) -> Option<PreferencePair> {
    if edited == original.text || edited.trim().is_empty() {
        return None;
    }
    let ctx = context_sha256(&meta.context);
    let id = derive_id("edit", &[&meta.annotator, &ctx, &original.text, edited]);
    let winner = Alternative::new(edited, None);
    Some(build_pair(id, meta, true, &winner, original))
}

/// The user rewrote a thinking block of `original` and kept the reply
/// generated under it (`kept`): kept ≻ original, marked with the edit so a
/// dataset can tell plan edits from other choices. `None` when nothing
/// changed.
pub fn implicit_pair_from_thinking_edit(
    original: &Alternative,
    kept: &Alternative,
    edit: &ThinkingEdit,
    meta: &PairMeta,
) -> Option<PreferencePair> {
    if kept.text == original.text || kept.text.trim().is_empty() {
        return None;
    }
    let ctx = context_sha256(&meta.context);
    let id = derive_id(
        "thinking-edit",
        &[&meta.annotator, &ctx, &original.text, &kept.text],
    );
    let mut pair = build_pair(id, meta, true, kept, original);
    pair.thinking_edit = Some(edit.clone());
    Some(pair)
}

/// Pairs from ratings of different replies to the same context (same
/// prompt hash or identical messages) by the same annotator: the higher score
/// wins; equal scores give nothing. Only ratings of the same layer on the same
/// scale are compared (stars vs thumbs were never weighed by the annotator),
/// and a re-rated reply counts with its newest rating. Invalid ratings are
/// ignored.
pub fn pairs_from_ratings(ratings: &[Rating]) -> Vec<PreferencePair> {
    let valid: Vec<&Rating> = ratings.iter().filter(|r| r.validate().is_ok()).collect();
    let groups = context_groups(valid.iter().map(|r| {
        let hashes = r
            .provenance
            .iter()
            .map(|p| p.prompt_sha256.as_str())
            .collect();
        (context_sha256(&r.context), hashes)
    }));

    // Bucket: annotator, context group, layer → newest rating per reply text.
    let mut buckets: HashMap<(&str, usize, RatedLayer), Vec<&Rating>> = HashMap::new();
    let mut order: Vec<(&str, usize, RatedLayer)> = Vec::new();
    for (r, group) in valid.iter().zip(&groups) {
        let key = (r.annotator.as_str(), *group, r.layer);
        let bucket = buckets.entry(key).or_insert_with(|| {
            order.push(key);
            Vec::new()
        });
        match bucket.iter_mut().find(|b| b.reply == r.reply) {
            Some(old) if is_newer(&r.created_at, &old.created_at) => *old = r,
            Some(_) => {}
            None => bucket.push(r),
        }
    }

    let mut out = Vec::new();
    for key in order {
        let Some(bucket) = buckets.get(&key) else {
            continue;
        };
        for (i, a) in bucket.iter().enumerate() {
            for b in &bucket[i + 1..] {
                let (winner, loser) = match a.score.compare(b.score) {
                    Some(std::cmp::Ordering::Greater) => (a, b),
                    Some(std::cmp::Ordering::Less) => (b, a),
                    _ => continue,
                };
                out.push(pair_from_two_ratings(winner, loser));
            }
        }
    }
    out
}

fn pair_from_two_ratings(winner: &Rating, loser: &Rating) -> PreferencePair {
    let id = derive_id("rated", &[&winner.annotator, &winner.id, &loser.id]);
    let created_at = if is_newer(&loser.created_at, &winner.created_at) {
        loser.created_at.clone()
    } else {
        winner.created_at.clone()
    };
    let meta = PairMeta {
        annotator: winner.annotator.clone(),
        character: winner.character.clone(),
        session: winner.session.clone().or_else(|| loser.session.clone()),
        context: winner.context.clone(),
        created_at,
    };
    let w = Alternative::new(winner.reply.clone(), winner.provenance.clone());
    let l = Alternative::new(loser.reply.clone(), loser.provenance.clone());
    build_pair(id, &meta, winner.implicit || loser.implicit, &w, &l)
}

/// Builds a decided pair. Which side is cand_1 comes from the id's hash, so
/// it is reproducible yet uncorrelated with the label: a model trained or
/// judged on these pairs cannot learn "the first one wins".
fn build_pair(
    id: String,
    meta: &PairMeta,
    implicit: bool,
    winner: &Alternative,
    loser: &Alternative,
) -> PreferencePair {
    let winner_first = Sha256::digest(id.as_bytes())[0] & 1 == 0;
    let (first, second, verdict) = if winner_first {
        (winner, loser, Verdict::Cand1)
    } else {
        (loser, winner, Verdict::Cand2)
    };
    PreferencePair {
        id,
        annotator: meta.annotator.clone(),
        implicit,
        character: meta.character.clone(),
        session: meta.session.clone(),
        context: meta.context.clone(),
        cand_1: first.text.clone(),
        cand_2: second.text.clone(),
        verdict,
        cand_1_provenance: first.provenance.clone(),
        cand_2_provenance: second.provenance.clone(),
        principles: Vec::new(),
        thinking_edit: None,
        rationale: None,
        created_at: meta.created_at.clone(),
    }
}

/// Removes duplicates, keeping the newest of each: pairs by the same
/// annotator on the same context over the same two candidates in either order
/// (a changed mind overrides the old verdict), ratings by the same annotator
/// of the same reply and layer. The order of the kept records is preserved;
/// among equal times the later record wins (the log is append-only).
pub fn dedup(records: Vec<PreferenceRecord>) -> Vec<PreferenceRecord> {
    let groups = context_groups(
        records
            .iter()
            .map(|r| (context_sha256(r.context()), r.prompt_hashes())),
    );
    let mut newest: HashMap<(usize, String), usize> = HashMap::new();
    for (i, (r, group)) in records.iter().zip(&groups).enumerate() {
        let key = (*group, identity(r));
        match newest.get(&key) {
            Some(&j) if !is_newer_or_same(r.created_at(), records[j].created_at()) => {}
            _ => {
                newest.insert(key, i);
            }
        }
    }
    let mut keep = vec![false; records.len()];
    for &i in newest.values() {
        keep[i] = true;
    }
    records
        .into_iter()
        .zip(keep)
        .filter_map(|(r, k)| k.then_some(r))
        .collect()
}

/// What makes two records "the same judgement", apart from the context.
fn identity(record: &PreferenceRecord) -> String {
    match record {
        PreferenceRecord::Pair(p) => {
            let (a, b) = if p.cand_1 <= p.cand_2 {
                (&p.cand_1, &p.cand_2)
            } else {
                (&p.cand_2, &p.cand_1)
            };
            derive_id("pair", &[&p.annotator, a, b])
        }
        PreferenceRecord::Rating(r) => {
            let layer = format!("{:?}", r.layer);
            derive_id("rating", &[&r.annotator, &r.reply, &layer])
        }
    }
}

/// Context groups: items with identical messages or a shared prompt hash are
/// the same context (a record with provenance may lack identical messages
/// when the caller rebuilt them, but the exact prompt pins it down).
fn context_groups<'a>(items: impl Iterator<Item = (String, Vec<&'a str>)>) -> Vec<usize> {
    let mut parent: Vec<usize> = Vec::new();
    let mut by_context: HashMap<String, usize> = HashMap::new();
    let mut by_prompt: HashMap<&'a str, usize> = HashMap::new();
    for (i, (ctx, prompts)) in items.enumerate() {
        parent.push(i);
        let first = *by_context.entry(ctx).or_insert(i);
        union(&mut parent, first, i);
        for p in prompts {
            let first = *by_prompt.entry(p).or_insert(i);
            union(&mut parent, first, i);
        }
    }
    (0..parent.len()).map(|i| find(&mut parent, i)).collect()
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

fn union(parent: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        // The smaller index stays the root, so group ids are stable.
        let (lo, hi) = (ra.min(rb), ra.max(rb));
        parent[hi] = lo;
    }
}

/// `a` is strictly newer than `b`; an unparseable time counts as oldest.
fn is_newer(a: &str, b: &str) -> bool {
    parse_time(a) > parse_time(b)
}

pub(crate) fn is_newer_or_same(a: &str, b: &str) -> bool {
    parse_time(a) >= parse_time(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prefs::record::{RatingScore, Role};
    use crate::prefs::test_support::{context, provenance, rating};

    fn meta() -> PairMeta {
        PairMeta {
            annotator: "ann".into(),
            character: "Elizabeth".into(),
            session: Some("s1".into()),
            context: context(),
            created_at: "2025-03-01T10:00:00Z".into(),
        }
    }

    fn winner_of(p: &PreferencePair) -> &str {
        p.winner_loser().map_or("", |(w, _)| w)
    }

    #[test]
    fn swipes_give_one_pair_per_discarded_sibling_and_kept_always_wins() {
        let kept = Alternative::new(
            "<system_thinking>p</system_thinking>Elizabeth: Kept.",
            Some(provenance("P")),
        );
        let discarded: Vec<Alternative> = (0..24)
            .map(|i| Alternative::new(format!("Elizabeth: other {i}"), Some(provenance("P"))))
            .collect();
        let pairs = implicit_pairs_from_swipes(&kept, &discarded, &meta());
        assert_eq!(pairs.len(), discarded.len()); // n siblings → n-1 pairs
        for p in &pairs {
            assert!(p.implicit);
            assert_eq!(p.annotator, "ann");
            assert_eq!(winner_of(p), kept.text);
            let kept_prov = match p.verdict {
                Verdict::Cand1 => &p.cand_1_provenance,
                _ => &p.cand_2_provenance,
            };
            assert_eq!(kept_prov.as_ref(), kept.provenance.as_ref());
            assert!(PreferenceRecord::Pair(p.clone()).validate().is_ok());
        }
        let firsts = pairs.iter().filter(|p| p.verdict == Verdict::Cand1).count();
        assert!(
            firsts > 0 && firsts < pairs.len(),
            "positions must vary: {firsts}"
        );
        // Deterministic: the same swipe gives the same pairs.
        assert_eq!(
            pairs,
            implicit_pairs_from_swipes(&kept, &discarded, &meta())
        );
    }

    #[test]
    fn swipes_skip_blank_and_identical_siblings() {
        let kept = Alternative::new("A", None);
        let discarded = [
            Alternative::new("A", None),
            Alternative::new("  ", None),
            Alternative::new("B", None),
            Alternative::new("B", None),
        ];
        let pairs = implicit_pairs_from_swipes(&kept, &discarded, &meta());
        assert_eq!(pairs.len(), 1);
        assert_eq!(winner_of(&pairs[0]), "A");
    }

    #[test]
    fn edit_beats_original() {
        let original = Alternative::new("Elizabeth: Fine.", Some(provenance("P")));
        let pair = implicit_pair_from_edit(&original, "Elizabeth: Quite fine, sir.", &meta());
        let Some(pair) = pair else {
            panic!("an edit gives a pair")
        };
        assert!(pair.implicit);
        assert_eq!(
            pair.winner_loser(),
            Some(("Elizabeth: Quite fine, sir.", "Elizabeth: Fine."))
        );
        let (edited_prov, original_prov) = match pair.verdict {
            Verdict::Cand1 => (&pair.cand_1_provenance, &pair.cand_2_provenance),
            _ => (&pair.cand_2_provenance, &pair.cand_1_provenance),
        };
        assert!(edited_prov.is_none());
        assert!(original_prov.is_some());
        assert!(implicit_pair_from_edit(&original, "Elizabeth: Fine.", &meta()).is_none());
    }

    #[test]
    fn ratings_of_the_same_context_become_pairs() {
        let up = rating("r1", "Good.", RatingScore::ThumbsUp);
        let down = rating("r2", "Bad.", RatingScore::ThumbsDown);
        let down2 = rating("r3", "Also bad.", RatingScore::ThumbsDown);
        let pairs = pairs_from_ratings(&[up.clone(), down, down2]);
        assert_eq!(pairs.len(), 2); // up beats each down; the two downs tie
        assert!(pairs.iter().all(|p| winner_of(p) == "Good."));
        assert!(pairs.iter().all(|p| !p.implicit && p.annotator == "ann"));

        let s5 = rating("s5", "Five.", RatingScore::Stars(5));
        let s2 = rating("s2", "Two.", RatingScore::Stars(2));
        let s2b = rating("s2b", "Two again.", RatingScore::Stars(2));
        let pairs = pairs_from_ratings(&[s2.clone(), s5, s2b]);
        assert_eq!(pairs.len(), 2);
        assert!(pairs.iter().all(|p| winner_of(p) == "Five."));

        // Stars and thumbs are different scales: no pair.
        assert!(pairs_from_ratings(&[up.clone(), s2.clone()]).is_empty());
    }

    #[test]
    fn ratings_need_same_annotator_and_context() {
        let up = rating("r1", "Good.", RatingScore::ThumbsUp);
        let mut other_annotator = rating("r2", "Bad.", RatingScore::ThumbsDown);
        other_annotator.annotator = "someone".into();
        let mut other_context = rating("r3", "Bad.", RatingScore::ThumbsDown);
        other_context
            .context
            .push(crate::prefs::ContextMessage::new(Role::User, "More."));
        assert!(
            pairs_from_ratings(&[up.clone(), other_annotator, other_context.clone()]).is_empty()
        );

        // A shared prompt hash is the same context even if the messages differ.
        let mut a = up;
        a.provenance = Some(provenance("PROMPT"));
        other_context.provenance = Some(provenance("PROMPT"));
        assert_eq!(pairs_from_ratings(&[a, other_context]).len(), 1);
    }

    #[test]
    fn a_rerated_reply_counts_with_its_newest_rating() {
        let a = rating("r1", "A.", RatingScore::ThumbsUp);
        let b = rating("r2", "B.", RatingScore::ThumbsDown);
        let mut a_again = rating("r3", "A.", RatingScore::ThumbsDown);
        a_again.created_at = "2025-03-02T00:00:00Z".into();
        assert!(pairs_from_ratings(&[a, b, a_again]).is_empty());
    }

    #[test]
    fn dedup_treats_swapped_order_as_the_same_pair_and_keeps_the_newest() {
        let kept = Alternative::new("A", None);
        let pairs = implicit_pairs_from_swipes(&kept, &[Alternative::new("B", None)], &meta());
        let old = pairs[0].clone();
        let mut newer = old.clone().swapped();
        newer.id = "again".into();
        newer.created_at = "2025-03-05T00:00:00Z".into();
        assert_eq!(newer.winner_loser(), old.winner_loser());
        let mut other_annotator = old.clone();
        other_annotator.annotator = "judge:her-rm".into();
        let out = dedup(vec![
            PreferenceRecord::Pair(newer.clone()),
            PreferenceRecord::Pair(old.clone()),
            PreferenceRecord::Pair(other_annotator.clone()),
        ]);
        assert_eq!(
            out,
            vec![
                PreferenceRecord::Pair(newer),
                PreferenceRecord::Pair(other_annotator)
            ]
        );
    }

    #[test]
    fn dedup_keeps_the_latest_of_equal_times_and_dedups_ratings() {
        let a = rating("r1", "A.", RatingScore::ThumbsUp);
        let mut b = rating("r2", "A.", RatingScore::ThumbsDown);
        b.created_at = a.created_at.clone();
        let c = rating("r3", "C.", RatingScore::ThumbsDown);
        let out = dedup(vec![
            PreferenceRecord::Rating(a),
            PreferenceRecord::Rating(b.clone()),
            PreferenceRecord::Rating(c.clone()),
        ]);
        assert_eq!(
            out,
            vec![PreferenceRecord::Rating(b), PreferenceRecord::Rating(c)]
        );
    }
}
