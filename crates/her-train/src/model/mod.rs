//! A differentiable llama-family decoder (llama, qwen2, qwen3) on GGUF
//! weights, for LoRA training on a frozen (optionally quantized) base.
//!
//! Unlike candle-transformers' inference models it runs the full sequence,
//! and every op between the loss and a LoRA parameter has a backward pass
//! (see `ops`). Token ids are right-padded (b, t) batches starting at
//! position 0, or rows of several packed samples ([`Segments`]); padding
//! only needs label −100. Passes that need no gradient (held-out loss,
//! reference log-probs) run without a graph: the `*_detached` methods.

mod block;
mod frozen;
mod head;
pub mod kernels;
mod load;
pub mod precision;
pub(crate) use load::{Gguf, gguf_error};
pub(crate) mod lora_linear;
pub mod ops;
pub(crate) mod portable;
mod recompute;
mod segments;
mod shape;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};

pub use frozen::{FrozenLinear, FrozenWeight};
pub use head::{HeadNll, IGNORE_LABEL};
pub use kernels::{Kernels, OpPath};
pub use ops::RopeStyle;
pub use precision::Precision;
pub use segments::Segments;
pub use shape::{Arch, ModelShape};

use crate::error::TrainError;
use crate::lora::{LoraAdapter, LoraParam, LoraSpec, Target, read_lora_gguf};
use block::{Block, Pass};
use her_core::rng::SplitMix64;
use load::{GgufTensors, Placement};
use ops::{RmsNorm, Rope};
use recompute::{Checkpoint, SideGrads};

/// How the frozen base weights are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseMode {
    /// GGUF quantization kept; dequantized per matrix and call (QLoRA).
    Quantized,
    /// Dequantized once to f32 at load.
    Dequantized,
}

/// Logit elements per block of the chunked loss (~16 MB of f32).
const LOSS_CHUNK_ELEMS: usize = 4 << 20;
/// Bytes of the loss head's (softmax − onehot) blocks kept from forward to
/// backward when activation checkpointing is off (each saves a gemm there);
/// with it on, every block is recomputed.
const LOSS_KEEP_BYTES: usize = 256 << 20;
/// Fewer head rows per block than this make the head's gemm inefficient.
const MIN_LOSS_CHUNK_VOCAB: usize = 256;

/// Head rows per block on a GPU: a Qwen3 head (151,936 × 5,120) in 19
/// blocks, each 80 MiB in bf16 (160 MiB while it passes through f16 on
/// its way there) while its logits are computed.
pub const HEAD_BLOCK_ROWS: usize = 8192;

/// Stream id of the LoRA A initialisation (dropout uses the step instead).
const INIT_STREAM: u64 = u64::MAX;

/// How one forward pass runs.
#[derive(Clone, Copy, Default)]
struct PassOptions<'a> {
    /// The samples packed into each row; `None`: one per row.
    segments: Option<&'a Segments>,
    /// (seed, step) of the dropout masks; `None`: no dropout.
    dropout: Option<(u64, u64)>,
    /// Record the pass for a backward.
    grad: bool,
}

impl PassOptions<'_> {
    /// No dropout, no graph: held-out and reference passes.
    const DETACHED: Self = Self {
        segments: None,
        dropout: None,
        grad: false,
    };
    /// No dropout, recorded for a backward.
    const TRACKED: Self = Self {
        segments: None,
        dropout: None,
        grad: true,
    };
}

pub struct TrainModel {
    pub shape: ModelShape,
    path: PathBuf,
    mode: BaseMode,
    device: Device,
    embed: FrozenWeight,
    blocks: Vec<Block>,
    output_norm: RmsNorm,
    head: FrozenLinear,
    lora: Option<(LoraSpec, u64)>,
    /// Head rows per block of the chunked loss; `None` sizes blocks by
    /// [`LOSS_CHUNK_ELEMS`].
    loss_chunk_vocab: Option<usize>,
    /// Recompute each block in backward instead of keeping its activations.
    checkpointing: bool,
    /// LoRA gradients from checkpointed blocks, merged by [`Self::backward`].
    side_grads: SideGrads,
    /// Log-probs and losses are of softmax(logits / T) (see
    /// [`Self::set_logit_temperature`]).
    logit_temperature: f64,
    /// The op set every pass uses.
    op_path: OpPath,
    /// The dtype of activations and dequantized weights (LoRA, optimizer
    /// and loss stay f32).
    dtype: DType,
}

