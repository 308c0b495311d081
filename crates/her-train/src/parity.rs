//! One training step's numbers under one compute setup (device, dtype, op
//! set), and how far two setups' numbers lie apart. This is how the
//! portable path is checked against the fused CPU kernels (CI), bf16
//! against f32 (CI), and CUDA against the CPU (`her bench gpu-parity` on a
//! GPU machine): the same model, LoRA, batch and dropout masks, then the
//! loss, every LoRA gradient and the token log-probs compared.

use std::path::PathBuf;

pub use candle_core::Device;
use candle_core::{DType, Tensor};
use her_core::rng::SplitMix64;

use crate::error::TrainError;
use crate::lora::{LoraSpec, Target};
use crate::model::{BaseMode, LoadOptions, OpPath, Segments, TrainModel};
use crate::optim::Accumulator;
use crate::train_loop::trainer::named_params;

/// How close two setups' numbers must be: the loss and log-probs within
/// `values` of max(1, the reference's magnitude), and the LoRA gradients
/// as `grad` says.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub values: f32,
    pub grad: GradBound,
}

impl Bounds {
    /// "values 0.02, whole gradient ‖Δg‖/‖g‖ ≤ 0.15 and cosine ≥ 0.99".
    pub fn describe(&self) -> String {
        let grad = match self.grad {
            GradBound::PerMatrix(tol) => format!("every matrix max |Δg| ≤ {tol:e}"),
            GradBound::Whole {
                relative_l2,
                min_cosine,
            } => format!("whole gradient ‖Δg‖/‖g‖ ≤ {relative_l2} and cosine ≥ {min_cosine}"),
        };
        format!("values {:e}, {grad}", self.values)
    }
}

#[derive(Debug, Clone, Copy)]
pub enum GradBound {
    /// Every matrix: max |Δg| / max(1, max |g|).
    PerMatrix(f32),
    /// The whole gradient (every matrix as one vector): ‖Δg‖ / ‖g‖ and the
    /// cosine between the two.
    Whole { relative_l2: f64, min_cosine: f64 },
}

/// f32 on another device or op set against the fused CPU path: different
/// summation orders only (SmolLM2's large logits make its gradients the
/// most sensitive: 5e-4 measured at worst between the two CPU paths,
/// tests/train_portable.rs).
pub const F32_BOUNDS: Bounds = Bounds {
    values: 1e-4,
    grad: GradBound::PerMatrix(1e-3),
};

/// bf16 against f32. bf16 keeps 8 significant bits (2⁻⁹ ≈ 0.2% relative
/// rounding per value) and a pass rounds every activation and dequantized
/// weight, so single gradient entries can move by tens of percent where a
/// 30-layer model amplifies rounding (SmolLM2: layer 0's LoRA gradients
/// move by 2e-5 when the f32 path's B moves by one f32 rounding step); the
/// check is on the whole gradient. Measured on one step: loss within 0.14%,
/// ‖Δg‖/‖g‖ 1.5% (tiny models) to 7.1% (SmolLM2), cosine ≥ 0.9975. That
/// this is rounding and not a wrong op is checked by f16 (3 more bits)
/// landing about 10× closer: 0.2% and 0.7% (tests/train_bf16.rs).
pub const BF16_BOUNDS: Bounds = Bounds {
    values: 0.02,
    grad: GradBound::Whole {
        relative_l2: 0.15,
        min_cosine: 0.99,
    },
};

/// Where and how a step computes.
#[derive(Debug, Clone)]
pub struct Setup {
    pub device: Device,
    pub dtype: DType,
    pub path: OpPath,
}

impl Setup {
    /// The fused CPU kernels in f32: the reference.
    pub fn fused_cpu() -> Self {
        Self {
            device: Device::Cpu,
            dtype: DType::F32,
            path: OpPath::Fused,
        }
    }

    /// The portable ops on `device` in `dtype`.
    pub fn portable(device: &Device, dtype: DType) -> Self {
        Self {
            device: device.clone(),
            dtype,
            path: OpPath::Portable,
        }
    }

    /// "cpu fused f32", "cuda portable bf16".
    pub fn label(&self) -> String {
        let device = if self.device.is_cpu() { "cpu" } else { "cuda" };
        let path = match self.path {
            OpPath::Fused => "fused",
            OpPath::Portable => "portable",
        };
        let dtype = crate::model::precision::dtype_name(self.dtype);
        format!("{device} {path} {dtype}")
    }
}

