//! `her bench …`: the benchmarks' arguments.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Engine tokens/s against a bare llama-cpp-2 loop, and KV reuse over a 20-turn chat.
    Engine(BenchEngineArgs),
    /// Decode tokens/s with the full sampler chain (DRY, XTC, banned phrases) against the
    /// default chain, on one engine.
    Samplers(BenchSamplersArgs),
    /// Internal: one bare llama-cpp-2 run in its own process, for `bench engine`.
    #[command(hide = true)]
    BareLoop(BareLoopArgs),
    /// LoRA SFT tokens/s and peak memory on the model's GGUF (quantized and dequantized base),
    /// side by side with PyTorch + PEFT on the same batches (not run in CI).
    Train(BenchTrainArgs),
    /// Internal: our training steps in their own process, for `bench train`.
    #[command(hide = true)]
    TrainLoop(TrainLoopArgs),
    /// Peak memory of one decoder layer's forward and backward (a mid-size Qwen3 shape,
    /// LoRA on all seven projections) against sequence length: linear with tiled attention.
    #[command(hide = true)]
    Attention(BenchAttentionArgs),
    /// Internal: one length of `bench attention` in its own process.
    #[command(hide = true)]
    AttentionLayer(AttentionLayerArgs),
    /// Internal: the trainer's logits (candle) over samples, with an adapter, for
    /// scripts/check-peft.sh to compare with transformers + PEFT.
    #[command(hide = true)]
    Logits(BenchLogitsArgs),
    /// RL rollout tokens/s against plain generation of the same prompts and seeds
    /// (one by one and batched), and how RL step time splits between adapter swap,
    /// rollout, scoring and update.
    Rl(BenchRlArgs),
    /// The trainer's portable path on a CUDA device against the fused CPU path (loss,
    /// log-probs and every LoRA gradient of one step, f32 and bf16): scripts/gpu-check.
    GpuParity(BenchGpuParityArgs),
}

#[derive(Debug, Clone, Args)]
pub struct BenchGpuParityArgs {
    /// GGUF model compared besides the tiny ones (default: model.path).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// The device under test: cuda or cuda:N (cpu compares the CPU's portable path).
    #[arg(long, default_value = "cuda")]
    pub device: String,
}

#[derive(Debug, Clone, Args)]
pub struct BenchRlArgs {
    /// GGUF model (default: model.path).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Prompts JSONL (default: assets/datasets/elizabeth-sft.jsonl in the studio).
    #[arg(long, value_name = "FILE")]
    pub prompts: Option<PathBuf>,
    /// RL steps.
    #[arg(long, default_value_t = 4)]
    pub steps: u32,
    /// Replies per prompt.
    #[arg(long, default_value_t = 4)]
    pub group: u32,
    /// Prompts per step.
    #[arg(long, default_value_t = 2)]
    pub prompts_per_step: u32,
    /// Reply length in tokens.
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: u32,
    /// Score with the pairwise judge (the model itself) as well as format and layout.
    #[arg(long)]
    pub judge: bool,
}

