//! Softplus and log-sigmoid that neither overflow nor lose their gradient
//! for large arguments. `log(1 + eˣ)` written directly overflows once x
//! passes ~88 in f32 (summed log-probs of long replies, times β, get
//! there), and the backward of `1 / (1 + eˣ)` is then ∞ · 0 = NaN.
//!
//! softplus(x) = max(x, 0) + log(1 + e^−|x|): the exponential is at most 1.
//! The max and |x| are taken with constant 0/1 masks computed from the
//! values, so autograd sees only products, exp and log, and the gradient at
//! x = 0 is σ(0) = ½ (a max/abs op's subgradient there would give 0 or 1).
//! `log(1 + y)` for y = e^−|x| ≤ 1 loses only y's digits below f32's
//! precision: an absolute error below 6e-8, and none in the gradient.

use candle_core::{Result, Tensor};

/// log(1 + eˣ), elementwise, with its gradient σ(x).
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    let values = x.flatten_all()?.to_vec1::<f32>()?;
    // The x ≥ 0 branch: x + log(1 + e^−x); the other: log(1 + eˣ).
    let positive: Vec<f32> = values
        .iter()
        .map(|v| if *v >= 0.0 { 1.0 } else { 0.0 })
        .collect();
    let sign: Vec<f32> = positive.iter().map(|p| 2.0 * p - 1.0).collect();
    let positive = Tensor::from_vec(positive, x.shape(), x.device())?;
    let sign = Tensor::from_vec(sign, x.shape(), x.device())?;
    let minus_abs = x.mul(&sign)?.neg()?;
    x.mul(&positive)? + (minus_abs.exp()? + 1.0)?.log()?
}

/// log σ(x) = −softplus(−x).
pub fn log_sigmoid(x: &Tensor) -> Result<Tensor> {
    softplus(&x.neg()?)?.neg()
}

/// σ(x) = exp(log σ(x)): never 0/0 or ∞/∞, in value or gradient.
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    log_sigmoid(x)?.exp()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn values_and_grads(f: fn(&Tensor) -> Result<Tensor>, xs: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let x = Var::from_slice(xs, xs.len(), &Device::Cpu).unwrap();
        let y = f(x.as_tensor()).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        (
            y.to_vec1().unwrap(),
            g.get(x.as_tensor()).unwrap().to_vec1().unwrap(),
        )
    }

    fn sigma(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    #[test]
    fn softplus_matches_its_definition_and_its_limits() {
        let xs = [-1e4f32, -100.0, -20.0, -1.5, 0.0, 0.3, 20.0, 100.0, 1e4];
        let (v, g) = values_and_grads(softplus, &xs);
        for ((x, v), g) in xs.iter().zip(&v).zip(&g) {
            let x = f64::from(*x);
            // In f64: log1p(eˣ) is exact to the last bit in this range, or x itself.
            let want = if x > 30.0 { x } else { x.exp().ln_1p() };
            let tol = 1e-6 * want.abs().max(1.0);
            assert!(
                (f64::from(*v) - want).abs() <= tol,
                "softplus({x}) = {v}, want {want}"
            );
            assert!(
                (f64::from(*g) - sigma(x)).abs() < 1e-6,
                "softplus'({x}) = {g}"
            );
        }
        // At 0 the gradient is σ(0) = ½, not a max's subgradient.
        assert_eq!(g[4], 0.5);
    }

    #[test]
    fn sigmoid_and_log_sigmoid_stay_finite_at_extreme_arguments() {
        let close = |got: &[f32], want: &[f64]| {
            got.iter()
                .zip(want)
                .all(|(g, w)| (f64::from(*g) - w).abs() <= 1e-6 * w.abs().max(1.0))
        };
        let xs = [-1e4f32, -90.0, 0.0, 90.0, 1e4];
        let (v, g) = values_and_grads(log_sigmoid, &xs);
        let ln2 = std::f64::consts::LN_2;
        assert!(close(&v, &[-1e4, -90.0, -ln2, 0.0, 0.0]), "{v:?}");
        // d/dx log σ(x) = σ(−x): 1 far left, 0 far right.
        assert!(close(&g, &[1.0, 1.0, 0.5, 0.0, 0.0]), "{g:?}");
        let (v, g) = values_and_grads(sigmoid, &xs);
        assert!(close(&v, &[0.0, 0.0, 0.5, 1.0, 1.0]), "{v:?}");
        // σ' = σ(1 − σ).
        assert!(close(&g, &[0.0, 0.0, 0.25, 0.0, 0.0]), "{g:?}");
    }
}