/// How [`TrainModel::load_with`] lays the model out.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: Device,
    /// The compute dtype (train.dtype); on a GPU the dequantized base is
    /// stored in it.
    pub dtype: DType,
    /// Keep the head in blocks of this many rows (`None`: whole). On a GPU
    /// each block is dequantized alone for its slice of the loss.
    pub head_block_rows: Option<usize>,
}

impl LoadOptions {
    /// f32; the head in blocks of [`HEAD_BLOCK_ROWS`] rows off the CPU.
    pub fn new(device: &Device) -> Self {
        Self {
            device: device.clone(),
            dtype: DType::F32,
            head_block_rows: (!device.is_cpu()).then_some(HEAD_BLOCK_ROWS),
        }
    }
}

impl TrainModel {
    /// Loads with [`LoadOptions::new`]: f32, the head split into blocks on
    /// a GPU.
    pub fn load(path: &Path, mode: BaseMode, device: &Device) -> Result<Self, TrainError> {
        Self::load_with(path, mode, &LoadOptions::new(device))
    }

    /// Reads the base from `path` onto `options.device`. On a GPU the
    /// embedding stays on the host (a pass gathers its rows there) and the
    /// head is kept in blocks of rows, so that neither is ever dequantized
    /// whole; every tensor's type is checked before anything loads.
    pub fn load_with(
        path: &Path,
        mode: BaseMode,
        options: &LoadOptions,
    ) -> Result<Self, TrainError> {
        let placement = Placement {
            device: options.device.clone(),
            dtype: options.dtype,
        };
        let mut src = GgufTensors::open(path, mode, placement)?;
        let shape = ModelShape::from_gguf(src.header())?;
        let (vocab, e) = (shape.n_vocab, shape.n_embd);
        let embed = src.host_frozen("token_embd.weight", [vocab, e])?;
        let blocks = (0..shape.n_layer)
            .map(|i| Block::load(&mut src, &shape, i))
            .collect::<Result<Vec<_>, _>>()?;
        let output_norm = src.norm("output_norm.weight", e, shape.rms_eps)?;
        let head_name = if shape.tied_output {
            "token_embd.weight"
        } else {
            "output.weight"
        };
        let head = match options.head_block_rows {
            Some(rows) => src.frozen_rows(head_name, [vocab, e], rows)?,
            None if shape.tied_output && options.device.is_cpu() => embed.clone(),
            None => src.frozen(head_name, [vocab, e])?,
        };
        src.ensure_all_used()?;
        Ok(Self {
            loss_chunk_vocab: None,
            shape,
            path: path.to_path_buf(),
            mode,
            device: options.device.clone(),
            dtype: options.dtype,
            embed,
            blocks,
            output_norm,
            head: FrozenLinear::new(head, None),
            lora: None,
            checkpointing: false,
            side_grads: SideGrads::default(),
            logit_temperature: 1.0,
            op_path: OpPath::Fused,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn mode(&self) -> BaseMode {
        self.mode
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The op set of every pass from here on (see [`Kernels::resolve`]);
    /// checkpointed blocks recompute with the same one.
    pub fn set_op_path(&mut self, path: OpPath) {
        self.op_path = path;
    }

    pub fn op_path(&self) -> OpPath {
        self.op_path
    }

    /// The dtype activations are computed in from here on (bf16 needs the
    /// portable op path: see [`Kernels::resolve`]).
    pub fn set_dtype(&mut self, dtype: DType) {
        self.dtype = dtype;
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Head rows (vocabulary entries) per block of the chunked loss, instead
    /// of sizing blocks by memory (memory ∝ labelled positions × block).
    pub fn set_loss_chunk_vocab(&mut self, vocab: usize) {
        self.loss_chunk_vocab = Some(vocab.max(1));
    }

    /// Activation checkpointing: keep only each decoder block's input for
    /// backward and recompute the block there (same dropout masks), trading
    /// one more forward per block for its activations. Gradients are then
    /// complete only through [`Self::backward`].
    pub fn set_activation_checkpointing(&mut self, on: bool) {
        self.checkpointing = on;
    }

    pub fn activation_checkpointing(&self) -> bool {
        self.checkpointing
    }

    /// Losses and log-probs from here on are those of softmax(logits / T):
    /// the distribution llama.cpp samples at temperature T (without
    /// truncation), as RL needs (TRL's GRPO divides the logits by T the
    /// same way). [`Self::logits`] stays raw. T must be positive.
    pub fn set_logit_temperature(&mut self, t: f64) -> Result<(), TrainError> {
        if !(t.is_finite() && t > 0.0) {
            return Err(TrainError::Input {
                what: "temperature",
                detail: format!("'{t}' is not a positive number"),
            });
        }
        self.logit_temperature = t;
        Ok(())
    }

    /// `loss.backward()` plus the LoRA gradients that checkpointed blocks
    /// computed on the side (added where the store already has one). Use it
    /// instead of `loss.backward()`: it gives the same gradients with
    /// checkpointing on or off. Not for concurrent backward passes through
    /// the same model.
    pub fn backward(&self, loss: &Tensor) -> Result<GradStore, TrainError> {
        // Leftovers of a backward run without this method belong to no one.
        drop(self.side_grads.take()?);
        // Inside candle's pool, as forward: backward is now mostly our
        // fused ops, whose many short parallel sections find the workers
        // awake (measured ~5% more tokens/s on 2 cores).
        let mut grads = self.device.with_context(|| loss.backward())?;
        grads.extend(self.side_grads.take()?)?;
        Ok(grads)
    }

    /// Attach fresh PEFT-initialised LoRA branches (A random, B zero),
    /// replacing any attached before. `seed` also seeds dropout.
    pub fn attach_lora(&mut self, spec: &LoraSpec, seed: u64) -> Result<(), TrainError> {
        spec.validate()?;
        for (layer, block) in self.blocks.iter_mut().enumerate() {
            for target in Target::ALL {
                let p = block.projection_mut(target);
                p.lora = if spec.targets.contains(&target) {
                    // Keyed per matrix: the init of one target does not
                    // depend on which others are adapted.
                    let mut rng = SplitMix64::keyed(&[
                        seed,
                        INIT_STREAM,
                        layer as u64,
                        target.index() as u64,
                    ]);
                    Some(LoraAdapter::new_peft(
                        &mut rng,
                        spec,
                        p.n_in,
                        p.n_out,
                        &self.device,
                    )?)
                } else {
                    None
                };
            }
        }
        self.lora = Some((spec.clone(), seed));
        Ok(())
    }

    /// Attach the LoRA stored in a llama.cpp adapter GGUF (values as stored,
    /// no dropout); returns the spec it implies.
    pub fn load_lora_gguf(&mut self, path: &Path) -> Result<LoraSpec, TrainError> {
        let file = read_lora_gguf(path)?;
        let bad = |detail: String| TrainError::LoraFile {
            path: path.to_path_buf(),
            detail,
        };
        if file.arch != self.shape.arch.as_str() {
            return Err(bad(format!(
                "it is for architecture '{}', the model is '{}'",
                file.arch,
                self.shape.arch.as_str()
            )));
        }
        let spec = file.spec();
        spec.validate()?;
        let mut adapters = Vec::new();
        for t in &file.tensors {
            let name = format!("blk.{}.{}.weight", t.layer, t.target.gguf_name());
            let block = self.blocks.get(t.layer).ok_or_else(|| {
                bad(format!(
                    "'{name}': the model has only '{}' layers",
                    self.shape.n_layer
                ))
            })?;
            let p = block.projection(t.target);
            let (want_a, want_b) = ([spec.rank, p.n_in], [p.n_out, spec.rank]);
            if t.a.dims() != want_a || t.b.dims() != want_b {
                return Err(bad(format!(
                    "'{name}' has lora_a {:?} and lora_b {:?}, expected {want_a:?} and {want_b:?}",
                    t.a.dims(),
                    t.b.dims()
                )));
            }
            adapters.push((t.layer, t.target, t.a.clone(), t.b.clone()));
        }
        // Only now replace what was attached: a bad file leaves the model as it was.
        for block in &mut self.blocks {
            for target in Target::ALL {
                block.projection_mut(target).lora = None;
            }
        }
        for (layer, target, a, b) in adapters {
            if let Some(block) = self.blocks.get_mut(layer) {
                block.projection_mut(target).lora = Some(LoraAdapter {
                    a: Var::from_tensor(&a.to_device(&self.device)?)?,
                    b: Var::from_tensor(&b.to_device(&self.device)?)?,
                    scale: spec.scale(),
                    dropout: 0.0,
                });
            }
        }
        self.lora = Some((spec.clone(), 0));
        Ok(spec)
    }

    /// The attached LoRA's spec.
    pub fn lora_spec(&self) -> Option<&LoraSpec> {
        self.lora.as_ref().map(|(s, _)| s)
    }

    /// In a stable order (layer, then target order Q,K,V,O,Gate,Up,Down).
    pub fn lora_params(&self) -> Vec<LoraParam> {
        let mut out = Vec::new();
        for (layer, block) in self.blocks.iter().enumerate() {
            for target in Target::ALL {
                if let Some(l) = &block.projection(target).lora {
                    out.push(LoraParam {
                        layer,
                        target,
                        a: l.a.clone(),
                        b: l.b.clone(),
                    });
                }
            }
        }
        out
    }

    /// (b,t,vocab) f32 logits for parity and evaluation (no dropout, no
    /// graph).
    pub fn logits(&self, ids: &Tensor) -> Result<Tensor, TrainError> {
        let (b, t) = batch_dims(ids, "ids")?;
        let h = self.hidden(ids, PassOptions::DETACHED)?;
        let logits = self.head.apply(&h, self.op_path)?;
        Ok(logits.reshape((b, t, self.shape.n_vocab))?)
    }

    /// Mean NLL over positions whose label != −100 (labels (b,t) i64,
    /// already shifted: label[t] is the token after ids[t]); returns (loss
    /// scalar, counted tokens). `train` enables dropout; `step` seeds it.
    pub fn loss(
        &self,
        ids: &Tensor,
        labels: &Tensor,
        train: bool,
        step: u64,
    ) -> Result<(Tensor, usize), TrainError> {
        self.packed_loss(ids, labels, None, train, step)
    }

    /// [`Self::loss`] over rows that may each hold several samples: the
    /// mean over every labelled token of the batch (TRL's normalisation),
    /// each sample computed as if it were alone.
    pub fn packed_loss(
        &self,
        ids: &Tensor,
        labels: &Tensor,
        segments: Option<&Segments>,
        train: bool,
        step: u64,
    ) -> Result<(Tensor, usize), TrainError> {
        let dropout = match &self.lora {
            Some((spec, seed)) if train && spec.dropout > 0.0 => Some((*seed, step)),
            _ => None,
        };
        let options = PassOptions {
            segments,
            dropout,
            grad: true,
        };
        let (nll, labels) = self.token_nll(ids, labels, options)?;
        let count = labels.iter().filter(|&&y| y != IGNORE_LABEL).count();
        // An all-masked batch gives 0, still attached to the graph.
        let loss = (nll.sum_all()? * (1.0 / count.max(1) as f64))?;
        Ok((loss, count))
    }

    /// The summed NLL of the labelled positions and their count, without a
    /// graph or dropout: the held-out loss.
    pub fn nll_sum_detached(
        &self,
        ids: &Tensor,
        labels: &Tensor,
        segments: Option<&Segments>,
    ) -> Result<(f64, usize), TrainError> {
        let options = PassOptions {
            segments,
            ..PassOptions::DETACHED
        };
        let (nll, labels) = self.token_nll(ids, labels, options)?;
        let count = labels.iter().filter(|&&y| y != IGNORE_LABEL).count();
        let sum = nll.to_vec1::<f32>()?.iter().map(|&v| f64::from(v)).sum();
        Ok((sum, count))
    }

    /// Per-sequence sum of log-probs of the labelled positions (for DPO/RL):
    /// (b,) f32 tensor with grad. No dropout.
    pub fn sequence_logprobs(&self, ids: &Tensor, labels: &Tensor) -> Result<Tensor, TrainError> {
        Ok(self.token_logprobs(ids, labels)?.sum(1)?)
    }

    /// [`Self::sequence_logprobs`] without a graph: reference and held-out
    /// passes keep no activations, probabilities or loss-head blocks.
    pub fn sequence_logprobs_detached(
        &self,
        ids: &Tensor,
        labels: &Tensor,
    ) -> Result<Tensor, TrainError> {
        Ok(self.token_logprobs_detached(ids, labels)?.sum(1)?)
    }

    /// Per-token log-probs of the labelled positions (for RL): (b,t) f32
    /// with grad, 0 where the label is −100. No dropout.
    pub fn token_logprobs(&self, ids: &Tensor, labels: &Tensor) -> Result<Tensor, TrainError> {
        self.token_logprobs_in(ids, labels, PassOptions::TRACKED)
    }

    /// [`Self::token_logprobs`] without a graph (reference passes).
    pub fn token_logprobs_detached(
        &self,
        ids: &Tensor,
        labels: &Tensor,
    ) -> Result<Tensor, TrainError> {
        self.token_logprobs_in(ids, labels, PassOptions::DETACHED)
    }

    fn token_logprobs_in(
        &self,
        ids: &Tensor,
        labels: &Tensor,
        options: PassOptions<'_>,
    ) -> Result<Tensor, TrainError> {
        let (b, t) = batch_dims(ids, "ids")?;
        let (nll, _) = self.token_nll(ids, labels, options)?;
        Ok(nll.reshape((b, t))?.neg()?)
    }

    /// (b·t,) NLL per position (0 where masked) and the flat labels.
    fn token_nll(
        &self,
        ids: &Tensor,
        labels: &Tensor,
        options: PassOptions<'_>,
    ) -> Result<(Tensor, Vec<i64>), TrainError> {
        if labels.dims() != ids.dims() {
            return Err(TrainError::Input {
                what: "labels",
                detail: format!(
                    "shape {:?} differs from the ids' {:?}",
                    labels.dims(),
                    ids.dims()
                ),
            });
        }
        let labels = labels
            .flatten_all()?
            .to_dtype(DType::I64)?
            .to_vec1::<i64>()?;
        let vocab = self.shape.n_vocab as i64;
        if let Some(bad) = labels
            .iter()
            .find(|&&y| y != IGNORE_LABEL && !(0..vocab).contains(&y))
        {
            return Err(TrainError::Input {
                what: "labels",
                detail: format!("label '{bad}' is neither −100 nor a token id below '{vocab}'"),
            });
        }
        // Inside candle's thread pool the many short parallel sections
        // (gemm, our row-parallel ops) find its workers awake: measured
        // 5-15% more tokens/s than calling in from outside on 2 cores.
        let h = self.device.with_context(|| self.hidden(ids, options))?;
        // logits / T = (h / T)·Wᵀ: one scale of the hidden states, with its backward.
        let t = self.logit_temperature;
        let h = if t == 1.0 { h } else { (h * (1.0 / t))? };
        let counted = labels.iter().filter(|&&y| y != IGNORE_LABEL).count();
        // A head kept in blocks is walked a block at a time.
        let chunk_vocab = self
            .loss_chunk_vocab
            .or(self.head.weight().block_rows())
            .unwrap_or_else(|| {
                (LOSS_CHUNK_ELEMS / counted.max(1))
                    .clamp(MIN_LOSS_CHUNK_VOCAB, self.shape.n_vocab.max(1))
            });
        // Blocks are kept only for a backward that will come: not with
        // checkpointing, and not for a pass nothing is tracked in (held-out
        // loss, reference log-probs).
        let keep_bytes = if self.checkpointing || !h.track_op() {
            0
        } else {
            LOSS_KEEP_BYTES
        };
        let weight = self.head.weight().clone();
        let nll = HeadNll::new(weight, labels.clone(), chunk_vocab, keep_bytes);
        let nll = self.device.with_context(|| nll.apply(&h, self.op_path))?;
        Ok((nll, labels))
    }

    /// Final-norm hidden states (b·t, embd).
    fn hidden(&self, ids: &Tensor, options: PassOptions<'_>) -> Result<Tensor, TrainError> {
        let (b, t) = batch_dims(ids, "ids")?;
        if let Some(seg) = options.segments
            && (seg.rows(), seg.row_len()) != (b, t)
        {
            return Err(TrainError::Input {
                what: "segments",
                detail: format!(
                    "they describe {}×{} positions, the ids are {b}×{t}",
                    seg.rows(),
                    seg.row_len()
                ),
            });
        }
        let flat = ids.flatten_all()?.to_dtype(DType::I64)?.to_vec1::<i64>()?;
        let vocab = self.shape.n_vocab as i64;
        if let Some(bad) = flat.iter().find(|&&id| !(0..vocab).contains(&id)) {
            return Err(TrainError::Input {
                what: "ids",
                detail: format!("token id '{bad}' is outside the vocabulary (0..{vocab})"),
            });
        }
        if self.op_path == OpPath::Fused && self.dtype != DType::F32 {
            return Err(TrainError::Input {
                what: "train.dtype",
                detail: format!(
                    "'{}' needs the portable ops; the fused kernels compute in f32 only",
                    precision::dtype_name(self.dtype)
                ),
            });
        }
        // The embedding lives on the host: its rows are gathered there.
        let flat: Vec<u32> = flat.into_iter().map(|id| id as u32).collect();
        let flat = Tensor::from_vec(flat, b * t, &Device::Cpu)?;
        let s = &self.shape;
        let mut rope = Rope::new(s.rope_style, s.head_dim, t, s.rope_theta);
        if let Some(seg) = options.segments {
            rope = rope.with_positions(seg.positions());
        }
        let pass = Arc::new(Pass {
            b,
            t,
            rope,
            segments: options.segments.map(|seg| Arc::new(seg.clone())),
            attn_scale: s.attn_scale as f32,
            dropout: options.dropout,
            grad: options.grad,
            path: self.op_path,
        });
        // 1. Frozen embedding lookup: (b·t, e)
        let mut x = self
            .embed
            .rows(&flat)?
            .to_device(&self.device)?
            .to_dtype(self.dtype)?;
        // 2. Decoder blocks
        for block in &self.blocks {
            let trains = x.track_op() || block.lora_vars().next().is_some();
            x = if self.checkpointing && trains && options.grad {
                // The op is recorded only on a tracked input: make the
                // (frozen) embedding output a variable.
                if !x.track_op() {
                    x = Var::from_tensor(&x)?.into_inner();
                }
                Checkpoint::apply(block, &pass, &self.side_grads, &x)?
            } else {
                block.forward(&x, &pass)?
            };
        }
        // 3. Final norm
        Ok(self.output_norm.apply(&x, self.op_path)?)
    }
}

fn batch_dims(t: &Tensor, what: &'static str) -> Result<(usize, usize), TrainError> {
    match t.dims() {
        &[b, n] if b > 0 && n > 0 => Ok((b, n)),
        dims => Err(TrainError::Input {
            what,
            detail: format!("expected a non-empty (batch, tokens) tensor, got shape {dims:?}"),
        }),
    }
}
