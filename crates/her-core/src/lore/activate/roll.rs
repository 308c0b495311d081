//! Seeded dice for probability and inclusion-group rolls. SillyTavern uses
//! `Math.random()`; here every roll is a hash of the session's seed, the
//! message count and what is rolled for, so a reload, a resume or a second
//! look with `/lore` gives the same answer, while a new message rolls anew.

use crate::rng::{mix, unit_from_bits};

/// A uniform number in [0, 1) from `seed` and the parts naming the roll.
pub fn unit(seed: u64, parts: &[u64]) -> f64 {
    let h = parts.iter().fold(mix(seed), |h, &p| mix(h ^ p));
    unit_from_bits(h)
}

/// A stable number for a text (FNV-1a), to name rolls by book or group.
pub fn text_id(text: &str) -> u64 {
    crate::hashing::fnv1a64(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolls_are_stable_and_spread() {
        assert_eq!(unit(7, &[1, 2]), unit(7, &[1, 2]));
        assert_ne!(unit(7, &[1, 2]), unit(7, &[2, 1]));
        assert_ne!(unit(7, &[1, 2]), unit(8, &[1, 2]));
        let n = 10_000;
        let below_half = (0..n).filter(|&i| unit(42, &[i]) < 0.5).count();
        assert!((4_700..5_300).contains(&below_half), "{below_half}");
        assert!((0..n).all(|i| (0.0..1.0).contains(&unit(3, &[i]))));
        assert_ne!(text_id("a"), text_id("b"));
    }
}