/// The setups `her bench gpu-parity` checks on `device`, each with its
/// bounds: the portable ops in f32 and in bf16.
pub fn device_setups(device: &Device) -> [(Setup, Bounds); 2] {
    [
        (Setup::portable(device, DType::F32), F32_BOUNDS),
        (Setup::portable(device, DType::BF16), BF16_BOUNDS),
    ]
}

/// The model, LoRA and batch of one comparison.
#[derive(Debug, Clone)]
pub struct Case {
    pub what: String,
    pub model: PathBuf,
    pub mode: BaseMode,
    pub checkpointing: bool,
    pub dropout: f64,
    /// (b, t) of the batch.
    pub size: (usize, usize),
    /// Sample lengths per row: several samples packed into a row.
    pub packed: Option<Vec<Vec<usize>>>,
    /// Keep the head in blocks of this many rows, as on a GPU.
    pub head_block_rows: Option<usize>,
}

impl Case {
    pub fn new(what: impl Into<String>, model: impl Into<PathBuf>, size: (usize, usize)) -> Self {
        Self {
            what: what.into(),
            model: model.into(),
            mode: BaseMode::Quantized,
            checkpointing: false,
            dropout: 0.0,
            size,
            packed: None,
            head_block_rows: None,
        }
    }
}

/// What one setup computes on a case's batch.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub loss: f32,
    /// (name, gradient) per LoRA matrix, in parameter order.
    pub grads: Vec<(String, Vec<f32>)>,
    /// Per-token log-probs of the labels (what DPO, KTO and RL train on).
    pub logprobs: Vec<f32>,
}

/// Random ids (b, t) and labels = the next id, the last position of each
/// row masked; host tensors (the model gathers embeddings there).
pub fn next_token_batch(
    vocab: usize,
    b: usize,
    t: usize,
    seed: u64,
) -> Result<(Tensor, Tensor), TrainError> {
    let mut rng = SplitMix64::new(seed);
    let ids: Vec<i64> = (0..b * (t + 1))
        .map(|_| (rng.next_u64() % vocab.max(1) as u64) as i64)
        .collect();
    let (mut x, mut y) = (Vec::with_capacity(b * t), Vec::with_capacity(b * t));
    for row in ids.chunks(t + 1) {
        x.extend_from_slice(&row[..t]);
        y.extend_from_slice(&row[1..]);
    }
    for r in 0..b {
        y[r * t + t - 1] = crate::model::IGNORE_LABEL;
    }
    Ok((
        Tensor::from_vec(x, (b, t), &Device::Cpu)?,
        Tensor::from_vec(y, (b, t), &Device::Cpu)?,
    ))
}

fn randn(shape: &[usize], std: f64, seed: u64) -> Result<Tensor, TrainError> {
    let mut rng = SplitMix64::new(seed);
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| (rng.normal() * std) as f32).collect();
    Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
}

fn flat(t: &Tensor) -> Result<Vec<f32>, TrainError> {
    Ok(t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?)
}