#[derive(Debug, Clone, Args)]
pub struct BenchTrainArgs {
    /// GGUF model (default: model.path).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Training steps per side; the first is a warm-up and not in tokens/s.
    #[arg(long, default_value_t = 6)]
    pub steps: usize,
    /// Sequences per batch.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 256)]
    pub seq: usize,
    /// Text to pack into the batches: HER messages JSONL (default:
    /// assets/datasets/elizabeth-sft.jsonl in the studio; seeded random ids if absent).
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Which positions are in the loss: `all` (every next token; the same work on
    /// both sides) or `completion` (only assistant turns, as `her train sft` does).
    #[arg(long, default_value = "all", value_parser = ["all", "completion"])]
    pub labels: String,
    /// CPU threads for every side (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: u32,
    /// Learning rate (constant; AdamW on both sides).
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f64,
    /// Only our side (no PyTorch baseline).
    #[arg(long)]
    pub skip_torch: bool,
    /// Activation (gradient) checkpointing on every side: each decoder block
    /// is recomputed in backward instead of keeping its activations.
    #[arg(long)]
    pub checkpointing: bool,
    /// Our trainer's op set (`train.kernels`): the fused CPU kernels, the
    /// portable candle ops a GPU runs, or auto (fused on the CPU in f32,
    /// portable otherwise).
    #[arg(long, default_value = "auto", value_parser = ["auto", "fused", "portable"])]
    pub kernels: String,
    /// Where every side trains (`train.device`): cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Every side's compute dtype (`train.dtype`; PyTorch's base dtype): f32 or bf16.
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16"])]
    pub dtype: String,
    /// Only this base mode of ours: quantized or dequantized (default: both).
    #[arg(long, value_parser = ["quantized", "dequantized"])]
    pub base: Option<String>,
    /// Positions per packed row in the packing comparison (0 = train.max_seq_len).
    #[arg(long, default_value_t = 0)]
    pub pack_len: usize,
    /// Leave out the packing comparison (our trainer on the data's SFT
    /// micro-batches with train.packing off and on: useful tokens/s).
    #[arg(long)]
    pub skip_packing: bool,
}

#[derive(Debug, Clone, Args)]
pub struct BenchAttentionArgs {
    /// Sequence lengths, comma-separated; each runs in its own child process.
    #[arg(
        long = "t",
        value_delimiter = ',',
        default_value = "512,1024,2048,4096"
    )]
    pub lengths: Vec<usize>,
    /// Which attention the layer runs.
    #[arg(long, default_value = "fused", value_parser = ["fused", "portable"])]
    pub kernels: String,
    /// CPU threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: u32,
}

#[derive(Debug, Clone, Args)]
pub struct AttentionLayerArgs {
    #[arg(long = "t")]
    pub length: usize,
    #[arg(long, value_parser = ["fused", "portable"])]
    pub kernels: String,
}

#[derive(Debug, Clone, Args)]
pub struct BenchLogitsArgs {
    /// GGUF model (default: model.path).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// LoRA GGUF to apply.
    #[arg(long, value_name = "ADAPTER.gguf")]
    pub adapter: Option<PathBuf>,
    /// Samples as JSONL, one {"messages": [...]} per line (as `her train sft` reads them).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// Output safetensors: per sample N, `ids.N` (u32), `completion_start.N` (u32) and
    /// `logits.N` (positions × vocab, f32).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct TrainLoopArgs {
    /// The plan (batches and settings) written by `bench train`.
    #[arg(long)]
    pub plan: PathBuf,
    /// quantized or dequantized.
    #[arg(long)]
    pub base: String,
}

#[derive(Debug, Clone, Args)]
pub struct BareLoopArgs {
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long)]
    pub n_ctx: u32,
    #[arg(long)]
    pub n_batch: u32,
    #[arg(long)]
    pub threads: u32,
    #[arg(long, default_value_t = 0)]
    pub n_gpu_layers: u32,
    /// on or off.
    #[arg(long, default_value = "off", value_parser = ["on", "off"])]
    pub flash_attn: String,
    /// The prompt text (default: a short story request).
    #[arg(long, value_name = "FILE")]
    pub prompt_file: Option<PathBuf>,
    /// The sampling settings as JSON.
    #[arg(long)]
    pub sampling: String,
}

#[derive(Debug, Clone, Args)]
pub struct BenchSamplersArgs {
    #[command(flatten)]
    pub decode: DecodeBenchArgs,
}

/// What every decode benchmark takes: the model, how much to generate, how
/// often, and on how many threads.
#[derive(Debug, Clone, Args)]
pub struct DecodeBenchArgs {
    /// GGUF model, or `tiny` for the generated random-weight Qwen3 test model.
    #[arg(long, value_name = "PATH|tiny")]
    pub model: Option<String>,
    /// Tokens generated per run.
    #[arg(long, default_value_t = 256)]
    pub tokens: usize,
    /// Runs per side, alternating the sides (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// CPU threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: u32,
}

#[derive(Debug, Clone, Args)]
pub struct BenchEngineArgs {
    #[command(flatten)]
    pub decode: DecodeBenchArgs,
    /// Context depths (prompt tokens) at which decode speed is measured.
    #[arg(long, value_delimiter = ',', default_value = "0,2000")]
    pub depths: Vec<usize>,
    /// Turns in the scripted chat (30 grow it past 2,000 tokens of context).
    #[arg(long, default_value_t = 30)]
    pub turns: usize,
    /// Layers on the GPU (default: model.n_gpu_layers).
    #[arg(long)]
    pub n_gpu_layers: Option<u32>,
}
