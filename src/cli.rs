//! Command-line interface: one subcommand per job, each with its own `run`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

mod bench;
mod eval;

pub use bench::*;
pub use eval::*;

#[derive(Debug, Parser)]
#[command(
    name = "her",
    version,
    about = "Role-play with HER-style models in the terminal: chat, rate, fine-tune, evaluate",
    long_about = "her-studio runs quantized GGUF models with llama.cpp and plays book characters in \
HER's format: the model's hidden plan (<system_thinking>), the character's inner thoughts \
(<role_thinking>), actions (<role_action>) and speech.\n\nSettings come from config.toml in the \
studio folder, the user's config file, HER_* environment variables and flags, in that order."
)]
pub struct Cli {
    /// Studio folder with config.toml, characters/, sessions/ (default: the current
    /// folder if it is one, else the user's data folder).
    #[arg(long, global = true, value_name = "DIR")]
    pub studio: Option<PathBuf>,

    /// Set any config key for this run, e.g. --set sampling.temperature=0.3 (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub set: Vec<String>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Chat with a character; --headless reads lines from stdin and streams replies to stdout.
    Chat(ChatArgs),
    /// List the characters and scenes in the studio's characters/ folder.
    Characters,
    /// Import a SillyTavern Character Card (V2/V3, .png or .json), a World Info / lorebook V3
    /// book (.json, into characters/lore/) or CoSER scene JSON; `her import adapter DIR` turns a
    /// PEFT LoRA folder into a LoRA GGUF for the chat.
    Import(ImportArgs),
    /// Export a character as a Character Card V3 (PNG also carries V2), or a lorebook as
    /// SillyTavern World Info JSON.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Print the exact prompt that would be sent, with tokens per section.
    Prompt(PromptArgs),
    /// Preference data: summary, leaderboard, inter-annotator agreement.
    #[command(subcommand)]
    Prefs(PrefsCommand),
    /// Label a queue of contexts or candidate pairs (JSONL), keyboard only; resumable.
    Annotate(AnnotateArgs),
    /// Compare two candidates with an AI judge in HER-RM's manner (both orders).
    Judge(JudgeArgs),
    /// Fine-tune a LoRA adapter on the chat's own GGUF (candle, CPU or CUDA).
    #[command(subcommand)]
    Train(TrainCommand),
    /// Mini-CoSER evaluation: the model (and adapters) play scenes, a judge and rules score
    /// four dimensions with confidence intervals; --gate promotes an adapter that regresses
    /// nowhere, on the word of a calibrated judge (`her eval calibrate`).
    Eval(EvalArgs),
    /// Check the build, devices, model file, config sources and folders.
    Doctor(ModelArgs),
    /// Measure performance against a baseline run in the same process.
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// Flags that override the [model] settings.
#[derive(Debug, Clone, Default, Args)]
pub struct ModelArgs {
    /// GGUF model to run (overrides model.path).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Context window in tokens (overrides model.n_ctx).
    #[arg(long, value_name = "TOKENS")]
    pub n_ctx: Option<u32>,
    /// Layers to offload to the GPU; needs a `cuda` build (overrides model.n_gpu_layers).
    #[arg(long, value_name = "N")]
    pub n_gpu_layers: Option<u32>,
    /// CPU threads, 0 = all cores (overrides model.threads).
    #[arg(long, value_name = "N")]
    pub threads: Option<u32>,
}

/// Flags that override the [sampling] settings.
#[derive(Debug, Clone, Default, Args)]
pub struct SamplingArgs {
    #[arg(long)]
    pub temperature: Option<f32>,
    #[arg(long)]
    pub top_p: Option<f32>,
    #[arg(long)]
    pub top_k: Option<u32>,
    #[arg(long)]
    pub min_p: Option<f32>,
    #[arg(long)]
    pub repeat_penalty: Option<f32>,
    #[arg(long, value_name = "TOKENS")]
    pub max_new_tokens: Option<u32>,
    #[arg(long)]
    pub seed: Option<u32>,
}

#[derive(Debug, Clone, Args)]
pub struct ChatArgs {
    /// Character name or file stem in characters/ (default: chat.character).
    #[arg(long, short)]
    pub character: Option<String>,
    /// Play a multi-character scene (file stem in characters/scenes/ or a path).
    #[arg(long, conflicts_with = "character")]
    pub scene: Option<String>,
    /// Read user lines from stdin and write only replies to stdout (for pipes and scripts).
    #[arg(long)]
    pub headless: bool,
    /// Print generation statistics to stderr after each reply.
    #[arg(long)]
    pub stats: bool,
    /// Reopen a session file (sessions/*.jsonl): in the TUI, or continue it
    /// in the line chat (its history feeds the prompt).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["character", "scene"])]
    pub session: Option<PathBuf>,
    /// With --session: continue in a new copy of the session (e.g. while
    /// another window has it open).
    #[arg(long, requires = "session")]
    pub fork: bool,
    /// Line chat only: write no session file (the chat is not saved).
    #[arg(long)]
    pub no_save: bool,
    /// LoRA adapter GGUF to apply.
    #[arg(long, value_name = "PATH")]
    pub adapter: Option<PathBuf>,
    /// Start at the character picker (what `her` alone does).
    #[arg(skip)]
    pub from_picker: bool,
    /// Adapter strength.
    #[arg(long, default_value_t = 1.0)]
    pub adapter_scale: f32,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub what: Option<ImportCommand>,
    /// The card (.png / .json), World Info / lorebook V3 (.json) or CoSER JSON file.
    #[arg(required = true)]
    pub path: Option<PathBuf>,
    /// Replace a character, scene or lorebook file of the same name.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ImportCommand {
    /// A PEFT LoRA folder (adapter_config.json + adapter_model.safetensors, as TRL, Unsloth
    /// or `her train` write it) for the chat's model → a LoRA GGUF that `/adapter` loads.
    Adapter(ImportAdapterArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ImportAdapterArgs {
    /// The PEFT adapter folder.
    #[arg(value_name = "PEFT_DIR")]
    pub dir: PathBuf,
    /// The base model's GGUF the adapter was trained for (default: model.path).
    #[arg(long, value_name = "GGUF")]
    pub model: Option<PathBuf>,
    /// Output LoRA GGUF (default: adapters/<folder name>.gguf in the studio).
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// A character as a card.
    Card(ExportCardArgs),
    /// The active branch of a session as text, Markdown or SillyTavern chat JSONL.
    Session(ExportSessionArgs),
    /// Preference data as TRL DPO / KTO / SFT or HER-RM JSONL.
    Prefs(ExportPrefsArgs),
    /// A lorebook (characters/lore/NAME.toml) as SillyTavern World Info JSON.
    Lore(ExportLoreArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ExportLoreArgs {
    /// Book file stem or book name.
    pub name: String,
    /// Output file (default: <name>.json in the current folder).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

/// Which preference records to use.
#[derive(Debug, Clone, Default, Args)]
pub struct PrefsFilterArgs {
    /// Only this character (repeatable).
    #[arg(long = "character", value_name = "NAME")]
    pub characters: Vec<String>,
    /// Only this annotator (repeatable; "judge:*" matches every judge).
    #[arg(long = "annotator", value_name = "ID")]
    pub annotators: Vec<String>,
    /// From this date on (YYYY-MM-DD or RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Up to this date (inclusive).
    #[arg(long)]
    pub until: Option<String>,
    /// Keep only records whose endorsed reply passes the format linter:
    /// no-errors or no-warnings.
    #[arg(long, value_name = "LEVEL")]
    pub min_health: Option<String>,
    /// Leave out preferences inferred from kept swipes and edits.
    #[arg(long)]
    pub no_implicit: bool,
    /// Pairs from a rewritten plan or thought (`/plan`, `/thought`): keep, drop or only.
    #[arg(long, value_name = "keep|drop|only")]
    pub thinking_edits: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ExportPrefsArgs {
    /// dpo, kto, sft, her-rm, or all (one file each in --out).
    #[arg(long, default_value = "all")]
    pub format: String,
    /// Output file (one format) or folder (all); default ./prefs-<format>.jsonl or ./prefs-export/.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub filter: PrefsFilterArgs,
}

#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// Supervised fine-tuning on HER samples: loss on the final assistant turn only.
    Sft(SftArgs),
    /// Direct preference optimisation on chosen / rejected pairs.
    Dpo(PrefTrainArgs),
    /// KTO on unpaired thumbs: replies labelled good or bad.
    Kto(PrefTrainArgs),
    /// Online RL (GRPO family): sample replies, score them (judge, format, layout
    /// diversity, a text rule, your own stars), update the adapter, swap it in, repeat.
    Rl(RlArgs),
    /// Predict a run's peak memory term by term (base weights, LoRA + AdamW, activations,
    /// dequantized tile, loss head, runtime) against the device's memory, and what would fit.
    /// Reads only the GGUF's header; flags override [train].
    Plan(PlanArgs),
}

/// `her train plan`.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// GGUF whose header gives the shape (default: model.path).
    #[arg(long, value_name = "PATH", conflicts_with = "shape")]
    pub model: Option<PathBuf>,
    /// A named shape instead of a file: qwen3-1.7b, qwen3-8b, qwen3-32b (HER-32B), smollm2.
    #[arg(long, value_name = "NAME")]
    pub shape: Option<String>,
    /// Bits per weight of a named shape's matrices (Q4_K_M ≈ 4.85, Q8_0 = 8.5, F16 = 16).
    #[arg(long, value_name = "BITS", default_value_t = 4.85)]
    pub bpw: f64,
    /// cpu or cuda (default: train.device).
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<String>,
    /// The memory to plan against, in GiB (default: train.memory_limit_gib, else the device's
    /// free memory).
    #[arg(long, value_name = "GIB")]
    pub memory_gib: Option<f64>,
    /// Rows per micro-batch (default: train.batch_size).
    #[arg(long)]
    pub batch: Option<u32>,
    /// Tokens per row (default: train.max_seq_len).
    #[arg(long)]
    pub seq: Option<u32>,
    /// LoRA rank (default: train.rank).
    #[arg(long)]
    pub rank: Option<u32>,
    /// Adapted projections, comma-separated: q,k,v,o,gate,up,down (default: train.targets).
    #[arg(long, value_delimiter = ',')]
    pub targets: Option<Vec<String>>,
    /// Activation dtype: f32 or bf16 (default: train.dtype, whose "auto" is bf16 on cuda, f32 on cpu).
    #[arg(long)]
    pub dtype: Option<String>,
    /// Activation checkpointing: --checkpointing, or --checkpointing false (default:
    /// train.activation_checkpointing).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub checkpointing: Option<bool>,
    /// quantized or dequantized (default: train.base).
    #[arg(long)]
    pub base: Option<String>,
}

/// What every training method shares: the run folder, resuming, the gate
/// and the model.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Run folder name under paths.runs (default: date and data name).
    #[arg(long)]
    pub name: Option<String>,
    /// Continue the run in this folder from its newest checkpoint (same settings and data).
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "name")]
    pub resume: Option<PathBuf>,
    /// After training, evaluate the adapter against the one promoted for chat.character (or
    /// the base model) and promote it only when no dimension regresses (see `her eval --gate`).
    #[arg(long)]
    pub gate: bool,
    /// Print this run's memory plan (predicted peak, the device's memory, what would fit) and
    /// exit without training.
    #[arg(long)]
    pub plan: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Methods that can start from an adapter.
#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// Start from this adapter (e.g. an SFT run's adapter.gguf); it is also the reference.
    #[arg(long, value_name = "ADAPTER.gguf")]
    pub init_adapter: Option<PathBuf>,
}

impl TrainCommand {
    /// The arguments every method shares (`plan` is no run).
    pub fn run_args(&self) -> Option<&RunArgs> {
        match self {
            Self::Sft(a) => Some(&a.run),
            Self::Dpo(a) | Self::Kto(a) => Some(&a.run),
            Self::Rl(a) => Some(&a.run),
            Self::Plan(_) => None,
        }
    }

