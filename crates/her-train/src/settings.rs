//! The `[train]`, `[kto]` and `[rl]` sections: what the trainer interprets.
//! A run's `run.json` stores them, so they live with the trainer.

use serde::{Deserialize, Serialize};

/// LoRA fine-tuning (`her train`). A run's `run.json` stores these; keys
/// added since an older run wrote its file take their defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub rank: u32,
    pub alpha: f64,
    pub dropout: f64,
    /// Projections to adapt: q, k, v, o, gate, up, down.
    pub targets: Vec<String>,
    /// "quantized" keeps the GGUF weights quantized (QLoRA); "dequantized" uses f32.
    pub base: String,
    /// "cpu", or "cuda" in a build with the `cuda` feature (see [`crate::device`]).
    pub device: String,
    /// The trainer's op set: "fused" (CPU kernels), "portable" (candle ops
    /// that run on any device) or "auto" (fused on the CPU, portable on a
    /// GPU).
    pub kernels: String,
    /// The dtype activations and dequantized weights are computed in: "f32",
    /// "bf16", or "auto" (bf16 on a GPU that has bf16 kernels, f32 on the
    /// CPU). LoRA weights, optimizer state and the loss are f32 always.
    pub dtype: String,
    pub learning_rate: f64,
    pub warmup_steps: u32,
    pub epochs: u32,
    /// 0 = as many steps as the epochs take.
    pub max_steps: u32,
    pub batch_size: u32,
    pub grad_accum: u32,
    /// 0 = no clipping.
    pub max_grad_norm: f64,
    /// Steps in a row whose loss or gradient norm is not finite (each is
    /// skipped) before the run stops.
    #[serde(default = "default_max_nonfinite_steps")]
    pub max_nonfinite_steps: u32,
    pub weight_decay: f64,
    /// Final learning rate as a fraction of the peak (cosine decay).
    pub lr_floor: f64,
    pub max_seq_len: u32,
    pub eval_fraction: f64,
    /// Recompute each layer's activations in the backward pass instead of
    /// keeping them (and the loss head's logits): much less memory for about half again the time.
    pub activation_checkpointing: bool,
    /// Steps between held-out evaluations (0 = only at the end).
    pub eval_every: u32,
    /// Steps between checkpoints (0 = only at the end and on ctrl+c).
    pub checkpoint_every: u32,
    pub seed: u32,
    /// Hugging Face id of the model the GGUF was converted from, written as
    /// the PEFT export's `base_model_name_or_path`; empty = the id the GGUF
    /// names, else a placeholder.
    pub hf_base_model: String,
    /// SFT: several samples per row of `max_seq_len` positions, each
    /// attending only to itself (TRL's padding-free packing).
    pub packing: bool,
    /// SFT: "last" (the final assistant turn, HER's layout) or "all"
    /// (every assistant turn).
    pub loss_on: String,
    /// SFT: export the checkpoint with the lowest held-out loss instead of
    /// the final weights.
    pub load_best_model_at_end: bool,
    /// SFT: stop after this many held-out evaluations without an
    /// improvement (0 = never).
    pub early_stopping_patience: u32,
    /// SFT: how much lower than the best a held-out loss must be to count
    /// as an improvement for early stopping.
    pub early_stopping_threshold: f64,
    /// Memory a run may use, in GiB; 0 = the device's free memory. A run
    /// whose memory plan needs more than 95% of it is refused. It does not
    /// shape the run: see [`TrainConfig::shaping`].
    pub memory_limit_gib: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            rank: 16,
            alpha: 32.0,
            dropout: 0.05,
            targets: ["q", "k", "v", "o", "gate", "up", "down"]
                .map(String::from)
                .to_vec(),
            base: "quantized".into(),
            device: "cpu".into(),
            kernels: "auto".into(),
            dtype: "auto".into(),
            learning_rate: 2e-4,
            warmup_steps: 10,
            epochs: 3,
            max_steps: 0,
            batch_size: 4,
            grad_accum: 1,
            max_grad_norm: 1.0,
            max_nonfinite_steps: default_max_nonfinite_steps(),
            weight_decay: 0.0,
            lr_floor: 0.1,
            max_seq_len: 1024,
            eval_fraction: 0.1,
            activation_checkpointing: false,
            eval_every: 20,
            checkpoint_every: 50,
            seed: 42,
            hf_base_model: String::new(),
            packing: true,
            loss_on: "last".into(),
            load_best_model_at_end: true,
            early_stopping_patience: 0,
            early_stopping_threshold: 0.0,
            memory_limit_gib: 0.0,
        }
    }
}

