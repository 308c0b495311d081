//! `her prefs agreement`: how far annotators agree on the items they share,
//! as Cohen's κ per pair of annotators and Krippendorff's α over everyone.
//!
//! An item ("unit") is what was judged, whoever judged it: a pair is its
//! context and its two candidates in either order, a rating its context,
//! reply and layer. Units are grouped by scale (A/B verdicts, thumbs, stars)
//! and each scale gets its own statistics: the scales' labels never meet, so
//! pooling them would count every cross-scale pair of labels as chance
//! disagreement and inflate both κ and α.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use super::pairs::is_newer_or_same;
use super::record::context_sha256;
use super::record::{PreferencePair, PreferenceRecord, RatedLayer, Rating, RatingScore, Verdict};
use super::stats::{cohen_kappa, krippendorff_alpha_nominal};

/// Which records take part. Both default to off: swipes and edits were not
/// asked as a question, and a judge is a model, not an annotator to agree with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AgreementOptions {
    /// Count "judge:*" annotators as annotators.
    pub include_judges: bool,
    /// Count preferences inferred from swipes and edits.
    pub include_implicit: bool,
}

/// The kind of answer a unit got; agreement is measured within one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scale {
    /// A/B verdicts on pairs.
    Pair,
    /// Thumbs up or down on a reply.
    Thumbs,
    /// 1 to 5 stars on a reply.
    Stars,
}

impl Scale {
    pub fn title(self) -> &'static str {
        match self {
            Self::Pair => "Pairs (verdicts)",
            Self::Thumbs => "Ratings (thumbs)",
            Self::Stars => "Ratings (stars)",
        }
    }
}

/// One annotator's answer on a unit, as a nominal category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Label {
    /// The pair's candidate that sorts first (by text) won.
    First,
    /// The other one won.
    Second,
    Tie,
    BothBad,
    Up,
    Down,
    Stars(u8),
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::First => f.write_str("first"),
            Self::Second => f.write_str("second"),
            Self::Tie => f.write_str("tie"),
            Self::BothBad => f.write_str("both bad"),
            Self::Up => f.write_str("up"),
            Self::Down => f.write_str("down"),
            Self::Stars(n) => write!(f, "{n} stars"),
        }
    }
}

/// How many units one annotator labelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotatorItems {
    pub annotator: String,
    pub items: usize,
}

/// Cohen's κ of two annotators on the units both labelled.
#[derive(Debug, Clone, PartialEq)]
pub struct PairKappa {
    pub a: String,
    pub b: String,
    pub shared: usize,
    /// `None` when they share fewer than 2 units (κ says nothing there).
    pub kappa: Option<f64>,
}

/// Agreement within one scale.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleAgreement {
    pub scale: Scale,
    /// Sorted by name.
    pub annotators: Vec<AnnotatorItems>,
    /// Every pair of annotators of this scale, in name order.
    pub pairs: Vec<PairKappa>,
    /// Krippendorff's α (nominal) over all units; `None` if no unit has two
    /// labels.
    pub alpha: Option<f64>,
    pub units: usize,
    /// Units with labels from two or more annotators (the ones α uses).
    pub units_with_two_or_more: usize,
}

/// What `her prefs agreement` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct AgreementReport {
    pub options: AgreementOptions,
    /// Units per annotator over all scales, sorted by name.
    pub annotators: Vec<AnnotatorItems>,
    /// Scales that have at least one unit, in [`Scale`] order.
    pub scales: Vec<ScaleAgreement>,
    pub excluded_implicit: usize,
    pub excluded_judges: usize,
    /// Records failing validation, left out.
    pub invalid: usize,
}

/// What makes two records the same unit: the scale, the context hash and
/// two texts (the sorted candidates; or the layer and the reply).
type UnitKey<'a> = (Scale, String, &'a str, &'a str);

