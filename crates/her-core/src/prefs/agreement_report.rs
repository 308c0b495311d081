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
mod tests;
