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
