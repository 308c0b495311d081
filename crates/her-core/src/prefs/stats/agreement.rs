//! Inter-annotator agreement: Cohen's kappa (two annotators, every item
//! labelled by both) and Krippendorff's alpha (any number of annotators,
//! missing labels allowed), both for nominal (unordered) categories.
//!
//! Labels are any `Eq + Hash` type: `&str`, `u32`, an enum, ...

use std::collections::HashMap;
use std::hash::Hash;

use crate::prefs::stats::{Result, StatsError};

/// Cohen's kappa: κ = (p_o − p_e) / (1 − p_e), where p_o is the observed
/// agreement and p_e the agreement expected from each annotator's own label
/// frequencies.
///
/// When both annotators gave every item one and the same label, p_e = 1 and
/// κ is 0/0; we return 1.0 there, since agreement is in fact perfect (p_o = 1
/// always holds in that case).
///
/// Errors: `LengthMismatch` if the slices differ in length, `Empty` if both
/// are empty.
pub fn cohen_kappa<L: Eq + Hash>(a: &[L], b: &[L]) -> Result<f64> {
    if a.len() != b.len() {
        return Err(StatsError::LengthMismatch {
            a: a.len(),
            b: b.len(),
        });
    }
    if a.is_empty() {
        return Err(StatsError::Empty);
    }
    // Integer counts so that p_e = 1 is detected exactly, not up to rounding.
    let mut margins: HashMap<&L, (u128, u128)> = HashMap::new();
    let mut agreements: u128 = 0;
    for (x, y) in a.iter().zip(b) {
        margins.entry(x).or_default().0 += 1;
        margins.entry(y).or_default().1 += 1;
        if x == y {
            agreements += 1;
        }
    }
    let n = a.len() as u128;
    let chance: u128 = margins.values().map(|&(ca, cb)| ca * cb).sum();
    // Multiply p_o and p_e through by n², leaving exact integers.
    let denominator = n * n - chance;
    if denominator == 0 {
        return Ok(1.0);
    }
    let numerator = (n * agreements) as f64 - chance as f64;
    Ok(numerator / denominator as f64)
}