/// One SFT step's loss, LoRA gradients and log-probs for `case` under
/// `setup`. Every LoRA B is random (PEFT's B = 0 would make every A
/// gradient 0, and a broken dA would pass). `nudge` moves every B value by
/// one part in 10⁷ (about an f32 rounding step): the noise floor.
pub fn outcome(case: &Case, setup: &Setup, nudge: bool) -> Result<Outcome, TrainError> {
    let options = LoadOptions {
        device: setup.device.clone(),
        dtype: setup.dtype,
        head_block_rows: case.head_block_rows,
    };
    let mut m = TrainModel::load_with(&case.model, case.mode, &options)?;
    m.set_op_path(setup.path);
    let spec = LoraSpec {
        rank: 4,
        alpha: 8.0,
        dropout: case.dropout,
        targets: Target::ALL.to_vec(),
    };
    m.attach_lora(&spec, 7)?;
    for (i, p) in m.lora_params().iter().enumerate() {
        let b = randn(p.b.dims(), 0.05, 100 + i as u64)?;
        let b = if nudge { (b * (1.0 + 1e-7))? } else { b };
        p.b.set(&b.to_device(&setup.device)?)?;
    }
    m.set_activation_checkpointing(case.checkpointing);
    let (b, t) = case.size;
    let (ids, labels) = next_token_batch(m.shape.n_vocab, b, t, 3)?;
    let segments = match &case.packed {
        Some(rows) => Some(Segments::from_lengths(t, rows)?),
        None => None,
    };
    let (loss, _) = m.packed_loss(&ids, &labels, segments.as_ref(), true, 5)?;
    let grads = m.backward(&loss)?;
    let params = named_params(&m.lora_params());
    let mut acc = Accumulator::new(params.len());
    acc.add(&params, &grads, 1.0)?;
    let missing = acc.missing(&params);
    if let Some(first) = missing.first() {
        return Err(TrainError::Input {
            what: "parity",
            detail: format!("{}: no gradient reached {first}", case.what),
        });
    }
    let mut named = Vec::with_capacity(params.len());
    for (name, v) in &params {
        let Some(g) = grads.get(v.as_tensor()) else {
            continue;
        };
        // A tracked gradient would keep the step's graph alive.
        if g.track_op() {
            return Err(TrainError::Input {
                what: "parity",
                detail: format!("{}: {name}'s gradient holds a graph", case.what),
            });
        }
        named.push((name.clone(), flat(g)?));
    }
    let logprobs = flat(&m.token_logprobs(&ids, &labels)?)?;
    Ok(Outcome {
        loss: loss.to_dtype(DType::F32)?.to_scalar::<f32>()?,
        grads: named,
        logprobs,
    })
}

/// How far one LoRA matrix's gradient is from the reference's.
#[derive(Debug, Clone)]
pub struct GradDistance {
    pub name: String,
    /// max |Δg|.
    pub diff: f32,
    /// max |g| of the reference.
    pub scale: f32,
    pub finite: bool,
    /// Σ Δg² and Σ g² (reference), Σ g·g' : the matrix's share of the
    /// whole gradient's relative error and cosine.
    pub diff_sq: f64,
    pub norm_sq: f64,
    pub other_sq: f64,
    pub dot: f64,
}

impl GradDistance {
    /// max |Δg| / max(1, max |g|): the bound the checks use.
    pub fn bounded(&self) -> f32 {
        self.diff / self.scale.max(1.0)
    }

    /// The layer of `blk.N.…`.
    pub fn layer(&self) -> Option<usize> {
        self.name
            .strip_prefix("blk.")
            .and_then(|rest| rest.split('.').next())
            .and_then(|n| n.parse().ok())
    }
}

/// Two outcomes of the same case, compared.
#[derive(Debug, Clone)]
pub struct Distance {
    pub loss: f32,
    pub loss_diff: f32,
    /// max |Δ log-prob| and max |log-prob| of the reference.
    pub logprob_diff: f32,
    pub logprob_scale: f32,
    pub grads: Vec<GradDistance>,
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |m, x| m.max(x.abs()))
}

/// NaN counts as the largest difference.
fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0f32, |m, (x, y)| {
        let d = (x - y).abs();
        if d.is_nan() { f32::INFINITY } else { m.max(d) }
    })
}

impl Distance {
    /// `other` against `reference`; the outcomes must be of the same case.
    pub fn between(reference: &Outcome, other: &Outcome) -> Self {
        let grads = reference
            .grads
            .iter()
            .zip(&other.grads)
            .map(|((name, r), (_, o))| {
                let sum = |f: &dyn Fn(f64, f64) -> f64| -> f64 {
                    r.iter()
                        .zip(o)
                        .map(|(&x, &y)| f(f64::from(x), f64::from(y)))
                        .sum()
                };
                GradDistance {
                    name: name.clone(),
                    diff: if r.len() == o.len() {
                        max_diff(r, o)
                    } else {
                        f32::INFINITY
                    },
                    scale: max_abs(r),
                    finite: o.iter().all(|v| v.is_finite()),
                    diff_sq: sum(&|x, y| (x - y) * (x - y)),
                    norm_sq: sum(&|x, _| x * x),
                    other_sq: sum(&|_, y| y * y),
                    dot: sum(&|x, y| x * y),
                }
            })
            .collect();
        let loss_diff = (reference.loss - other.loss).abs();
        Self {
            loss: reference.loss,
            loss_diff: if loss_diff.is_nan() {
                f32::INFINITY
            } else {
                loss_diff
            },
            logprob_diff: max_diff(&reference.logprobs, &other.logprobs),
            logprob_scale: max_abs(&reference.logprobs),
            grads,
        }
    }

