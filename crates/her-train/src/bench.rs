//! The trainer's side of `her bench train`: the plan every side trains on
//! (the same token batches for us and PyTorch + PEFT), one side's result
//! line, and our side's steps. The app runs the sides as child processes and
//! compares them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::lora::{LoraSpec, Target};
use crate::model::{BaseMode, Kernels, LoadOptions, Precision, Segments, TrainModel};
use crate::optim::{Accumulator, AdamW, AdamWConfig};
use crate::run::memory_mib;
use crate::train_loop::trainer::named_params;

/// What can stop a benchmark side: any trainer error, as text.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

/// What every side trains on, and how.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub model: PathBuf,
    /// Where the tokens came from.
    pub source: String,
    pub lora: PlanLora,
    pub optimizer: PlanOptimizer,
    pub seed: u64,
    /// Activation (gradient) checkpointing on every side.
    #[serde(default)]
    pub checkpointing: bool,
    /// Our side's op set: "auto", "fused" or "portable" (`train.kernels`).
    #[serde(default = "fused")]
    pub kernels: String,
    /// Where every side trains (`train.device`).
    #[serde(default = "cpu_device")]
    pub device: String,
    /// Every side's compute dtype: "f32" or "bf16" (`train.dtype`).
    #[serde(default = "f32_dtype")]
    pub dtype: String,
    pub batches: Vec<PlanBatch>,
    /// Samples as our tokenizer encodes them: the PyTorch side checks its
    /// GGUF tokenizer gives the same ids.
    pub tokenizer_check: Vec<TokenizerCheck>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanLora {
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    /// PEFT module names (q_proj, …).
    pub targets: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanOptimizer {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanBatch {
    /// rows × cols token ids.
    pub ids: Vec<Vec<u32>>,
    /// rows × cols, already shifted (label[t] is the token after ids[t]), −100 = not in the loss.
    pub labels: Vec<Vec<i64>>,
    /// Tokens read (what tokens/s counts, as `her train sft` does).
    pub positions: usize,
    /// Tokens in the loss.
    pub tokens: usize,
    /// Per row, the positions of each sample packed into it; empty when
    /// every row is one sample (or one stretch of text).
    #[serde(default)]
    pub sample_lens: Vec<Vec<usize>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenizerCheck {
    /// Prompt and completion, tokenized apart (as the trainer does).
    pub parts: Vec<String>,
    pub ids: Vec<u32>,
}

/// One side's result line (ours and the Python script print the same shape).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SideResult {
    pub side: String,
    pub threads: usize,
    pub trainable_params: usize,
    pub load_s: f64,
    /// Peak RSS once the model is loaded, before the first step.
    pub load_peak_mib: f64,
    /// Peak RSS of the whole process (VmHWM / ru_maxrss).
    pub peak_mib: f64,
    pub steps: Vec<StepTiming>,
    /// CPU time the process used (user + system, all threads), load included.
    #[serde(default)]
    pub cpu_s: f64,
    /// Share of the machine's CPU time that OTHER processes used while this
    /// side ran (filled in by the parent from /proc/stat).
    #[serde(default)]
    pub others_busy: Option<f64>,
    #[serde(default)]
    pub attention: Option<String>,
    #[serde(default)]
    pub tokenizer_check: Option<TokenizerCheckResult>,
    #[serde(default)]
    pub versions: BTreeMap<String, Option<String>>,
    /// Peak GPU memory, MiB, on a GPU run (ours: the device's used memory
    /// sampled after each forward and backward; PyTorch: its allocator's
    /// peak).
    #[serde(default)]
    pub gpu_peak_mib: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenizerCheckResult {
    pub equal: usize,
    pub samples: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepTiming {
    pub loss: f64,
    pub positions: usize,
    pub forward_s: f64,
    pub backward_s: f64,
    pub optimizer_s: f64,
    pub step_s: f64,
}

impl SideResult {
    /// The measured steps: all but the first (warm-up), unless there is only one.
    pub fn measured(&self) -> &[StepTiming] {
        if self.steps.len() > 1 {
            &self.steps[1..]
        } else {
            &self.steps
        }
    }

    pub fn tokens_per_s(&self) -> f64 {
        let m = self.measured();
        let tokens: usize = m.iter().map(|s| s.positions).sum();
        let secs: f64 = m.iter().map(|s| s.step_s).sum();
        if secs > 0.0 {
            tokens as f64 / secs
        } else {
            0.0
        }
    }

    /// Mean seconds per measured step: (forward, backward, optimizer, step).
    pub fn split(&self) -> (f64, f64, f64, f64) {
        let m = self.measured();
        let n = m.len().max(1) as f64;
        let sum = |f: fn(&StepTiming) -> f64| m.iter().map(f).sum::<f64>() / n;
        (
            sum(|s| s.forward_s),
            sum(|s| s.backward_s),
            sum(|s| s.optimizer_s),
            sum(|s| s.step_s),
        )
    }
}

fn fused() -> String {
    "fused".into()
}

fn cpu_device() -> String {
    "cpu".into()
}

fn f32_dtype() -> String {
    "f32".into()
}

/// Our side: load, attach LoRA, then per batch the same work as one
/// `her train sft` step (loss, backward, accumulate, clip, AdamW). `label`
/// names the side in the progress lines on stderr. The caller fills in the
/// process's CPU time and versions.
pub fn train_side(plan: &Plan, mode: BaseMode, label: &str) -> Result<SideResult, BenchError> {
    let device = crate::device::train_device(&plan.device)?;
    let began = Instant::now();
    // What `her train` does.
    crate::memory::use_one_malloc_arena();
    let dtype = Precision::parse(&plan.dtype)?.resolve(&device)?;
    let path = Kernels::parse(&plan.kernels)?.resolve(&device, dtype)?;
    let options = LoadOptions {
        dtype,
        ..LoadOptions::new(&device)
    };
    let mut model = TrainModel::load_with(&plan.model, mode, &options)?;
    model.set_op_path(path);
    let mut gpu_peak = GpuPeak::new(&device);
    let spec = LoraSpec {
        rank: plan.lora.rank,
        alpha: plan.lora.alpha,
        dropout: plan.lora.dropout,
        targets: Target::ALL.to_vec(),
    };
    model.attach_lora(&spec, plan.seed)?;
    model.set_activation_checkpointing(plan.checkpointing);
    let params = named_params(&model.lora_params());
    let trainable: usize = params.iter().map(|(_, v)| v.as_tensor().elem_count()).sum();
    let o = &plan.optimizer;
    let mut optimizer = AdamW::new(
        params.clone(),
        AdamWConfig {
            lr: o.lr,
            beta1: o.beta1,
            beta2: o.beta2,
            eps: o.eps,
            weight_decay: o.weight_decay,
        },
    )?;
    let load_s = began.elapsed().as_secs_f64();
    let load_peak = memory_mib().1;
    let threads = candle_core::utils::get_num_threads();
    eprintln!(
        "[ours {}] loaded in {load_s:.1} s, {trainable} trainable parameters, {threads} threads",
        label
    );

    let mut steps = Vec::with_capacity(plan.batches.len());
    for (i, b) in plan.batches.iter().enumerate() {
        let rows = b.ids.len();
        let cols = b.ids.first().map_or(0, Vec::len);
        // Host tensors: the model gathers embeddings and reads labels there.
        let ids = Tensor::from_vec(b.ids.concat(), (rows, cols), &Device::Cpu)?;
        let labels = Tensor::from_vec(b.labels.concat(), (rows, cols), &Device::Cpu)?;
        let segments = match b.sample_lens.is_empty() {
            true => None,
            false => Some(Segments::from_lengths(cols, &b.sample_lens)?),
        };
        let t_start = Instant::now();
        let (loss, _) = model.packed_loss(&ids, &labels, segments.as_ref(), true, i as u64)?;
        // Reading the loss waits for the device's queue: the timing is real.
        let loss_value = f64::from(loss.to_scalar::<f32>()?);
        gpu_peak.sample();
        let t_forward = Instant::now();
        // The model's backward: it also collects what checkpointed blocks
        // computed on the side.
        let grads = model.backward(&loss)?;
        device.synchronize()?;
        gpu_peak.sample();
        let t_backward = Instant::now();
        let mut acc = Accumulator::new(params.len());
        acc.add(&params, &grads, 1.0)?;
        let missing = acc.missing(&params);
        if !missing.is_empty() {
            return Err(format!("no gradient reached {}", missing.join(", ")).into());
        }
        drop(grads);
        drop(loss);
        acc.clip(o.max_grad_norm)?;
        optimizer.step(&acc, o.lr)?;
        device.synchronize()?;
        let t_end = Instant::now();
        let step = StepTiming {
            loss: loss_value,
            positions: b.positions,
            forward_s: (t_forward - t_start).as_secs_f64(),
            backward_s: (t_backward - t_forward).as_secs_f64(),
            optimizer_s: (t_end - t_backward).as_secs_f64(),
            step_s: (t_end - t_start).as_secs_f64(),
        };
        eprintln!(
            "[ours {}] step {}/{}: loss {:.4}, {:.2} s, {:.1} tok/s, peak {:.0} MiB",
            label,
            i + 1,
            plan.batches.len(),
            step.loss,
            step.step_s,
            b.positions as f64 / step.step_s.max(1e-9),
            memory_mib().1
        );
        steps.push(step);
    }
    let result = SideResult {
        side: format!("ours-{}", label),
        threads,
        trainable_params: trainable,
        load_s,
        load_peak_mib: load_peak,
        peak_mib: memory_mib().1,
        steps,
        cpu_s: 0.0,
        others_busy: None,
        attention: None,
        tokenizer_check: None,
        versions: BTreeMap::new(),
        gpu_peak_mib: gpu_peak.mib(),
    };
    Ok(result)
}

/// The most GPU memory seen in use (total − free, so it includes the CUDA
/// context and what candle's pool keeps) over the samples taken; nothing on
/// the CPU.
struct GpuPeak {
    cuda: bool,
    peak: Option<u64>,
}

impl GpuPeak {
    fn new(device: &Device) -> Self {
        Self {
            cuda: device.is_cuda(),
            peak: None,
        }
    }

    fn sample(&mut self) {
        if !self.cuda {
            return;
        }
        if let crate::device::CudaStatus::Devices(found) = crate::device::cuda_status() {
            let used = found
                .iter()
                .map(|d| d.total_bytes.saturating_sub(d.free_bytes))
                .max();
            self.peak = self.peak.max(used);
        }
    }

    fn mib(&self) -> Option<f64> {
        self.peak.map(|b| b as f64 / (1u64 << 20) as f64)
    }
}

/// `her bench logits` (internal): the trainer's logits over the samples of
/// `data`, with `adapter` if given, written whole to `out` (safetensors:
/// `ids.I`, `completion_start.I`, `logits.I`) so scripts/check-peft.sh can
/// compare them with transformers + PEFT on the same token ids. Returns how
/// many samples were written.
pub fn dump_logits(
    model_path: &std::path::Path,
    adapter: Option<&std::path::Path>,
    data: &std::path::Path,
    out: &std::path::Path,
) -> Result<usize, BenchError> {
    let device = Device::Cpu;
    let mut model = TrainModel::load(model_path, BaseMode::Quantized, &device)?;
    if let Some(adapter) = adapter {
        model.load_lora_gguf(adapter)?;
    }
    let tokenizer = crate::tokenizer::from_gguf(model_path)?;
    let samples = crate::data::read_jsonl(data)?;
    let mut tensors: std::collections::HashMap<String, Tensor> = Default::default();
    for (i, sample) in samples.iter().enumerate() {
        let tokens = crate::data::tokenize(&tokenizer, sample)?;
        let n = tokens.ids.len();
        let ids = Tensor::from_vec(tokens.ids.clone(), (1, n), &device)?;
        let logits = model.logits(&ids)?.squeeze(0)?;
        tensors.insert(format!("ids.{i}"), ids.squeeze(0)?);
        tensors.insert(
            format!("completion_start.{i}"),
            Tensor::from_vec(vec![u32::try_from(tokens.completion_start)?], 1, &device)?,
        );
        tensors.insert(format!("logits.{i}"), logits);
    }
    candle_core::safetensors::save(&tensors, out)
        .map_err(|e| format!("writing {}: {e}", out.display()))?;
    Ok(samples.len())
}
