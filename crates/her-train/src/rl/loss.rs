//! The GRPO-family objective: advantages normalised within a group of
//! replies to one prompt, a PPO-clipped policy-gradient term per token and
//! a per-token KL penalty to the reference, averaged over every completion
//! token of the step (DAPO's token-level mean, so long replies are not
//! down-weighted).

use candle_core::{Result, Tensor};

use crate::model::IGNORE_LABEL;

/// Rewards of one group → advantages: minus the group mean, divided by the
/// group's (sample) standard deviation when `scale` (GRPO); a group whose
/// rewards are all equal teaches nothing and gets zeros.
pub fn group_advantages(rewards: &[f64], scale: bool) -> Vec<f64> {
    let n = rewards.len();
    if n < 2 {
        return vec![0.0; n];
    }
    let mean = rewards.iter().sum::<f64>() / n as f64;
    let var = rewards.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let std = var.sqrt();
    if std < 1e-12 {
        return vec![0.0; n];
    }
    rewards
        .iter()
        .map(|r| {
            if scale {
                (r - mean) / (std + 1e-4)
            } else {
                r - mean
            }
        })
        .collect()
}

/// Sums over one micro-batch, added up over the step by the caller.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ObjectiveSums {
    /// Σ over tokens of min(r·A, clip(r)·A).
    pub surrogate: f64,
    /// Σ over tokens of the k3 KL estimate.
    pub kl: f64,
    /// Tokens whose ratio was clipped (no gradient through them).
    pub clipped: usize,
    pub tokens: usize,
    /// The largest |ratio − 1| of any token: exactly 0 on the first pass,
    /// where the policy is the one that sampled.
    pub max_ratio_deviation: f64,
}

impl ObjectiveSums {
    pub fn add(&mut self, o: &ObjectiveSums) {
        self.surrogate += o.surrogate;
        self.kl += o.kl;
        self.clipped += o.clipped;
        self.tokens += o.tokens;
        self.max_ratio_deviation = self.max_ratio_deviation.max(o.max_ratio_deviation);
    }
}

/// What the policy term needs besides the current log-probs; all flat
/// (rows × cols) like the batch, except `advantages` (one per row).
pub struct ObjectiveInputs<'a> {
    pub labels: &'a [i64],
    /// Log-probs of the policy that sampled (before this step's updates).
    pub old: &'a [f32],
    /// Log-probs of the reference (the starting adapter, or the base).
    pub reference: &'a [f32],
    pub advantages: &'a [f64],
    pub clip_epsilon: f64,
    pub kl_beta: f64,
    /// Completion tokens of the whole step: every micro-batch divides by it.
    pub step_tokens: usize,
}

