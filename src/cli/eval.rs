//! `her eval …`: mini-CoSER, the gate and judge calibration.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::ModelArgs;

#[derive(Debug, Clone, Default, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EvalArgs {
    #[command(subcommand)]
    pub command: Option<EvalCommand>,
    /// Scenes: file stems in characters/scenes/, scene .toml files or CoSER .json files
    /// (default: every scene in characters/scenes/).
    #[arg(value_name = "SCENE")]
    pub scenes: Vec<String>,
    /// An adapter to compare with the base model on the same scenes and seeds (repeatable).
    #[arg(long = "adapter", value_name = "ADAPTER.gguf")]
    pub adapters: Vec<PathBuf>,
    /// Compare BASELINE with CANDIDATE (each `base` or an adapter GGUF) and promote CANDIDATE
    /// for --character when no dimension regresses beyond its 95% interval.
    #[arg(long, num_args = 2, value_names = ["BASELINE", "CANDIDATE"], conflicts_with = "adapters")]
    pub gate: Option<Vec<String>>,
    /// The character the gate promotes for (name or file stem; default: chat.character).
    #[arg(long, short)]
    pub character: Option<String>,
    /// The judge GGUF (default: eval.judge_model, else the judge [judge] names).
    #[arg(long, value_name = "PATH")]
    pub judge_model: Option<PathBuf>,
    /// The judge's context window (default: model.n_ctx).
    #[arg(long, value_name = "TOKENS")]
    pub judge_n_ctx: Option<u32>,
    /// Turns per scene at most (default: eval.rounds).
    #[arg(long)]
    pub rounds: Option<u32>,
    /// Seeds per scene, from sampling.seed on (default: eval.seeds).
    #[arg(long)]
    pub seeds: Option<u32>,
    /// Longest turn in tokens (default: eval.max_new_tokens).
    #[arg(long, value_name = "TOKENS")]
    pub max_new_tokens: Option<u32>,
    /// Who speaks next: model or random (default: eval.next_speaker).
    #[arg(long, value_parser = ["model", "random"])]
    pub next_speaker: Option<String>,
    /// Leave out the Environment narrator even in scenes that have one.
    #[arg(long)]
    pub no_environment: bool,
    /// Bootstrap resamples (default: eval.resamples).
    #[arg(long)]
    pub resamples: Option<u32>,
    /// Folder name under paths.evals (default: the date and time).
    #[arg(long)]
    pub name: Option<String>,
    /// Do not save the played scenes as sessions.
    #[arg(long)]
    pub no_sessions: bool,
    /// Sampler seed of the first seed, and the bootstrap's (default: sampling.seed).
    #[arg(long)]
    pub seed: Option<u32>,
    /// Sampling temperature of the actors (default: sampling.temperature).
    #[arg(long)]
    pub temperature: Option<f32>,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Debug, Clone, Subcommand)]
pub enum EvalCommand {
    /// Check the judge on shipped scene pairs (clean and with a planted flaw): how often it
    /// scores the flawed one lower, per dimension. The gate trusts only a judge that passed.
    Calibrate(CalibrateArgs),
}

#[derive(Debug, Clone, Default, Args)]
pub struct CalibrateArgs {
    /// The judge GGUF (default: eval.judge_model, else the judge [judge] names).
    #[arg(long, value_name = "PATH")]
    pub judge_model: Option<PathBuf>,
    /// The judge's context window (default: model.n_ctx).
    #[arg(long, value_name = "TOKENS")]
    pub judge_n_ctx: Option<u32>,
    /// A folder of calibration scenes (default: the studio's assets/eval/calibration/, else
    /// the built-in set).
    #[arg(long, value_name = "DIR")]
    pub calibration_set: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
}
