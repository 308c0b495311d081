//! The trainer's side of `her bench attention`: one decoder layer of a
//! mid-size Qwen3-like shape, forward and backward at one sequence length,
//! and the memory that took. The app runs each length in its own child
//! process (a process's peak RSS only grows) and compares them.
//!
//! The layer is made of the trainer's own ops, as `Block` chains them:
//! RMSNorm, the seven frozen projections each with a LoRA branch, q/k
//! norm, rope, causal attention (the fused CPU op or the portable tiled
//! one), SiLU·up and both residuals. Weights are random: memory and time do
//! not depend on their values.

use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::bench::BenchError;
use crate::model::FrozenWeight;
use crate::model::ops::{CausalAttention, RmsNorm, Rope, RopeStyle, SiluMul};
use crate::model::portable::attention::causal_attention;
use crate::run::memory_mib;
use her_core::rng::SplitMix64;

/// Which attention the layer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kernels {
    /// The fused CPU op (`model::ops::CausalAttention`).
    Fused,
    /// The portable op in candle tensor ops (`model::portable::attention`).
    Portable,
}

impl Kernels {
    pub fn name(self) -> &'static str {
        match self {
            Kernels::Fused => "fused",
            Kernels::Portable => "portable",
        }
    }
}

/// The layer's sizes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct LayerShape {
    pub n_embd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub lora_rank: usize,
}

impl LayerShape {
    /// A mid-size Qwen3-like layer with LoRA r 16 on all seven projections.
    pub fn qwen3_mid() -> Self {
        Self {
            n_embd: 1024,
            n_head: 16,
            n_head_kv: 8,
            head_dim: 128,
            n_ff: 3072,
            lora_rank: 16,
        }
    }
}

/// One length's figures, printed by the child as one JSON line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerRun {
    pub t: usize,
    pub kernels: Kernels,
    /// Resident memory once the weights exist, before the forward (MiB).
    pub rss_before_mib: f64,
    /// The process's peak resident memory after the backward (MiB).
    pub peak_mib: f64,
    /// Forward plus backward, wall clock.
    pub seconds: f64,
}

impl LayerRun {
    /// What forward and backward added on top of the weights (MiB).
    pub fn added_mib(&self) -> f64 {
        self.peak_mib - self.rss_before_mib
    }
}

/// A frozen projection with its LoRA factors.
struct Projection {
    weight: FrozenWeight,
    a: Var,
    b: Var,
    scale: f64,
}

impl Projection {
    fn random(
        n_in: usize,
        n_out: usize,
        rank: usize,
        rng: &mut SplitMix64,
    ) -> Result<Self, BenchError> {
        let normal = |n: usize, std: f64, rng: &mut SplitMix64| -> Vec<f32> {
            (0..n).map(|_| (rng.normal() * std) as f32).collect()
        };
        let dev = Device::Cpu;
        let std = 1.0 / (n_in as f64).sqrt();
        let weight = Tensor::from_vec(normal(n_out * n_in, std, rng), (n_out, n_in), &dev)?;
        let a = Tensor::from_vec(normal(rank * n_in, std, rng), (rank, n_in), &dev)?;
        let b = Tensor::from_vec(normal(n_out * rank, 0.01, rng), (n_out, rank), &dev)?;
        Ok(Self {
            weight: FrozenWeight::Dense(weight),
            a: Var::from_tensor(&a)?,
            b: Var::from_tensor(&b)?,
            scale: 2.0,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, BenchError> {
        let op = crate::model::lora_linear::LoraLinear::new(self.weight.clone(), self.scale, None);
        Ok(op.forward(x, self.a.as_tensor(), self.b.as_tensor())?)
    }
}

/// Builds the layer, then runs forward and backward once over `t`
/// positions (batch 1, no checkpointing) and reads the process's memory.
pub fn run_layer(
    shape: LayerShape,
    t: usize,
    kernels: Kernels,
    seed: u64,
) -> Result<LayerRun, BenchError> {
    let LayerShape {
        n_embd: e,
        n_head: nh,
        n_head_kv: nkv,
        head_dim: d,
        n_ff: f,
        lora_rank: r,
    } = shape;
    let mut rng = SplitMix64::new(seed);
    let [q, k, v, o, gate, up, down] = [
        (e, nh * d),
        (e, nkv * d),
        (e, nkv * d),
        (nh * d, e),
        (e, f),
        (e, f),
        (f, e),
    ]
    .map(|(n_in, n_out)| Projection::random(n_in, n_out, r, &mut rng));
    let (q, k, v, o, gate, up, down) = (q?, k?, v?, o?, gate?, up?, down?);
    let norm = |n: usize| RmsNorm::new(vec![1.0; n], 1e-6);
    let (attn_norm, ffn_norm, q_norm, k_norm) = (norm(e)?, norm(e)?, norm(d)?, norm(d)?);
    let rope = Rope::new(RopeStyle::Neox, d, t, 1e6);
    let scale = 1.0 / (d as f32).sqrt();
    let x: Vec<f32> = (0..t * e).map(|_| rng.normal() as f32).collect();
    let x = Var::from_tensor(&Tensor::from_vec(x, (t, e), &Device::Cpu)?)?;

    let (rss_before_mib, _) = memory_mib();
    let start = Instant::now();
    let h = attn_norm.forward(&x)?;
    let qh = q_norm.forward(&q.forward(&h)?.reshape((1, t, nh, d))?)?;
    let kh = k_norm.forward(&k.forward(&h)?.reshape((1, t, nkv, d))?)?;
    let vh = v.forward(&h)?.reshape((1, t, nkv, d))?;
    let (qh, kh) = (rope.forward(&qh)?, rope.forward(&kh)?);
    let ctx = match kernels {
        Kernels::Fused => CausalAttention::new(scale).forward(&qh, &kh, &vh)?,
        Kernels::Portable => causal_attention(&qh, &kh, &vh, scale, None)?,
    };
    let x1 = (x.as_tensor() + o.forward(&ctx)?)?;
    let h = ffn_norm.forward(&x1)?;
    let act = SiluMul::forward(&gate.forward(&h)?, &up.forward(&h)?)?;
    let out = (x1 + down.forward(&act)?)?;
    let grads = out.sum_all()?.backward()?;
    let seconds = start.elapsed().as_secs_f64();
    let (_, peak_mib) = memory_mib();
    if [&q, &k, &v, &o, &gate, &up, &down]
        .iter()
        .any(|p| grads.get(&p.a).is_none() || grads.get(&p.b).is_none())
    {
        return Err("a LoRA factor got no gradient".into());
    }
    Ok(LayerRun {
        t,
        kernels,
        rss_before_mib,
        peak_mib,
        seconds,
    })
}
