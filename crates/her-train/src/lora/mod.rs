//! LoRA: spec, targets (GGUF and PEFT names), PEFT initialisation, the
//! adapter applied next to a frozen projection, and its GGUF file.
//!
//! y = base(x) + (alpha/r) · (dropout(x)·Aᵀ)·Bᵀ with A (r, in), B (out, r):
//! PEFT's lora_A/lora_B layout, which is also llama.cpp's adapter layout.

mod gguf;

use std::fmt;
use std::str::FromStr;

#[cfg(test)]
use candle_core::Tensor;
use candle_core::{Device, Var};

pub use gguf::{LoraFile, LoraFileTensor, read_lora_gguf, write_lora_gguf};

use crate::error::TrainError;
use her_core::rng::SplitMix64;

/// A projection LoRA can adapt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Target {
    /// Every target, in the stable order parameters are listed in.
    pub const ALL: [Target; 7] = [
        Target::Q,
        Target::K,
        Target::V,
        Target::O,
        Target::Gate,
        Target::Up,
        Target::Down,
    ];

    /// The tensor name inside a block: `blk.N.<gguf_name>.weight`.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Target::Q => "attn_q",
            Target::K => "attn_k",
            Target::V => "attn_v",
            Target::O => "attn_output",
            Target::Gate => "ffn_gate",
            Target::Up => "ffn_up",
            Target::Down => "ffn_down",
        }
    }

    /// The module name inside a PEFT layer: `model.layers.N.<peft_name>`.
    pub fn peft_name(self) -> &'static str {
        match self {
            Target::Q => "self_attn.q_proj",
            Target::K => "self_attn.k_proj",
            Target::V => "self_attn.v_proj",
            Target::O => "self_attn.o_proj",
            Target::Gate => "mlp.gate_proj",
            Target::Up => "mlp.up_proj",
            Target::Down => "mlp.down_proj",
        }
    }

    /// The short config name: q, k, v, o, gate, up, down.
    pub fn short_name(self) -> &'static str {
        match self {
            Target::Q => "q",
            Target::K => "k",
            Target::V => "v",
            Target::O => "o",
            Target::Gate => "gate",
            Target::Up => "up",
            Target::Down => "down",
        }
    }

    /// Position in [`Target::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_gguf_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.gguf_name() == name)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short_name())
    }
}

impl FromStr for Target {
    type Err = TrainError;

    /// Accepts "q", the PEFT module name ("self_attn.q_proj" or "q_proj")
    /// and the GGUF name ("attn_q").
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|t| {
                let peft = t.peft_name();
                let peft_leaf = peft.rsplit('.').next().unwrap_or(peft);
                [t.short_name(), peft, peft_leaf, t.gguf_name()].contains(&s)
            })
            .ok_or_else(|| TrainError::UnknownTarget {
                value: s.to_owned(),
            })
    }
}

/// LoRA hyper-parameters (PEFT's `r`, `lora_alpha`, `lora_dropout`,
/// `target_modules`).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSpec {
    pub rank: usize,
    pub alpha: f64,
    /// Dropout probability on the LoRA input path, in [0, 1).
    pub dropout: f64,
    pub targets: Vec<Target>,
}

impl LoraSpec {
    /// alpha / r.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |field, value: String, detail: &str| {
            Err(TrainError::InvalidLora {
                field,
                value,
                detail: detail.to_owned(),
            })
        };
        if self.rank == 0 || self.rank > 4096 {
            return bad("rank", self.rank.to_string(), "must be 1..=4096");
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return bad("alpha", self.alpha.to_string(), "must be positive");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout", self.dropout.to_string(), "must be in [0, 1)");
        }
        if self.targets.is_empty() {
            return bad(
                "targets",
                String::new(),
                "name at least one of q, k, v, o, gate, up, down",
            );
        }
        let mut seen = self.targets.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != self.targets.len() {
            let names: Vec<_> = self.targets.iter().map(|t| t.short_name()).collect();
            return bad("targets", names.join(","), "lists a target twice");
        }
        Ok(())
    }
}

/// One adapted projection's trainable matrices.
#[derive(Clone)]
pub struct LoraParam {
    pub layer: usize,
    pub target: Target,
    /// (r, in)
    pub a: Var,
    /// (out, r)
    pub b: Var,
}

/// PEFT's init of A: kaiming_uniform_(a=√5), i.e. U(±√(6/((1+5)·in))) = U(±1/√in).
pub(crate) fn peft_init_a(rng: &mut SplitMix64, rank: usize, n_in: usize) -> Vec<f32> {
    let bound = (6.0 / (6.0 * n_in as f64)).sqrt();
    (0..rank * n_in)
        .map(|_| rng.uniform(bound) as f32)
        .collect()
}

/// The LoRA branch of one projection.
#[derive(Clone)]
pub(crate) struct LoraAdapter {
    pub a: Var,
    pub b: Var,
    pub scale: f64,
    pub dropout: f64,
}