/// Label and time of the annotator's answer that counts on a unit.
type Labels<'a> = BTreeMap<&'a str, (Label, &'a str)>;

/// Builds the report. If an annotator labelled the same unit more than once
/// (a changed mind, or a repeated id), the newest label counts; among equal
/// times the later record.
pub fn agreement_report(
    records: &[PreferenceRecord],
    options: &AgreementOptions,
) -> AgreementReport {
    let mut report = AgreementReport {
        options: *options,
        annotators: Vec::new(),
        scales: Vec::new(),
        excluded_implicit: 0,
        excluded_judges: 0,
        invalid: 0,
    };
    let mut units: BTreeMap<UnitKey<'_>, Labels<'_>> = BTreeMap::new();
    for record in records {
        if !admit(record, options, &mut report) {
            continue;
        }
        let (key, label) = unit_of(record);
        let labels = units.entry(key).or_default();
        let created_at = record.created_at();
        match labels.get(record.annotator()) {
            Some((_, old)) if !is_newer_or_same(created_at, old) => {}
            _ => {
                labels.insert(record.annotator(), (label, created_at));
            }
        }
    }
    report.annotators = count_items(units.values());
    for scale in [Scale::Pair, Scale::Thumbs, Scale::Stars] {
        let of_scale: Vec<&Labels<'_>> = units
            .iter()
            .filter(|((s, ..), _)| *s == scale)
            .map(|(_, labels)| labels)
            .collect();
        if !of_scale.is_empty() {
            report.scales.push(scale_agreement(scale, &of_scale));
        }
    }
    report
}

/// Whether a record takes part, counting the ones left out.
fn admit(
    record: &PreferenceRecord,
    options: &AgreementOptions,
    report: &mut AgreementReport,
) -> bool {
    if record.validate().is_err() {
        report.invalid += 1;
        false
    } else if record.implicit() && !options.include_implicit {
        report.excluded_implicit += 1;
        false
    } else if record.annotator().starts_with("judge:") && !options.include_judges {
        report.excluded_judges += 1;
        false
    } else {
        true
    }
}

fn unit_of(record: &PreferenceRecord) -> (UnitKey<'_>, Label) {
    match record {
        PreferenceRecord::Pair(p) => pair_unit(p),
        PreferenceRecord::Rating(r) => rating_unit(r),
    }
}

/// A pair shown in either order is one unit: the candidates are sorted and
/// the verdict follows them.
fn pair_unit(p: &PreferencePair) -> (UnitKey<'_>, Label) {
    let (first, second, verdict) = if p.cand_1 <= p.cand_2 {
        (&p.cand_1, &p.cand_2, p.verdict)
    } else {
        (&p.cand_2, &p.cand_1, p.verdict.swapped())
    };
    let label = match verdict {
        Verdict::Cand1 => Label::First,
        Verdict::Cand2 => Label::Second,
        Verdict::Tie => Label::Tie,
        Verdict::BothBad => Label::BothBad,
    };
    (
        (Scale::Pair, context_sha256(&p.context), first, second),
        label,
    )
}

fn rating_unit(r: &Rating) -> (UnitKey<'_>, Label) {
    let (scale, label) = match r.score {
        RatingScore::ThumbsUp => (Scale::Thumbs, Label::Up),
        RatingScore::ThumbsDown => (Scale::Thumbs, Label::Down),
        RatingScore::Stars(n) => (Scale::Stars, Label::Stars(n)),
    };
    let layer = layer_name(r.layer);
    ((scale, context_sha256(&r.context), layer, &r.reply), label)
}

fn layer_name(layer: RatedLayer) -> &'static str {
    match layer {
        RatedLayer::Whole => "whole",
        RatedLayer::Plan => "plan",
        RatedLayer::Thinking => "thinking",
        RatedLayer::Visible => "visible",
    }
}

fn count_items<'a, 'b: 'a>(units: impl Iterator<Item = &'a Labels<'b>>) -> Vec<AnnotatorItems> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for labels in units {
        for annotator in labels.keys() {
            *counts.entry(annotator).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .map(|(annotator, items)| AnnotatorItems {
            annotator: annotator.to_string(),
            items,
        })
        .collect()
}

