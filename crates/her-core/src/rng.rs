//! The one seeded PRNG of the workspace: splitmix64 for seeding, keyed
//! streams, hashing-style rolls and simple draws (LoRA init, dropout, data
//! shuffles, fixtures, lore rolls), and xoshiro256** seeded from it for long
//! streams (bootstrap resampling).
//!
//! Our own code rather than a crate so that a seed gives the same numbers on
//! every platform and forever, independent of dependency updates: trained
//! adapters, shuffles and confidence intervals can be reproduced. Not
//! cryptographic.

/// splitmix64's output function applied to `state` advanced by one step:
/// the first number of a [`SplitMix64`] seeded with `state`. Used alone as a
/// good 64-bit mixer (each input maps to a distinct output).
pub fn mix(state: u64) -> u64 {
    let mut z = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform number in [0, 1) from the top 53 bits of `bits` (the full f64
/// mantissa).
pub fn unit_from_bits(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// splitmix64 (Steele, Lea & Flood 2014).
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A stream keyed by several values (each mixed in turn), so a draw
    /// depends on what it is for (seed, step, layer, ...) and never on
    /// thread scheduling or on how many draws happened elsewhere.
    pub fn keyed(keys: &[u64]) -> Self {
        let state = keys
            .iter()
            .fold(0x005E_ED0F_4E55_u64, |state, &k| mix(state ^ k));
        Self::new(state)
    }

    pub fn next_u64(&mut self) -> u64 {
        let out = mix(self.state);
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        out
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        unit_from_bits(self.next_u64())
    }

    /// Uniform in [−bound, bound).
    pub fn uniform(&mut self, bound: f64) -> f64 {
        (2.0 * self.unit() - 1.0) * bound
    }

    /// Standard normal (Box–Muller, one value per call).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]: ln stays finite
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// xoshiro256** (Blackman & Vigna 2018): fast, 256-bit state, good enough
/// statistical quality for resampling.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// Seeds the state from splitmix64. splitmix64's output function is a
    /// bijection over distinct states, so at most one of the four words can be
    /// zero and the forbidden all-zero state never occurs.
    pub fn seed_from_u64(seed: u64) -> Self {
        let mut sm = SplitMix64::new(seed);
        Self {
            s: [sm.next_u64(), sm.next_u64(), sm.next_u64(), sm.next_u64()],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let [s0, s1, s2, s3] = &mut self.s;
        let result = s1.wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = *s1 << 17;
        *s2 ^= *s0;
        *s3 ^= *s1;
        *s1 ^= *s2;
        *s0 ^= *s3;
        *s2 ^= t;
        *s3 = s3.rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 random bits (the full f64 mantissa).
    pub fn next_f64(&mut self) -> f64 {
        unit_from_bits(self.next_u64())
    }

    /// Uniform integer in `0..bound`; returns 0 when `bound` is 0.
    ///
    /// Lemire's multiply-and-reject method: unbiased (a plain `% bound` would
    /// favour small indices) and usually needs a single draw.
    pub fn below(&mut self, bound: usize) -> usize {
        let bound = bound as u64;
        if bound == 0 {
            return 0;
        }
        let mut m = u128::from(self.next_u64()) * u128::from(bound);
        if (m as u64) < bound {
            // 2^64 mod bound: low words below this fall in the biased zone.
            let threshold = bound.wrapping_neg() % bound;
            while (m as u64) < threshold {
                m = u128::from(self.next_u64()) * u128::from(bound);
            }
        }
        (m >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_reference_vector() {
        // Published reference output for seed 1234567.
        let mut sm = SplitMix64::new(1_234_567);
        let got: Vec<u64> = (0..5).map(|_| sm.next_u64()).collect();
        assert_eq!(
            got,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423,
                4_593_380_528_125_082_431,
                16_408_922_859_458_223_821,
            ]
        );
    }

    #[test]
    fn xoshiro256starstar_matches_reference_vector() {
        // Reference C implementation started from state {1, 2, 3, 4}.
        let mut rng = Rng { s: [1, 2, 3, 4] };
        let got: Vec<u64> = (0..6).map(|_| rng.next_u64()).collect();
        assert_eq!(
            got,
            [
                11_520,
                0,
                1_509_978_240,
                1_215_971_899_390_074_240,
                1_216_172_134_540_287_360,
                607_988_272_756_665_600,
            ]
        );
    }

    #[test]
    fn same_seed_same_stream_different_seed_different_stream() {
        let draw = |seed| {
            let mut r = Rng::seed_from_u64(seed);
            (0..8).map(|_| r.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(42), draw(42));
        assert_ne!(draw(42), draw(43));
        // Seeding path cross-checked with an independent Python implementation.
        assert_eq!(
            draw(42)[..3],
            [
                1_546_998_764_402_558_742,
                6_990_951_692_964_543_102,
                12_544_586_762_248_559_009
            ]
        );
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = Rng::seed_from_u64(7);
        let mut seen = [0usize; 7];
        for _ in 0..7_000 {
            let k = rng.below(7);
            assert!(k < 7);
            seen[k] += 1;
        }
        // Each bucket expects 1000; 800 is > 6 standard deviations away.
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
        assert_eq!(rng.below(0), 0);
        assert_eq!(rng.below(1), 0);
    }

    #[test]
    fn next_f64_is_in_unit_interval() {
        let mut rng = Rng::seed_from_u64(1);
        let xs: Vec<f64> = (0..10_000).map(|_| rng.next_f64()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }

    #[test]
    fn mix_is_the_first_draw_of_a_stream_seeded_with_its_input() {
        for seed in [0, 1, 1_234_567, u64::MAX] {
            assert_eq!(mix(seed), SplitMix64::new(seed).next_u64());
        }
    }

    #[test]
    fn keyed_streams_differ_per_key_and_repeat_per_seed() {
        let a = SplitMix64::keyed(&[1, 2, 3]).next_u64();
        assert_eq!(a, SplitMix64::keyed(&[1, 2, 3]).next_u64());
        assert_ne!(a, SplitMix64::keyed(&[1, 2, 4]).next_u64());
        assert_ne!(a, SplitMix64::keyed(&[2, 1, 3]).next_u64());
    }

    #[test]
    fn uniform_stays_in_bounds_and_centres() {
        let mut r = SplitMix64::new(9);
        let xs: Vec<f64> = (0..10_000).map(|_| r.uniform(0.5)).collect();
        assert!(xs.iter().all(|x| (-0.5..0.5).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.02, "mean {mean}");
    }
}