/// The loss of one micro-batch (to back-propagate) and its sums.
/// `logp` is (rows, cols) from [`crate::model::TrainModel::token_logprobs`].
///
/// The clipped surrogate's gradient is A·∇r where the min picks r·A and zero
/// where it picks the clipped constant, so the loss is written as
/// −Σ r·A·flow with a 0/1 `flow` mask computed from the values: the same
/// gradient without an op (min, clamp) whose backward candle might lack.
pub fn micro_batch_loss(logp: &Tensor, x: &ObjectiveInputs<'_>) -> Result<(Tensor, ObjectiveSums)> {
    let (rows, cols) = logp.dims2()?;
    let n = rows * cols;
    if x.labels.len() != n
        || x.old.len() != n
        || x.reference.len() != n
        || x.advantages.len() != rows
    {
        candle_core::bail!("objective inputs do not match the ({rows}, {cols}) log-probs");
    }
    let values = logp.detach().flatten_all()?.to_vec1::<f32>()?;
    let (lo, hi) = (1.0 - x.clip_epsilon, 1.0 + x.clip_epsilon);
    let mut coef = vec![0f32; n];
    let mut mask = vec![0f32; n];
    let mut sums = ObjectiveSums::default();
    for i in 0..n {
        if x.labels[i] == IGNORE_LABEL {
            continue;
        }
        let a = x.advantages[i / cols];
        let r = f64::from(values[i] - x.old[i]).exp();
        sums.max_ratio_deviation = sums.max_ratio_deviation.max((r - 1.0).abs());
        let clipped = if a >= 0.0 { r > hi } else { r < lo };
        sums.surrogate += (r * a).min(r.clamp(lo, hi) * a);
        let d = f64::from(x.reference[i] - values[i]);
        sums.kl += d.exp() - d - 1.0;
        sums.tokens += 1;
        mask[i] = 1.0;
        if clipped && a != 0.0 {
            sums.clipped += 1;
        } else {
            coef[i] = a as f32;
        }
    }
    let device = logp.device();
    let shape = (rows, cols);
    let old = Tensor::from_slice(x.old, shape, device)?;
    let reference = Tensor::from_slice(x.reference, shape, device)?;
    let coef = Tensor::from_vec(coef, shape, device)?;
    let mask = Tensor::from_vec(mask, shape, device)?;
    let norm = 1.0 / x.step_tokens.max(1) as f64;
    let ratio = (logp - &old)?.exp()?;
    let policy = ((ratio * coef)?.sum_all()? * (-norm))?;
    // k3 = e^d − d − 1 with d = ref − logp: unbiased, never negative.
    let d = (&reference - logp)?;
    let k3 = ((d.exp()? - &d)? - 1.0)?;
    let kl = ((k3 * mask)?.sum_all()? * (x.kl_beta * norm))?;
    Ok(((policy + kl)?, sums))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn advantages_are_centred_and_scaled_within_the_group() {
        let a = group_advantages(&[1.0, 0.0, 0.0, 1.0], true);
        let std = (1.0f64 / 3.0).sqrt();
        for (got, want) in a.iter().zip([0.5, -0.5, -0.5, 0.5]) {
            assert!((got - want / (std + 1e-4)).abs() < 1e-12, "{a:?}");
        }
        assert_eq!(group_advantages(&[1.0, 0.0], false), vec![0.5, -0.5]);
        assert_eq!(group_advantages(&[0.3, 0.3, 0.3], true), vec![0.0; 3]);
        assert_eq!(group_advantages(&[0.3], true), vec![0.0]);
    }

    /// The hand-written loss has the gradient of the textbook objective
    /// −mean(min(r·A, clip(r)·A)) + β·mean(k3), checked against finite
    /// differences of that objective computed in f64.
    #[test]
    fn the_loss_gradient_matches_finite_differences_of_the_clipped_objective() {
        let labels = [5i64, 7, IGNORE_LABEL, 2, 3, 9];
        // Row 0 ratio e^{0.3} > 1.2 (clipped for A>0), row 1 mixed.
        let old = [-1.3f32, -0.7, 0.0, -2.0, -1.0, -0.5];
        let reference = [-1.1f32, -0.9, 0.0, -1.8, -1.2, -0.4];
        let start = [-1.0f32, -0.75, 0.0, -2.3, -0.95, -0.45];
        let advantages = [1.0f64, -0.8];
        let (eps, beta) = (0.2, 0.5);
        let inputs = ObjectiveInputs {
            labels: &labels,
            old: &old,
            reference: &reference,
            advantages: &advantages,
            clip_epsilon: eps,
            kl_beta: beta,
            step_tokens: 5,
        };
        let var = Var::from_slice(&start, (2, 3), &Device::Cpu).unwrap();
        let (loss, sums) = micro_batch_loss(var.as_tensor(), &inputs).unwrap();
        assert_eq!((sums.tokens, sums.clipped), (5, 2));
        let grads = loss.backward().unwrap();
        let g = grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();

        // (Σ surrogate, Σ k3) of the textbook objective.
        let parts = |lp: &[f64]| -> (f64, f64) {
            let (mut surrogate, mut kl) = (0.0, 0.0);
            for i in 0..6 {
                if labels[i] == IGNORE_LABEL {
                    continue;
                }
                let a = advantages[i / 3];
                let r = (lp[i] - f64::from(old[i])).exp();
                surrogate += (r * a).min(r.clamp(1.0 - eps, 1.0 + eps) * a);
                let d = f64::from(reference[i]) - lp[i];
                kl += d.exp() - d - 1.0;
            }
            (surrogate, kl)
        };
        let objective = |lp: &[f64]| -> f64 {
            let (surrogate, kl) = parts(lp);
            (-surrogate + beta * kl) / 5.0
        };
        let base: Vec<f64> = start.iter().map(|v| f64::from(*v)).collect();
        let (surrogate, kl) = parts(&base);
        assert!((sums.surrogate - surrogate).abs() < 1e-5 && (sums.kl - kl).abs() < 1e-5);
        let h = 1e-6;
        for i in 0..6 {
            let (mut up, mut down) = (base.clone(), base.clone());
            up[i] += h;
            down[i] -= h;
            let fd = (objective(&up) - objective(&down)) / (2.0 * h);
            assert!(
                (fd - f64::from(g[i])).abs() < 1e-4,
                "position {i}: fd {fd} vs {}",
                g[i]
            );
        }
        // At the reference and the sampling policy the KL and its gradient vanish.
        assert!(sums.kl > 0.0);
    }
}