/// Krippendorff's alpha for nominal data: α = 1 − D_o / D_e.
///
/// `units[u][c]` is coder `c`'s label for unit `u`, `None` if missing; rows
/// may differ in length (absent trailing coders count as missing). Units with
/// fewer than two labels are not pairable and are dropped, as the definition
/// requires. Computed from the coincidence matrix: a unit with m labels adds
/// 1/(m − 1) for each ordered pair of labels from different coders, so
///
/// α = 1 − (n − 1) · Σ_{c≠k} o_ck / Σ_{c≠k} n_c·n_k
///
/// with n the number of pairable labels and n_c the count of category c.
///
/// If every pairable label is the same category, D_e = 0 and α is 0/0; as
/// with [`cohen_kappa`] we return 1.0 (the coders never disagree).
///
/// Errors: `NoPairableValues` if no unit has two labels.
pub fn krippendorff_alpha_nominal<L: Eq + Hash>(units: &[Vec<Option<L>>]) -> Result<f64> {
    let mut totals: HashMap<&L, u128> = HashMap::new();
    let mut n: u128 = 0;
    // Σ_{c≠k} o_ck, the (scaled) observed disagreement.
    let mut disagreement = 0.0;
    let mut unit_counts: HashMap<&L, u128> = HashMap::new();
    for unit in units {
        unit_counts.clear();
        let mut m: u128 = 0;
        for label in unit.iter().flatten() {
            *unit_counts.entry(label).or_default() += 1;
            m += 1;
        }
        if m < 2 {
            continue;
        }
        // Ordered pairs with different labels: m² − Σ_c n_uc².
        let same: u128 = unit_counts.values().map(|&k| k * k).sum();
        disagreement += (m * m - same) as f64 / (m - 1) as f64;
        for (&label, &k) in &unit_counts {
            *totals.entry(label).or_default() += k;
        }
        n += m;
    }
    if n == 0 {
        return Err(StatsError::NoPairableValues);
    }
    let same_total: u128 = totals.values().map(|&k| k * k).sum();
    let expected = n * n - same_total;
    if expected == 0 {
        return Ok(1.0);
    }
    Ok(1.0 - (n - 1) as f64 * disagreement / expected as f64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Expands a contingency table of (label a, label b, count) into two
    /// label sequences.
    fn from_table<'a>(table: &[(&'a str, &'a str, usize)]) -> (Vec<&'a str>, Vec<&'a str>) {
        table
            .iter()
            .flat_map(|&(x, y, k)| std::iter::repeat_n((x, y), k))
            .unzip()
    }

    #[test]
    fn kappa_textbook_two_by_two() {
        // 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15.
        // p_o = 35/50 = 0.70; p_e = 0.5·0.6 + 0.5·0.4 = 0.50; κ = 0.40.
        let (a, b) = from_table(&[
            ("yes", "yes", 20),
            ("yes", "no", 5),
            ("no", "yes", 10),
            ("no", "no", 15),
        ]);
        assert!((cohen_kappa(&a, &b).unwrap() - 0.40).abs() < 1e-12);
    }

    #[test]
    fn kappa_perfect_chance_and_degenerate() {
        let a = [1u32, 2, 3, 1, 2, 3];
        assert_eq!(cohen_kappa(&a, &a).unwrap(), 1.0);
        // Independent margins (every cell equal): observed = chance, κ = 0.
        let (a, b) = from_table(&[("x", "x", 5), ("x", "y", 5), ("y", "x", 5), ("y", "y", 5)]);
        assert!(cohen_kappa(&a, &b).unwrap().abs() < 1e-12);
        // Systematic disagreement is below chance.
        assert_eq!(cohen_kappa(&["x", "y"], &["y", "x"]).unwrap(), -1.0);
        // One shared category everywhere: p_e = 1, documented as 1.0.
        assert_eq!(cohen_kappa(&["x"; 4], &["x"; 4]).unwrap(), 1.0);
        assert_eq!(cohen_kappa::<u8>(&[], &[]), Err(StatsError::Empty));
        assert_eq!(
            cohen_kappa(&[1], &[1, 2]),
            Err(StatsError::LengthMismatch { a: 1, b: 2 })
        );
    }

    /// Coders as rows here (like the published table); transposed to units.
    fn units_from_coders(coders: &[[Option<u8>; 12]]) -> Vec<Vec<Option<u8>>> {
        (0..12)
            .map(|u| coders.iter().map(|c| c[u]).collect())
            .collect()
    }

    #[test]
    fn alpha_krippendorff_2011_nominal_example() {
        // Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability",
        // 4 observers × 12 units with missing data; nominal α = 0.743.
        const N: Option<u8> = None;
        let s = Some;
        let coders = [
            [
                s(1),
                s(2),
                s(3),
                s(3),
                s(2),
                s(1),
                s(4),
                s(1),
                s(2),
                N,
                N,
                N,
            ],
            [
                s(1),
                s(2),
                s(3),
                s(3),
                s(2),
                s(2),
                s(4),
                s(1),
                s(2),
                s(5),
                N,
                s(3),
            ],
            [
                N,
                s(3),
                s(3),
                s(3),
                s(2),
                s(3),
                s(4),
                s(2),
                s(2),
                s(5),
                s(1),
                N,
            ],
            [
                s(1),
                s(2),
                s(3),
                s(3),
                s(2),
                s(4),
                s(4),
                s(1),
                s(2),
                s(5),
                s(1),
                N,
            ],
        ];
        let alpha = krippendorff_alpha_nominal(&units_from_coders(&coders)).unwrap();
        assert!((alpha - 0.743).abs() < 5e-4, "{alpha}");
        // Exactly: n = 40 pairable values (unit 12 is dropped), Σ_{c≠k} o_ck = 8,
        // n_c = (9, 13, 10, 5, 3), Σ_{c≠k} n_c·n_k = 1216: α = 1 − 39·8/1216 = 113/152.
        assert!((alpha - 113.0 / 152.0).abs() < 1e-12);
        assert!((alpha - brute_force_alpha(&units_from_coders(&coders))).abs() < 1e-12);
    }

    #[test]
    fn alpha_krippendorff_2011_binary_example() {
        // Same paper, two observers, binary data, 10 units: α = 0.095.
        let a = [0u8, 1, 0, 0, 0, 0, 0, 0, 1, 0];
        let b = [1u8, 1, 1, 0, 0, 1, 0, 0, 0, 0];
        let units: Vec<_> = a
            .iter()
            .zip(&b)
            .map(|(&x, &y)| vec![Some(x), Some(y)])
            .collect();
        let alpha = krippendorff_alpha_nominal(&units).unwrap();
        // n = 20, 4 disagreeing units, n_0 = 14, n_1 = 6: α = 1 − 19·8/168.
        assert!((alpha - (1.0 - 19.0 * 8.0 / 168.0)).abs() < 1e-12);
        assert!((alpha - 0.095).abs() < 5e-4);
    }

    #[test]
    fn alpha_edge_cases() {
        let none: Vec<Vec<Option<&str>>> = vec![vec![Some("a"), None], vec![None, None]];
        assert_eq!(
            krippendorff_alpha_nominal(&none),
            Err(StatsError::NoPairableValues)
        );
        assert_eq!(
            krippendorff_alpha_nominal::<u8>(&[]),
            Err(StatsError::NoPairableValues)
        );
        let same = vec![vec![Some("a"), Some("a")], vec![Some("a"), None, Some("a")]];
        assert_eq!(krippendorff_alpha_nominal(&same).unwrap(), 1.0);
        let perfect = vec![vec![Some(1), Some(1)], vec![Some(2), Some(2), None]];
        assert_eq!(krippendorff_alpha_nominal(&perfect).unwrap(), 1.0);
    }

    /// Straight from the definition over pairable values, with no coincidence
    /// matrix: D_o averages disagreement over ordered within-unit pairs
    /// (weight 1/(m_u − 1)), D_e over all ordered pairs of pairable values.
    fn brute_force_alpha<L: Eq>(units: &[Vec<Option<L>>]) -> f64 {
        let pairable: Vec<Vec<&L>> = units
            .iter()
            .map(|u| u.iter().flatten().collect::<Vec<_>>())
            .filter(|v| v.len() >= 2)
            .collect();
        let all: Vec<&L> = pairable.iter().flatten().copied().collect();
        let n = all.len() as f64;
        let mut d_o = 0.0;
        for v in &pairable {
            for (i, x) in v.iter().enumerate() {
                for (j, y) in v.iter().enumerate() {
                    if i != j && x != y {
                        d_o += 1.0 / (v.len() - 1) as f64;
                    }
                }
            }
        }
        let mut d_e = 0.0;
        for (i, x) in all.iter().enumerate() {
            for (j, y) in all.iter().enumerate() {
                if i != j && x != y {
                    d_e += 1.0;
                }
            }
        }
        1.0 - (d_o / n) / (d_e / (n * (n - 1.0)))
    }

    /// Scott's pi from its own definition: chance agreement from the
    /// pooled label proportions of both coders.
    fn scotts_pi(a: &[u8], b: &[u8]) -> f64 {
        let n = a.len() as f64;
        let p_o = a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / n;
        let p_e: f64 = (0..=u8::MAX)
            .map(|c| {
                let k = a.iter().chain(b).filter(|&&x| x == c).count() as f64;
                (k / (2.0 * n)).powi(2)
            })
            .sum();
        (p_o - p_e) / (1.0 - p_e)
    }

    fn kappa_from_table(a: &[u8], b: &[u8]) -> f64 {
        let n = a.len() as f64;
        let mut t = [[0.0; 4]; 4];
        for (&x, &y) in a.iter().zip(b) {
            t[x as usize][y as usize] += 1.0;
        }
        let p_o: f64 = (0..4).map(|i| t[i][i]).sum::<f64>() / n;
        let p_e: f64 = (0..4)
            .map(|i| t[i].iter().sum::<f64>() * (0..4).map(|r| t[r][i]).sum::<f64>() / (n * n))
            .sum();
        (p_o - p_e) / (1.0 - p_e)
    }

    proptest! {
        #[test]
        fn alpha_matches_brute_force(
            units in prop::collection::vec(
                prop::collection::vec(prop::option::weighted(0.7, 0u8..4), 0..5), 1..15),
        ) {
            let fast = krippendorff_alpha_nominal(&units);
            let pairable: Vec<u8> = units.iter()
                .filter(|u| u.iter().flatten().count() >= 2)
                .flat_map(|u| u.iter().flatten().copied())
                .collect();
            if pairable.is_empty() {
                prop_assert_eq!(fast, Err(StatsError::NoPairableValues));
            } else if pairable.iter().all(|&x| x == pairable[0]) {
                prop_assert_eq!(fast, Ok(1.0));
            } else {
                prop_assert!((fast.unwrap() - brute_force_alpha(&units)).abs() < 1e-9);
            }
        }

        #[test]
        fn two_coders_alpha_is_small_sample_corrected_scotts_pi(
            pairs in prop::collection::vec((0u8..3, 0u8..3), 2..60),
        ) {
            let (a, b): (Vec<u8>, Vec<u8>) = pairs.iter().copied().unzip();
            prop_assume!(a.iter().chain(&b).any(|&x| x != a[0]));
            let units: Vec<_> = pairs.iter().map(|&(x, y)| vec![Some(x), Some(y)]).collect();
            let alpha = krippendorff_alpha_nominal(&units).unwrap();
            let pi = scotts_pi(&a, &b);
            // Exact relation: α = 1 − (1 − π)(2N − 1)/(2N), so α ≈ π for large N.
            let two_n = 2.0 * a.len() as f64;
            prop_assert!((alpha - (1.0 - (1.0 - pi) * (two_n - 1.0) / two_n)).abs() < 1e-9);
            prop_assert!((alpha - pi).abs() <= (1.0 - pi) / two_n + 1e-9);
        }

        #[test]
        fn kappa_matches_contingency_table_formula(
            pairs in prop::collection::vec((0u8..4, 0u8..4), 1..60),
        ) {
            let (a, b): (Vec<u8>, Vec<u8>) = pairs.iter().copied().unzip();
            let kappa = cohen_kappa(&a, &b).unwrap();
            let reference = kappa_from_table(&a, &b);
            if reference.is_finite() {
                prop_assert!((kappa - reference).abs() < 1e-9);
                // Symmetric in the two annotators.
                prop_assert!((kappa - cohen_kappa(&b, &a).unwrap()).abs() < 1e-12);
            } else {
                prop_assert_eq!(kappa, 1.0);
            }
        }
    }
}