    /// The run's kind, as run.json names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Sft(_) => "sft",
            Self::Dpo(_) => "dpo",
            Self::Kto(_) => "kto",
            Self::Rl(_) => "rl",
            Self::Plan(_) => "plan",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct RlArgs {
    /// Prompts as JSONL: {"messages": [...]} (a trailing assistant turn is dropped) or
    /// {"prompt": [...]}, with an optional "character" (repeatable).
    #[arg(long = "prompts", value_name = "FILE", required_unless_present_any = ["from_sessions", "queue", "plan"])]
    pub prompts: Vec<PathBuf>,
    /// Annotation queue files: their contexts are the prompts (repeatable).
    #[arg(long = "queue", value_name = "QUEUE.jsonl")]
    pub queue: Vec<PathBuf>,
    /// The contexts of the replies kept in the studio's sessions.
    #[arg(long)]
    pub from_sessions: bool,
    /// With --from-sessions: only this character.
    #[arg(long, requires = "from_sessions")]
    pub character: Option<String>,
    /// Judge GGUF for the pairwise reward (default: the [judge] section).
    #[arg(long, value_name = "PATH")]
    pub judge_model: Option<PathBuf>,
    #[command(flatten)]
    pub init: InitArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `her train dpo` and `her train kto`.
#[derive(Debug, Clone, Args)]
pub struct PrefTrainArgs {
    /// TRL JSONL: DPO pairs (prompt / chosen / rejected) or, for kto, prompt / completion /
    /// label (`her export prefs --format dpo|kto`).
    #[arg(
        long = "data",
        value_name = "FILE",
        required_unless_present_any = ["from_prefs", "plan"]
    )]
    pub data: Vec<PathBuf>,
    /// Use the studio's preferences (arena, annotations, kept swipes, judges; ratings for kto).
    #[arg(long)]
    pub from_prefs: bool,
    #[command(flatten)]
    pub filter: PrefsFilterArgs,
    /// β: how far the policy may move from the reference.
    #[arg(long, default_value_t = 0.1)]
    pub beta: f64,
    #[command(flatten)]
    pub init: InitArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Clone, Args)]
pub struct SftArgs {
    /// Samples as JSONL, one {"messages": [...]} per line (HER's layout; repeatable).
    #[arg(long = "data", value_name = "FILE", required_unless_present_any = ["from_sessions", "resume", "plan"])]
    pub data: Vec<PathBuf>,
    /// Learn from the replies kept in the studio's sessions (the active branches).
    #[arg(long)]
    pub from_sessions: bool,
    /// With --from-sessions: only replies rated at least this many stars (or thumbs up).
    #[arg(long, value_name = "1-5", requires = "from_sessions")]
    pub min_stars: Option<u8>,
    /// With --from-sessions: only this character.
    #[arg(long, requires = "from_sessions")]
    pub character: Option<String>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum PrefsCommand {
    /// Counts of ratings and pairs by character, annotator and source, and what was skipped.
    Summary(PrefsFilterArgs),
    /// Bradley–Terry scores with bootstrap 95% intervals for every adapter / model
    /// that wrote candidates, overall and per character.
    Leaderboard(LeaderboardArgs),
    /// Cohen's kappa per annotator pair and Krippendorff's alpha on items labelled twice or more.
    Agreement(AgreementArgs),
    /// Add preference logs from other machines (prefs folders or .jsonl files) to this
    /// studio: new records only, appended to prefs/merged/ANNOTATOR.jsonl.
    Merge(PrefsMergeArgs),
}

#[derive(Debug, Clone, Args)]
pub struct PrefsMergeArgs {
    /// Folders (searched for *.jsonl at any depth) or .jsonl files.
    #[arg(required = true)]
    pub sources: Vec<PathBuf>,
    /// Report what would be added without writing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Args)]
pub struct LeaderboardArgs {
    /// Bootstrap resamples for the intervals.
    #[arg(long, default_value_t = 1000)]
    pub resamples: usize,
    #[command(flatten)]
    pub filter: PrefsFilterArgs,
}

#[derive(Debug, Clone, Args)]
pub struct AgreementArgs {
    /// Count AI judges as annotators too.
    #[arg(long)]
    pub include_judges: bool,
    #[command(flatten)]
    pub filter: PrefsFilterArgs,
}

#[derive(Debug, Clone, Args)]
pub struct AnnotateArgs {
    /// The queue: one JSON object per line with id, character, context and 0–2 candidates.
    pub queue: PathBuf,
    /// Annotator id (default: prefs.annotator).
    #[arg(long)]
    pub annotator: Option<String>,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Debug, Clone, Args)]
pub struct JudgeArgs {
    /// A queue file (JSONL) whose items have two candidates; default: the human pairs
    /// already in the studio (to measure how often the judge agrees with people).
    pub pairs: Option<PathBuf>,
    /// At most this many items.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Print each verdict's principles.
    #[arg(long)]
    pub show_principles: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ExportSessionArgs {
    /// The session file (sessions/*.jsonl).
    pub file: PathBuf,
    /// txt, md or st (SillyTavern chat JSONL with alternatives in swipes).
    #[arg(long, default_value = "md")]
    pub format: String,
    /// Leave out the characters' inner thoughts.
    #[arg(long)]
    pub no_thoughts: bool,
    /// Output file (default: next to the session, with the format's extension).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ExportCardArgs {
    /// Character name or file stem.
    pub name: String,
    /// Write a PNG card (the default).
    #[arg(long, conflicts_with = "json")]
    pub png: bool,
    /// Write a JSON card.
    #[arg(long)]
    pub json: bool,
    /// Output file (default: <name>.png or <name>.json in the current folder).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct PromptArgs {
    /// Character name or file stem (default: chat.character).
    #[arg(long, short)]
    pub character: Option<String>,
    /// A transcript line "Speaker: text" (repeatable, in order). Default: one
    /// greeting from the user persona.
    #[arg(long = "line", value_name = "SPEAKER: TEXT")]
    pub lines: Vec<String>,
    /// Build the prompt for the next reply of a saved session (its active branch).
    #[arg(long, value_name = "FILE", conflicts_with = "lines")]
    pub session: Option<PathBuf>,
    /// HER's "training" or "evaluation" system-prompt layout (default: chat.prompt_variant).
    #[arg(long)]
    pub variant: Option<String>,
    /// Only the table of token counts, not the prompt text.
    #[arg(long)]
    pub counts_only: bool,
    /// Also attach this lorebook of characters/lore/ (repeatable), as
    /// `/lore attach` does in a session.
    #[arg(long = "lore", value_name = "BOOK")]
    pub lore: Vec<String>,
    #[command(flatten)]
    pub model: ModelArgs,
}

impl ModelArgs {
    /// As dotted config overrides.
    pub fn overrides(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(p) = &self.model {
            // A path typed on the command line is relative to where the user is,
            // not to the studio folder (as paths inside config files are).
            let p = std::path::absolute(p).unwrap_or_else(|_| p.clone());
            out.push(("model.path".into(), p.display().to_string()));
        }
        push(&mut out, "model.n_ctx", self.n_ctx);
        push(&mut out, "model.n_gpu_layers", self.n_gpu_layers);
        push(&mut out, "model.threads", self.threads);
        out
    }
}

impl SamplingArgs {
    pub fn overrides(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        push(&mut out, "sampling.temperature", self.temperature);
        push(&mut out, "sampling.top_p", self.top_p);
        push(&mut out, "sampling.top_k", self.top_k);
        push(&mut out, "sampling.min_p", self.min_p);
        push(&mut out, "sampling.repeat_penalty", self.repeat_penalty);
        push(&mut out, "sampling.max_new_tokens", self.max_new_tokens);
        push(&mut out, "sampling.seed", self.seed);
        out
    }
}

fn push<T: ToString>(out: &mut Vec<(String, String)>, key: &str, value: Option<T>) {
    if let Some(v) = value {
        out.push((key.to_string(), v.to_string()));
    }
}

impl ChatArgs {
    /// `her` with no subcommand: an interactive chat with the default character.
    pub fn interactive_default() -> Self {
        Self {
            character: None,
            scene: None,
            headless: false,
            stats: false,
            session: None,
            fork: false,
            no_save: false,
            from_picker: true,
            adapter: None,
            adapter_scale: 1.0,
            model: ModelArgs::default(),
            sampling: SamplingArgs::default(),
        }
    }
}
