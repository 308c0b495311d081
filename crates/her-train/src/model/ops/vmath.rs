//! exp, max and sums written so the compiler turns them into vector code.
//!
//! `f32::exp` is a call into libm per element, and a plain `iter().sum()` or
//! `fold(max)` is a chain the compiler must keep in order, so neither
//! vectorizes. The softmax of the loss head alone takes ~100 M
//! exponentials per step; here each loop is branch-free over lanes.

/// Lanes of the partial sums and maxima (two AVX or four SSE registers).
const LANES: usize = 8;

/// e^x for f32, within 2 ulp of `f32::exp` on [−87, 88]; below that it
/// flushes to 0, above it saturates near f32::MAX (never inf or NaN for a
/// finite input; NaN stays NaN). Cody–Waite range reduction x = n·ln2 + r
/// with |r| ≤ ln2/2, then Cephes' degree-6 polynomial for e^r and 2^n from
/// the exponent bits.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Rounds to nearest for |v| < 2^22 without a call to round().
    const ROUND: f32 = 12_582_912.0;
    let input = x;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    let two_n = f32::from_bits(((n as i32 + 127) as u32) << 23);
    let y = e_r * two_n;
    // Below −87 the true value is subnormal or 0: flush it.
    if input < -87.0 { 0.0 } else { y }
}

/// The largest value (−∞ for an empty slice; NaNs are skipped).
pub fn max(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (m, &v) in lanes.iter_mut().zip(c) {
            *m = if v > *m { v } else { *m };
        }
    }
    let m = lanes.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    tail.iter().fold(m, |a, &b| a.max(b))
}

/// Replaces every x by e^(x − shift) and returns their sum (lanes summed
/// in f32, the lanes' totals in f64).
pub fn exp_shifted_sum(xs: &mut [f32], shift: f32) -> f64 {
    let mut lanes = [0f32; LANES];
    let mut chunks = xs.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (s, v) in lanes.iter_mut().zip(c.iter_mut()) {
            *v = exp(*v - shift);
            *s += *v;
        }
    }
    let mut total: f64 = lanes.iter().map(|&s| f64::from(s)).sum();
    for v in chunks.into_remainder() {
        *v = exp(*v - shift);
        total += f64::from(*v);
    }
    total
}

/// Σ e^(x − shift) without changing `xs`.
pub fn sum_exp_shifted(xs: &[f32], shift: f32) -> f64 {
    let mut lanes = [0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (s, &v) in lanes.iter_mut().zip(c) {
            *s += exp(v - shift);
        }
    }
    let total: f64 = lanes.iter().map(|&s| f64::from(s)).sum();
    total + tail.iter().map(|&v| f64::from(exp(v - shift))).sum::<f64>()
}

/// Replaces every x by scale · e^(x − shift).
pub fn exp_shifted_scaled(xs: &mut [f32], shift: f32, scale: f32) {
    for v in xs {
        *v = exp(*v - shift) * scale;
    }
}

/// The logistic function 1 / (1 + e^−x).
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_is_within_two_ulp_of_libm_over_its_range() {
        let mut worst = 0;
        let mut x = -87.0f32;
        while x <= 88.0 {
            worst = worst.max(ulps(exp(x), x.exp()));
            x += 0.000_37;
        }
        assert!(worst <= 2, "worst error {worst} ulp");
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn exp_flushes_below_and_saturates_above_its_range() {
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(200.0).is_finite() && exp(200.0) > 1e38);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn max_and_sums_match_plain_loops_at_every_tail_length() {
        for n in 0..21 {
            let xs: Vec<f32> = (0..n)
                .map(|i| ((i * 7919) % 23) as f32 / 5.0 - 2.0)
                .collect();
            let plain_max = xs.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            assert_eq!(max(&xs), plain_max);
            let want: f64 = xs.iter().map(|&v| f64::from((v - 1.5).exp())).sum();
            assert!((sum_exp_shifted(&xs, 1.5) - want).abs() <= 1e-5 * want.max(1.0));
            let mut ys = xs.clone();
            assert!((exp_shifted_sum(&mut ys, 1.5) - want).abs() <= 1e-5 * want.max(1.0));
            for (y, x) in ys.iter().zip(&xs) {
                assert!(ulps(*y, (x - 1.5).exp()) <= 2);
            }
            exp_shifted_scaled(&mut ys, 0.0, 0.5);
        }
    }
}