impl LoraAdapter {
    /// A from PEFT's init, B zero: the adapter starts as the identity.
    pub fn new_peft(
        rng: &mut SplitMix64,
        spec: &LoraSpec,
        n_in: usize,
        n_out: usize,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let a = Var::from_vec(peft_init_a(rng, spec.rank, n_in), (spec.rank, n_in), device)?;
        let b = Var::zeros((n_out, spec.rank), candle_core::DType::F32, device)?;
        Ok(Self {
            a,
            b,
            scale: spec.scale(),
            dropout: spec.dropout,
        })
    }

    /// scale · (dropout(x)·Aᵀ)·Bᵀ for x (m, in); `mask_key` seeds the
    /// dropout mask, `None` disables dropout (evaluation). Built from
    /// separate tensor ops: the reference the fused op is tested against.
    #[cfg(test)]
    pub fn forward(&self, x: &Tensor, mask_key: Option<&[u64]>) -> Result<Tensor, TrainError> {
        let x = match mask_key {
            Some(key) if self.dropout > 0.0 => {
                x.broadcast_mul(&dropout_mask(x, self.dropout, key)?)?
            }
            _ => x.clone(),
        };
        // 1. (m, in) · (in, r) → (m, r)
        let low = x.matmul(&self.a.as_tensor().t()?)?;
        // 2. (m, r) · (r, out) → (m, out), scaled
        Ok((low.matmul(&self.b.as_tensor().t()?)? * self.scale)?)
    }
}

/// Inverted-dropout mask shaped like x: 0 with probability p, else 1/(1−p).
#[cfg(test)]
fn dropout_mask(x: &Tensor, p: f64, key: &[u64]) -> Result<Tensor, TrainError> {
    let mask = dropout_mask_values(x.elem_count(), p, key);
    Ok(Tensor::from_vec(mask, x.shape(), x.device())?)
}

/// `n` inverted-dropout factors: 0 with probability p, else 1/(1−p); the
/// same for the same key.
pub(crate) fn dropout_mask_values(n: usize, p: f64, key: &[u64]) -> Vec<f32> {
    let mut rng = SplitMix64::keyed(key);
    let keep = (1.0 / (1.0 - p)) as f32;
    (0..n)
        .map(|_| if rng.unit() < p { 0.0 } else { keep })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_from_short_peft_and_gguf_names() {
        for t in Target::ALL {
            assert_eq!(t.short_name().parse::<Target>().ok(), Some(t));
            assert_eq!(t.peft_name().parse::<Target>().ok(), Some(t));
            assert_eq!(t.gguf_name().parse::<Target>().ok(), Some(t));
        }
        assert_eq!("q_proj".parse::<Target>().ok(), Some(Target::Q));
        assert_eq!("down_proj".parse::<Target>().ok(), Some(Target::Down));
        let err = "qq".parse::<Target>().unwrap_err().to_string();
        assert!(err.contains("'qq'"), "{err}");
    }

    #[test]
    fn spec_validation_names_the_field() {
        let ok = LoraSpec {
            rank: 8,
            alpha: 16.0,
            dropout: 0.05,
            targets: vec![Target::Q, Target::V],
        };
        assert!(ok.validate().is_ok());
        assert_eq!(ok.scale(), 2.0);
        let cases = [
            (
                LoraSpec {
                    rank: 0,
                    ..ok.clone()
                },
                "rank",
            ),
            (
                LoraSpec {
                    alpha: 0.0,
                    ..ok.clone()
                },
                "alpha",
            ),
            (
                LoraSpec {
                    dropout: 1.0,
                    ..ok.clone()
                },
                "dropout",
            ),
            (
                LoraSpec {
                    targets: vec![],
                    ..ok.clone()
                },
                "targets",
            ),
            (
                LoraSpec {
                    targets: vec![Target::Q, Target::Q],
                    ..ok.clone()
                },
                "targets",
            ),
        ];
        for (spec, field) in cases {
            let msg = spec.validate().unwrap_err().to_string();
            assert!(msg.contains(&format!("'{field}'")), "{msg}");
        }
    }

    #[test]
    fn peft_init_a_is_uniform_within_one_over_sqrt_in() {
        let mut rng = SplitMix64::new(3);
        let a = peft_init_a(&mut rng, 4, 100);
        assert_eq!(a.len(), 400);
        assert!(a.iter().all(|v| v.abs() <= 0.1));
        // Uniform(±0.1) has std 0.1/√3 ≈ 0.0577.
        let var = a.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / 400.0;
        assert!((var.sqrt() - 0.0577).abs() < 0.006, "std {}", var.sqrt());
    }

    #[test]
    fn dropout_mask_keeps_the_expected_share_and_repeats_per_key() {
        let x = Tensor::ones((100, 100), candle_core::DType::F32, &Device::Cpu).unwrap();
        let mask = |key: &[u64]| {
            dropout_mask(&x, 0.25, key)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let (m1, m2, m3) = (mask(&[1, 2]), mask(&[1, 2]), mask(&[1, 3]));
        assert_eq!(m1, m2);
        assert_ne!(m1, m3);
        let dropped = m1.iter().filter(|&&v| v == 0.0).count();
        assert!((2300..2700).contains(&dropped), "{dropped}");
        assert!(m1.iter().all(|&v| v == 0.0 || (v - 4.0 / 3.0).abs() < 1e-6));
    }
}