    /// |Δ loss| / max(1, |loss|).
    pub fn loss_bounded(&self) -> f32 {
        self.loss_diff / self.loss.abs().max(1.0)
    }

    /// max |Δ log-prob| / max(1, max |log-prob|).
    pub fn logprobs_bounded(&self) -> f32 {
        self.logprob_diff / self.logprob_scale.max(1.0)
    }

    /// ‖Δg‖ / ‖g‖ over every LoRA gradient together (one vector).
    pub fn grad_relative_l2(&self) -> f64 {
        let diff: f64 = self.grads.iter().map(|g| g.diff_sq).sum();
        let norm: f64 = self.grads.iter().map(|g| g.norm_sq).sum();
        (diff / norm.max(f64::MIN_POSITIVE)).sqrt()
    }

    /// The cosine between the two whole gradients: 1 when they point the
    /// same way.
    pub fn grad_cosine(&self) -> f64 {
        let dot: f64 = self.grads.iter().map(|g| g.dot).sum();
        let a: f64 = self.grads.iter().map(|g| g.norm_sq).sum();
        let b: f64 = self.grads.iter().map(|g| g.other_sq).sum();
        dot / (a * b).sqrt().max(f64::MIN_POSITIVE)
    }

    /// The largest [`GradDistance::bounded`] of all matrices.
    pub fn worst_grad(&self) -> f32 {
        self.grads
            .iter()
            .map(GradDistance::bounded)
            .fold(0f32, f32::max)
    }

    /// Per layer, the largest max |Δg| / max |g| (each matrix against its
    /// own magnitude).
    pub fn per_layer(&self) -> Vec<f32> {
        let mut out: Vec<f32> = Vec::new();
        for g in &self.grads {
            let Some(layer) = g.layer() else { continue };
            if out.len() <= layer {
                out.resize(layer + 1, 0.0);
            }
            out[layer] = out[layer].max(g.diff / g.scale.max(f32::MIN_POSITIVE));
        }
        out
    }

    /// What is out of `bounds` (empty when it passes); a zero or
    /// non-finite gradient always is.
    pub fn failures(&self, bounds: &Bounds) -> Vec<String> {
        let mut out = Vec::new();
        if self.loss_bounded() > bounds.values {
            out.push(format!("loss differs by {}", self.loss_diff));
        }
        if self.logprobs_bounded() > bounds.values {
            out.push(format!("token log-probs differ by {}", self.logprob_diff));
        }
        for g in &self.grads {
            if g.scale == 0.0 {
                out.push(format!("{} has a zero gradient", g.name));
            } else if !g.finite {
                out.push(format!("{} is not finite", g.name));
            } else if let GradBound::PerMatrix(tol) = bounds.grad
                && g.bounded() > tol
            {
                out.push(format!(
                    "{} differs by {} (max |g| {})",
                    g.name, g.diff, g.scale
                ));
            }
        }
        if let GradBound::Whole {
            relative_l2,
            min_cosine,
        } = bounds.grad
        {
            let (l2, cosine) = (self.grad_relative_l2(), self.grad_cosine());
            if !(l2 <= relative_l2 && cosine >= min_cosine) {
                out.push(format!(
                    "the whole gradient is off: ‖Δg‖/‖g‖ {l2:.3e} (bound {relative_l2}), cosine {cosine:.6} (bound {min_cosine})"
                ));
            }
        }
        out
    }

    /// One line: loss, its difference, log-probs and the per-layer figures.
    pub fn summary(&self) -> String {
        let layers: Vec<String> = self
            .per_layer()
            .iter()
            .map(|v| format!("{v:.1e}"))
            .collect();
        format!(
            "loss {} |Δ| {:e}; log-probs max |Δ| {:e}; gradient ‖Δg‖/‖g‖ {:.2e}, cosine {:.6}; per layer max |Δg|/max|g|: [{}]",
            self.loss,
            self.loss_diff,
            self.logprob_diff,
            self.grad_relative_l2(),
            self.grad_cosine(),
            layers.join(" ")
        )
    }
}
