//! The fixtures' normal draws, on the workspace's one generator
//! (`her_core::rng`). Their Box–Muller takes both uniforms in (0, 1], unlike
//! the trainer's `SplitMix64::normal`; kept as it was so the tiny model's
//! weights, which the tests' expectations were set on, stay the same.

use her_core::rng::SplitMix64;

pub(crate) trait FixtureDraws {
    /// `n` values ~ N(mean, std).
    fn normal_vec(&mut self, n: usize, mean: f32, std: f32) -> Vec<f32>;
}

impl FixtureDraws for SplitMix64 {
    fn normal_vec(&mut self, n: usize, mean: f32, std: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let u1 = unit_open0(self);
                let u2 = unit_open0(self);
                let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                mean + std * z as f32
            })
            .collect()
    }
}

/// Uniform in (0, 1]: never 0, so `ln` is finite.
fn unit_open0(rng: &mut SplitMix64) -> f64 {
    ((rng.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
}
