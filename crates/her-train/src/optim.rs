//! AdamW with its moments in the open (so a checkpoint can hold them and a
//! resumed run continues exactly), gradient accumulation, global-norm
//! clipping, and a warm-up + cosine learning-rate schedule.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: 2e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Linear warm-up to `peak`, then cosine decay to `peak · floor` at `total`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub peak: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
    /// Final learning rate as a fraction of the peak.
    pub floor: f64,
}

impl Schedule {
    /// Learning rate for optimizer step `step` (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let t = ((step - self.warmup_steps) as f64 / decay as f64).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * t).cos());
        self.peak * (self.floor + (1.0 - self.floor) * cosine)
    }
}

/// Named trainable parameters with their AdamW moments.
pub struct AdamW {
    pub config: AdamWConfig,
    params: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Optimizer steps taken.
    pub steps: u64,
}

impl AdamW {
    pub fn new(params: Vec<(String, Var)>, config: AdamWConfig) -> Result<Self> {
        let zeros = |p: &Var| p.as_tensor().zeros_like();
        let m = params
            .iter()
            .map(|(_, p)| zeros(p))
            .collect::<Result<_>>()?;
        let v = params
            .iter()
            .map(|(_, p)| zeros(p))
            .collect::<Result<_>>()?;
        Ok(Self {
            config,
            params,
            m,
            v,
            steps: 0,
        })
    }

    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    /// One update with the (accumulated, clipped) gradients and this `lr`.
    pub fn step(&mut self, grads: &Accumulator, lr: f64) -> Result<()> {
        self.steps += 1;
        let c = self.config;
        let t = self.steps as i32;
        let correct1 = 1.0 - c.beta1.powi(t);
        let correct2 = 1.0 - c.beta2.powi(t);
        for (i, (_, param)) in self.params.iter().enumerate() {
            let Some(g) = grads.get(i) else { continue };
            let m = ((&self.m[i] * c.beta1)? + (g * (1.0 - c.beta1))?)?;
            let v = ((&self.v[i] * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let m_hat = (&m / correct1)?;
            let v_hat = (&v / correct2)?;
            let update = (m_hat / (v_hat.sqrt()? + c.eps)?)?;
            let decayed = (param.as_tensor() * (1.0 - lr * c.weight_decay))?;
            param.set(&(decayed - (update * lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// Moments as named tensors, for a checkpoint.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, (name, _)) in self.params.iter().enumerate() {
            out.insert(format!("{name}.exp_avg"), self.m[i].clone());
            out.insert(format!("{name}.exp_avg_sq"), self.v[i].clone());
        }
        out
    }

    /// Restores moments saved by [`AdamW::state`]; a missing one is an error.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, steps: u64) -> Result<()> {
        for (i, (name, _)) in self.params.iter().enumerate() {
            let get = |suffix: &str| {
                state
                    .get(&format!("{name}.{suffix}"))
                    .cloned()
                    .ok_or_else(|| {
                        candle_core::Error::Msg(format!("optimizer state has no '{name}.{suffix}'"))
                    })
            };
            self.m[i] = get("exp_avg")?;
            self.v[i] = get("exp_avg_sq")?;
        }
        self.steps = steps;
        Ok(())
    }
}

/// Gradients summed over the micro-batches of one optimizer step.
pub struct Accumulator {
    grads: Vec<Option<Tensor>>,
}

impl Accumulator {
    pub fn new(n: usize) -> Self {
        Self {
            grads: vec![None; n],
        }
    }

    /// Adds `weight ×` this micro-batch's gradients of `params`.
    pub fn add(&mut self, params: &[(String, Var)], store: &GradStore, weight: f64) -> Result<()> {
        for (slot, (_, p)) in self.grads.iter_mut().zip(params) {
            let Some(g) = store.get(p.as_tensor()) else {
                continue;
            };
            let g = (g * weight)?;
            *slot = Some(match slot.take() {
                Some(sum) => (sum + g)?,
                None => g,
            });
        }
        Ok(())
    }

    fn get(&self, i: usize) -> Option<&Tensor> {
        self.grads.get(i).and_then(Option::as_ref)
    }

    /// Parameters that got no gradient at all (a broken backward would show here).
    pub fn missing(&self, params: &[(String, Var)]) -> Vec<String> {
        params
            .iter()
            .zip(&self.grads)
            .filter(|(_, g)| g.is_none())
            .map(|((name, _), _)| name.clone())
            .collect()
    }

    /// Each parameter's summed gradient (`None`: it got none), in the
    /// order of the parameters.
    pub fn tensors(&self) -> &[Option<Tensor>] {
        &self.grads
    }

    /// The global L2 norm of all gradients: NaN or infinite when any
    /// gradient is (or when squares overflow f32, which no sane step reaches).
    pub fn norm(&self) -> Result<f64> {
        let mut total = 0.0;
        for g in self.grads.iter().flatten() {
            total += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
        Ok(total.sqrt())
    }

    /// Scales all gradients so their global L2 norm, `norm` (see
    /// [`Accumulator::norm`]), is at most `max_norm` (0 = no clipping).
    pub fn clip_to(&mut self, max_norm: f64, norm: f64) -> Result<()> {
        if max_norm > 0.0 && norm > max_norm {
            let scale = max_norm / (norm + 1e-6);
            for g in self.grads.iter_mut().flatten() {
                *g = (&*g * scale)?;
            }
        }
        Ok(())
    }

    /// Scales all gradients so their global L2 norm is at most `max_norm`;
    /// returns the norm before clipping.
    pub fn clip(&mut self, max_norm: f64) -> Result<f64> {
        let norm = self.norm()?;
        self.clip_to(max_norm, norm)?;
        Ok(norm)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn schedule_warms_up_then_decays_to_the_floor() {
        let s = Schedule {
            peak: 1e-3,
            warmup_steps: 4,
            total_steps: 14,
            floor: 0.1,
        };
        assert!((s.lr(0) - 2.5e-4).abs() < 1e-12);
        assert!((s.lr(3) - 1e-3).abs() < 1e-12);
        assert!((s.lr(4) - 1e-3).abs() < 1e-12);
        assert!((s.lr(9) - 0.55e-3).abs() < 1e-12);
        assert!((s.lr(14) - 1e-4).abs() < 1e-12);
        assert!((s.lr(100) - 1e-4).abs() < 1e-12);
    }

    #[test]
    fn adamw_minimises_a_quadratic_and_its_state_round_trips() {
        let dev = Device::Cpu;
        let x = Var::from_slice(&[3.0f32, -2.0], 2, &dev).unwrap();
        let params = vec![("x".to_string(), x.clone())];
        let mut opt = AdamW::new(params.clone(), AdamWConfig::default()).unwrap();
        for _ in 0..300 {
            let loss = x.as_tensor().sqr().unwrap().sum_all().unwrap();
            let store = loss.backward().unwrap();
            let mut acc = Accumulator::new(1);
            acc.add(&params, &store, 1.0).unwrap();
            assert!(acc.missing(&params).is_empty());
            opt.step(&acc, 0.05).unwrap();
        }
        let v: Vec<f32> = x.as_tensor().to_vec1().unwrap();
        assert!(v.iter().all(|x| x.abs() < 0.05), "{v:?}");
        let state = opt.state();
        let mut fresh = AdamW::new(params, AdamWConfig::default()).unwrap();
        fresh.load_state(&state, opt.steps).unwrap();
        assert_eq!(fresh.steps, 300);
    }

    #[test]
    fn clipping_bounds_the_global_norm() {
        let dev = Device::Cpu;
        let x = Var::from_slice(&[3.0f32, 4.0], 2, &dev).unwrap();
        let params = vec![("x".to_string(), x.clone())];
        let loss = (x.as_tensor() * 0.5)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap();
        let store = loss.backward().unwrap();
        let mut acc = Accumulator::new(1);
        acc.add(&params, &store, 2.0).unwrap();
        // d/dx (x/2)^2 = x/2 → (1.5, 2), ×2 → (3, 4): norm 5.
        let before = acc.clip(1.0).unwrap();
        assert!((before - 5.0).abs() < 1e-5);
        assert!((acc.clip(0.0).unwrap() - 1.0).abs() < 1e-4);
    }
}