fn scale_agreement(scale: Scale, units: &[&Labels<'_>]) -> ScaleAgreement {
    let annotators = count_items(units.iter().copied());
    let names: Vec<&str> = annotators.iter().map(|a| a.annotator.as_str()).collect();
    let mut pairs = Vec::new();
    for (i, a) in names.iter().enumerate() {
        for b in &names[i + 1..] {
            pairs.push(pair_kappa(a, b, units));
        }
    }
    // Rows are units, columns annotators in name order, as α expects.
    let rows: Vec<Vec<Option<Label>>> = units
        .iter()
        .map(|labels| names.iter().map(|n| labels.get(n).map(|l| l.0)).collect())
        .collect();
    ScaleAgreement {
        scale,
        pairs,
        alpha: krippendorff_alpha_nominal(&rows).ok(),
        units: units.len(),
        units_with_two_or_more: units.iter().filter(|l| l.len() >= 2).count(),
        annotators,
    }
}

fn pair_kappa(a: &str, b: &str, units: &[&Labels<'_>]) -> PairKappa {
    let (la, lb): (Vec<Label>, Vec<Label>) = units
        .iter()
        .filter_map(|labels| Some((labels.get(a)?.0, labels.get(b)?.0)))
        .unzip();
    let shared = la.len();
    PairKappa {
        a: a.to_string(),
        b: b.to_string(),
        shared,
        kappa: (shared >= 2).then(|| cohen_kappa(&la, &lb).ok()).flatten(),
    }
}

impl AgreementReport {
    /// A plain-text report for the terminal.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Inter-annotator agreement (nominal labels)");
        let _ = writeln!(out, "{}", self.exclusions());
        if self.scales.is_empty() {
            let _ = writeln!(out, "\nNo records to compare.");
            return out;
        }
        let _ = writeln!(out);
        write_items(&mut out, "", &self.annotators);
        for scale in &self.scales {
            let _ = writeln!(out, "\n{}", scale.scale.title());
            scale.render_into(&mut out);
        }
        out
    }

    /// One line on what was left out, so a thin report explains itself.
    fn exclusions(&self) -> String {
        let mut left_out = Vec::new();
        if !self.options.include_implicit {
            left_out.push(format!("{} implicit", self.excluded_implicit));
        }
        if !self.options.include_judges {
            left_out.push(format!("{} by judge:*", self.excluded_judges));
        }
        if self.invalid > 0 {
            left_out.push(format!("{} invalid", self.invalid));
        }
        if left_out.is_empty() {
            "All records taken into account.".into()
        } else {
            format!("Records left out: {}.", left_out.join(", "))
        }
    }
}

impl ScaleAgreement {
    fn render_into(&self, out: &mut String) {
        write_items(out, "  ", &self.annotators);
        let _ = writeln!(
            out,
            "  units: {}, labelled by 2 or more: {}",
            self.units, self.units_with_two_or_more
        );
        let alpha = self
            .alpha
            .map_or_else(|| "n/a (no unit has 2 labels)".into(), fmt_stat);
        let _ = writeln!(out, "  Krippendorff's alpha: {alpha}");
        if self.pairs.is_empty() {
            return;
        }
        let width = self
            .pairs
            .iter()
            .map(|p| p.a.chars().count() + p.b.chars().count() + 3)
            .max()
            .unwrap_or(0)
            .max("annotators".len());
        let _ = writeln!(
            out,
            "  {:<width$}  {:>6}  Cohen's kappa",
            "annotators", "shared"
        );
        for p in &self.pairs {
            let names = format!("{} / {}", p.a, p.b);
            let kappa = p
                .kappa
                .map_or_else(|| "n/a (fewer than 2 shared items)".into(), fmt_stat);
            let _ = writeln!(out, "  {names:<width$}  {:>6}  {kappa}", p.shared);
        }
    }
}

fn write_items(out: &mut String, indent: &str, items: &[AnnotatorItems]) {
    let width = items
        .iter()
        .map(|a| a.annotator.chars().count())
        .max()
        .unwrap_or(0)
        .max("annotator".len());
    let _ = writeln!(out, "{indent}{:<width$}  {:>5}", "annotator", "items");
    for a in items {
        let _ = writeln!(out, "{indent}{:<width$}  {:>5}", a.annotator, a.items);
    }
}

fn fmt_stat(x: f64) -> String {
    format!("{x:.3}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prefs::record::{ContextMessage, Role};
    use crate::prefs::test_support::{pair, rating};

    const T1: &str = "2025-03-02T10:00:00Z";

    fn ctx(n: usize) -> Vec<ContextMessage> {
        vec![ContextMessage::new(Role::User, format!("Darcy: line {n}"))]
    }

    /// `who` judged unit `n` (candidates "a{n}" < "b{n}"), `label` in that
    /// canonical order; `swapped` stores the pair the other way round.
    fn judged(who: &str, n: usize, label: Label, swapped: bool) -> PreferenceRecord {
        let verdict = match label {
            Label::First => Verdict::Cand1,
            Label::Second => Verdict::Cand2,
            Label::Tie => Verdict::Tie,
            _ => Verdict::BothBad,
        };
        let mut p = pair(
            &format!("{who}-{n}"),
            &format!("a{n}"),
            &format!("b{n}"),
            verdict,
        );
        p.annotator = who.into();
        p.context = ctx(n);
        PreferenceRecord::Pair(if swapped { p.swapped() } else { p })
    }

    fn thumbs(who: &str, n: usize, score: RatingScore) -> PreferenceRecord {
        let mut r = rating(&format!("{who}-r{n}"), &format!("reply {n}"), score);
        r.annotator = who.into();
        r.context = ctx(n);
        PreferenceRecord::Rating(r)
    }

    /// Three annotators on seven pair units, two (plus one) on two thumbs
    /// units, and records that must be left out or overridden.
    fn fixture() -> Vec<PreferenceRecord> {
        use Label::{First as F, Second as S, Tie as T};
        let mut out = vec![
            judged("alice", 1, F, false),
            judged("bob", 1, F, true),
            judged("carol", 1, F, false),
            judged("alice", 2, F, false),
            judged("bob", 2, S, true),
            judged("carol", 2, F, false),
            judged("alice", 3, S, false),
            judged("bob", 3, S, false),
            judged("carol", 3, S, true),
            judged("bob", 4, S, false),
            judged("alice", 5, F, false),
            judged("carol", 5, T, false),
            judged("bob", 6, T, true),
            judged("carol", 6, T, false),
            judged("alice", 7, F, false),
            thumbs("alice", 8, RatingScore::ThumbsUp),
            thumbs("bob", 8, RatingScore::ThumbsUp),
            thumbs("dave", 8, RatingScore::ThumbsUp),
            thumbs("alice", 9, RatingScore::ThumbsDown),
            thumbs("bob", 9, RatingScore::ThumbsUp),
        ];
        // Alice changed her mind on unit 4: her newer answer (second) counts,
        // even though the older one comes later in the log.
        let mut newer = judged("alice", 4, S, true);
        if let PreferenceRecord::Pair(p) = &mut newer {
            p.created_at = T1.into();
        }
        out.insert(0, newer);
        out.push(judged("alice", 4, F, false));
        // Left out by default: an implicit pair and a judge.
        let mut implicit = judged("alice", 6, F, false);
        if let PreferenceRecord::Pair(p) = &mut implicit {
            p.implicit = true;
        }
        out.push(implicit);
        out.push(judged("judge:her-rm", 1, S, false));
        // Invalid: 9 stars.
        out.push(thumbs("erin", 1, RatingScore::Stars(9)));
        out
    }

    fn close(x: Option<f64>, expected: f64) -> bool {
        x.is_some_and(|x| (x - expected).abs() < 1e-12)
    }

    #[test]
    fn kappa_and_alpha_match_the_hand_computation() {
        let report = agreement_report(&fixture(), &AgreementOptions::default());
        assert_eq!(
            (
                report.excluded_implicit,
                report.excluded_judges,
                report.invalid
            ),
            (1, 1, 1)
        );
        let items: Vec<(&str, usize)> = report
            .annotators
            .iter()
            .map(|a| (a.annotator.as_str(), a.items))
            .collect();
        assert_eq!(items, [("alice", 8), ("bob", 7), ("carol", 5), ("dave", 1)]);
        assert_eq!(report.scales.len(), 2);

        // Pair units (F first, S second, T tie; - no label):
        //        u1 u2 u3 u4 u5 u6 u7
        // alice   F  F  S  S  F  -  F
        // bob     F  S  S  S  -  T  -
        // carol   F  F  S  -  T  T  -
        //
        // κ = (p_o − p_e) / (1 − p_e) on shared units:
        // alice/bob  u1–u4: p_o = 3/4; alice F2 S2, bob F1 S3:
        //   p_e = (2·1 + 2·3)/16 = 1/2;         κ = (1/4)/(1/2)   = 1/2
        // alice/carol u1,u2,u3,u5: p_o = 3/4; alice F3 S1, carol F2 S1 T1:
        //   p_e = (3·2 + 1·1)/16 = 7/16;        κ = (5/16)/(9/16) = 5/9
        // bob/carol  u1,u2,u3,u6: p_o = 3/4; bob F1 S2 T1, carol F2 S1 T1:
        //   p_e = (1·2 + 2·1 + 1·1)/16 = 5/16;  κ = (7/16)/(11/16) = 7/11
        //
        // α = 1 − (n − 1)·D / E over pairable units u1–u6 (u7 has one label):
        // n = 3+3+3+2+2+2 = 15 labels, n_F = 6, n_S = 6, n_T = 3.
        // D = Σ_u (m_u² − Σ_c n_uc²)/(m_u − 1): u2 (F,S,F) (9−5)/2 = 2,
        //   u5 (F,T) (4−2)/1 = 2, the rest 0: D = 4.
        // E = n² − Σ_c n_c² = 225 − (36+36+9) = 144.
        // α = 1 − 14·4/144 = 11/18.
        let pairs = &report.scales[0];
        assert_eq!(pairs.scale, Scale::Pair);
        assert_eq!((pairs.units, pairs.units_with_two_or_more), (7, 6));
        let kappas: Vec<(&str, &str, usize)> = pairs
            .pairs
            .iter()
            .map(|p| (p.a.as_str(), p.b.as_str(), p.shared))
            .collect();
        assert_eq!(
            kappas,
            [
                ("alice", "bob", 4),
                ("alice", "carol", 4),
                ("bob", "carol", 4)
            ]
        );
        assert!(close(pairs.pairs[0].kappa, 0.5));
        assert!(close(pairs.pairs[1].kappa, 5.0 / 9.0));
        assert!(close(pairs.pairs[2].kappa, 7.0 / 11.0));
        assert!(close(pairs.alpha, 11.0 / 18.0));

        // Thumbs: u8 up/up/up (alice, bob, dave), u9 down/up (alice, bob).
        // alice/bob: p_o = 1/2, alice U1 D1, bob U2: p_e = 2/4, κ = 0.
        // dave shares one unit with each: no κ.
        // α: n = 5, n_U = 4, n_D = 1; D = u9 (4−2)/1 = 2; E = 25 − 17 = 8;
        // α = 1 − 4·2/8 = 0.
        let thumbs = &report.scales[1];
        assert_eq!(thumbs.scale, Scale::Thumbs);
        assert_eq!((thumbs.units, thumbs.units_with_two_or_more), (2, 2));
        assert!(close(thumbs.pairs[0].kappa, 0.0));
        assert_eq!(
            (thumbs.pairs[1].b.as_str(), thumbs.pairs[1].shared),
            ("dave", 1)
        );
        assert_eq!(thumbs.pairs[1].kappa, None);
        assert_eq!(thumbs.pairs[2].kappa, None);
        assert!(close(thumbs.alpha, 0.0));
    }

    #[test]
    fn judges_and_implicit_records_can_be_included() {
        let options = AgreementOptions {
            include_judges: true,
            include_implicit: true,
        };
        let report = agreement_report(&fixture(), &options);
        assert_eq!((report.excluded_implicit, report.excluded_judges), (0, 0));
        assert!(
            report
                .render_text()
                .contains("\nRecords left out: 1 invalid.\n")
        );
        let pairs = &report.scales[0];
        assert!(
            pairs
                .annotators
                .iter()
                .any(|a| a.annotator == "judge:her-rm")
        );
        // alice now labels u6 too: alice/bob share five units.
        assert_eq!(pairs.pairs[0].shared, 5);
        assert_ne!(
            pairs.alpha,
            agreement_report(&fixture(), &AgreementOptions::default()).scales[0].alpha
        );
    }

    #[test]
    fn scales_and_layers_are_separate_units() {
        let up = thumbs("alice", 1, RatingScore::ThumbsUp);
        let stars = thumbs("bob", 1, RatingScore::Stars(4));
        let mut plan = thumbs("bob", 1, RatingScore::ThumbsUp);
        if let PreferenceRecord::Rating(r) = &mut plan {
            r.layer = RatedLayer::Plan;
        }
        let report = agreement_report(&[up, stars, plan], &AgreementOptions::default());
        let scales: Vec<(Scale, usize, usize)> = report
            .scales
            .iter()
            .map(|s| (s.scale, s.units, s.units_with_two_or_more))
            .collect();
        assert_eq!(scales, [(Scale::Thumbs, 2, 0), (Scale::Stars, 1, 0)]);
        assert!(report.scales.iter().all(|s| s.alpha.is_none()));
    }

    #[test]
    fn the_text_report_shows_every_number() {
        let text = agreement_report(&fixture(), &AgreementOptions::default()).render_text();
        let expected = "\
Inter-annotator agreement (nominal labels)
Records left out: 1 implicit, 1 by judge:*, 1 invalid.

annotator  items
alice          8
bob            7
carol          5
dave           1

Pairs (verdicts)
  annotator  items
  alice          6
  bob            5
  carol          5
  units: 7, labelled by 2 or more: 6
  Krippendorff's alpha: 0.611
  annotators     shared  Cohen's kappa
  alice / bob         4  0.500
  alice / carol       4  0.556
  bob / carol         4  0.636

Ratings (thumbs)
  annotator  items
  alice          2
  bob            2
  dave           1
  units: 2, labelled by 2 or more: 2
  Krippendorff's alpha: 0.000
  annotators    shared  Cohen's kappa
  alice / bob        2  0.000
  alice / dave       1  n/a (fewer than 2 shared items)
  bob / dave         1  n/a (fewer than 2 shared items)
";
        assert_eq!(text, expected);
        let empty = agreement_report(&[], &AgreementOptions::default()).render_text();
        assert!(empty.ends_with("\nNo records to compare.\n"), "{empty}");
    }
}