impl TrainConfig {
    /// The settings that shape a run's result, which a checkpoint is tied
    /// to: the machine's memory limit is left at its default, so changing
    /// it never stops a `--resume`.
    pub fn shaping(&self) -> Self {
        Self {
            memory_limit_gib: Self::default().memory_limit_gib,
            ..self.clone()
        }
    }
}

/// Run folders written before the setting existed read as the default.
fn default_max_nonfinite_steps() -> u32 {
    3
}

/// KTO (`her train kto`) as TRL's `KTOTrainer` defines it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KtoConfig {
    /// Weight of the desirable replies' losses (TRL's `desirable_weight`).
    pub desirable_weight: f64,
    /// Weight of the undesirable replies' losses (TRL's `undesirable_weight`).
    pub undesirable_weight: f64,
    /// How z₀, the reference point, is estimated: "mismatched" (TRL and the
    /// KTO paper: the policy's KL to the reference on the batch's prompts
    /// paired with other samples' completions) or "batch_mean" (the clamped
    /// mean of the batch's own rewards).
    pub reference_point: String,
}

impl Default for KtoConfig {
    fn default() -> Self {
        Self {
            desirable_weight: 1.0,
            undesirable_weight: 1.0,
            reference_point: "mismatched".into(),
        }
    }
}

/// Online reward-weighted RL (`her train rl`, GRPO family). The LoRA,
/// optimizer and checkpoint settings come from `[train]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RlConfig {
    /// Optimizer steps (rounds of rollouts and one update).
    pub steps: u32,
    /// Prompts per step.
    pub prompts_per_step: u32,
    /// Replies sampled per prompt (the group advantages are normalised in).
    pub group_size: u32,
    pub temperature: f64,
    pub max_new_tokens: u32,
    /// Weight of the per-token KL penalty to the reference.
    pub kl_beta: f64,
    /// PPO clip range of the probability ratio.
    pub clip_epsilon: f64,
    /// Gradient steps on each batch of rollouts (1 = on-policy).
    pub updates_per_batch: u32,
    /// Divide advantages by the group's standard deviation (GRPO); false
    /// keeps only the mean subtracted (Dr. GRPO).
    pub scale_advantages: bool,
    /// Reload the engine's model every N adapter swaps (llama.cpp frees
    /// adapters only with the model).
    pub reload_every: u32,
    /// Weights of the reward parts; 0 turns a part off.
    pub reward_judge: f64,
    pub reward_format: f64,
    pub reward_layout: f64,
    pub reward_contains: f64,
    pub reward_human: f64,
    /// The text the `contains` reward looks for.
    pub contains_text: String,
    /// Rollouts the layout monitor looks back over.
    pub layout_window: u32,
    /// Warn when one think/act/speech layout takes this share of the window.
    pub layout_warn_share: f64,
}

impl Default for RlConfig {
    fn default() -> Self {
        Self {
            steps: 50,
            prompts_per_step: 2,
            group_size: 4,
            temperature: 1.0,
            max_new_tokens: 192,
            kl_beta: 0.04,
            clip_epsilon: 0.2,
            updates_per_batch: 1,
            scale_advantages: true,
            reload_every: 8,
            reward_judge: 1.0,
            reward_format: 0.5,
            reward_layout: 0.1,
            reward_contains: 0.0,
            reward_human: 0.0,
            contains_text: "<role_action>".into(),
            layout_window: 64,
            layout_warn_share: 0.8,
        }
    }
}
