//! `her bench engine`: (a) engine decode speed at several context depths
//! against a bare llama-cpp-2 decode loop with the same sampler, with flash
//! attention off and on; (b) KV-cache reuse and time-to-first-token over a
//! scripted multi-turn chat.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};

use super::median;
use crate::app::AppContext;
use crate::cli::{BareLoopArgs, BenchEngineArgs};
use crate::config::SamplingConfig;
use her_core::chatml;
use her_engine::dialogue::Conversation;
use her_engine::local::Vocab;
use her_engine::local::bare::{BareOptions, bare_loop};
use her_engine::{Backend, GenerateRequest, GenerationStats, LocalEngine, LocalEngineOptions};
use her_gguf::fixture::write_tiny_qwen3;

pub(super) const THROUGHPUT_PROMPT: &str = "<|im_start|>system\nYou are a storyteller.<|im_end|>\n<|im_start|>user\nTell me a long story about a ship in a storm.<|im_end|>\n<|im_start|>assistant\n";

const SCRIPT: &[&str] = &[
    "Good evening. Are you enjoying the ball?",
    "I hear you have read a great deal this winter.",
    "What do you make of the new arrivals at Netherfield?",
    "Do you think first impressions can be trusted?",
    "Your sister seems very happy tonight.",
    "Would you dance the next set with me?",
    "Why do you smile like that?",
    "I confess I do not understand your meaning.",
    "Is there anything you would change about Meryton?",
    "What would you do if you were very rich?",
    "Do you care for music?",
    "Which book would you take on a long journey?",
    "Have you ever been wrong about someone?",
    "The weather has been dreadful this week.",
    "What does your father think of all these visitors?",
    "Would you ever leave Longbourn?",
    "Tell me something nobody knows about you.",
    "Are you laughing at me?",
    "I think I shall go and find some punch.",
    "Good night, then. Until tomorrow.",
];

/// `--model PATH|tiny`, or the configured model.
pub(super) fn bench_model(app: &AppContext, model: Option<&str>) -> anyhow::Result<PathBuf> {
    Ok(match model {
        Some("tiny") => tiny_model()?,
        Some(path) => PathBuf::from(path),
        None => app.model_path(),
    })
}

pub fn run(app: &AppContext, args: &BenchEngineArgs) -> anyhow::Result<()> {
    let model_path = bench_model(app, args.decode.model.as_deref())?;
    let mut options = app.config().model.engine_options(model_path.clone());
    options.threads = args.decode.threads;
    if let Some(layers) = args.n_gpu_layers {
        options.n_gpu_layers = layers;
    }
    let deepest = args.depths.iter().copied().max().unwrap_or(0);
    // Room for the deepest prompt and the reply, equal on both sides.
    options.n_ctx = options
        .n_ctx
        .max(4096)
        .max((deepest + args.decode.tokens + 64).next_power_of_two() as u32);
    println!(
        "model: {}  threads: {}  n_ctx: {}  n_batch: {}  n_gpu_layers: {}  model.flash_attention: {}",
        model_path.display(),
        options.effective_threads(),
        options.n_ctx,
        options.n_batch,
        options.n_gpu_layers,
        options.flash_attention.as_str()
    );

    let mut sampling = app.config().sampling.clone();
    sampling.max_new_tokens = args.decode.tokens as u32;
    // Every token is decoded whatever it is: a stop string would end runs early.
    sampling.stop.clear();

    // (a) At each depth, the bare loop with flash attention on and off
    // (each in a child process) and the engine with the configured policy
    // (a freshly started engine per run), alternating, so only one model
    // computes at a time and nothing of one side (llama.cpp's OpenMP workers
    // belong to the thread that ran them) stays alive beside the other. The
    // page cache keeps reloading cheap; load time is not measured.
    let vocab = Vocab::load(&model_path)?;
    println!(
        "\n(a) decode speed at depth: {} tokens x {} runs per side; ratio = engine / the faster bare setting",
        args.decode.tokens, args.decode.runs
    );
    println!(
        "  depth  prompt  bare FA off  bare FA on  engine ({})  FA  ratio   per token ms: bare decode+sample  engine decode+sample",
        options.flash_attention.as_str()
    );
    let mut worst = f64::INFINITY;
    for &depth in &args.depths {
        let prompt = depth_prompt(&vocab, depth);
        // The bare child reads the same text (same tokens, same depth).
        let prompt_file = std::env::temp_dir().join(format!(
            "her-bench-depth-{}-{depth}.txt",
            std::process::id()
        ));
        std::fs::write(&prompt_file, &prompt)?;
        let (mut off, mut on, mut ours) = (Vec::new(), Vec::new(), Vec::new());
        let mut engine_fa = false;
        for run in 0..args.decode.runs {
            let mut s = sampling.clone();
            s.seed = sampling.seed.wrapping_add(run as u32);
            off.push(bare_loop_in_child(&options, &s, &prompt_file, false)?);
            on.push(bare_loop_in_child(&options, &s, &prompt_file, true)?);
            let engine = LocalEngine::start(options.clone())?;
            engine_fa = engine.model_info().flash_attention;
            let (_, done) = engine
                .generate(GenerateRequest::new(prompt.clone(), s))
                .collect_blocking()?;
            ours.push(Side::from_stats(&done.stats));
        }
        let _ = std::fs::remove_file(&prompt_file);
        let (off, on, ours) = (Side::median(&off), Side::median(&on), Side::median(&ours));
        let best = if on.tps > off.tps { on } else { off };
        let ratio = ours.tps / best.tps.max(f64::MIN_POSITIVE);
        worst = worst.min(ratio);
        println!(
            "  {depth:>5}  {:>6}  {:>11.1}  {:>10.1}  {:>12.1}  {:>3}  {ratio:>5.3}   {:>8.2} + {:<8.3}            {:>6.2} + {:.3}",
            ours.prompt_tokens,
            off.tps,
            on.tps,
            ours.tps,
            if engine_fa { "on" } else { "off" },
            best.decode_ms,
            best.sample_ms,
            ours.decode_ms,
            ours.sample_ms,
        );
    }
    println!("  worst ratio {worst:.3} (target >= 0.95 at every depth)");

    // (b) A scripted chat: how much of each prompt is evaluated again, and
    // whether time-to-first-token stays flat as the chat grows.
    println!("\n(b) scripted {}-turn chat, KV-cache reuse", args.turns);
    let engine = LocalEngine::start(options)?;
    scripted_chat(app, &engine, &sampling, args.turns)
}

/// One side's median figures over its runs (per-token times in ms).
#[derive(Debug, Clone, Copy, Default)]
struct Side {
    prompt_tokens: usize,
    tps: f64,
    decode_ms: f64,
    sample_ms: f64,
}

impl Side {
    fn from_stats(stats: &GenerationStats) -> Self {
        let per = |ms: f64| ms / stats.generated_tokens.max(1) as f64;
        Self {
            prompt_tokens: stats.prompt_tokens,
            tps: stats.tokens_per_second,
            decode_ms: per(stats.decode_ms),
            sample_ms: per(stats.sample_ms),
        }
    }

    fn median(runs: &[Side]) -> Side {
        let of = |f: fn(&Side) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        Side {
            prompt_tokens: runs.first().map_or(0, |r| r.prompt_tokens),
            tps: of(|r| r.tps),
            decode_ms: of(|r| r.decode_ms),
            sample_ms: of(|r| r.sample_ms),
        }
    }
}

/// A chat prompt of at least `depth` tokens (ChatML turns of the script),
/// ending with a request for a long story and the assistant's header; depth
/// 0 is that request alone.
fn depth_prompt(vocab: &Vocab, depth: usize) -> String {
    let mut history = chatml::turn("system", "You are a storyteller.");
    let mut turn = 0;
    while vocab.count(&history) < depth {
        let line = SCRIPT[turn % SCRIPT.len()];
        let reply = SCRIPT[(turn + 7) % SCRIPT.len()];
        history.push_str(&chatml::turn("user", line));
        history.push_str(&chatml::turn("assistant", reply));
        turn += 1;
    }
    history.push_str(&chatml::turn(
        "user",
        "Tell me a long story about a ship in a storm.",
    ));
    history.push_str(&chatml::open("assistant"));
    history
}

/// The generated random-weight Qwen3 model, written once to the temp folder.
fn tiny_model() -> anyhow::Result<PathBuf> {
    let path = std::env::temp_dir()
        .join("her-studio")
        .join("tiny-qwen3-bench.gguf");
    if !path.is_file() {
        std::fs::create_dir_all(path.parent().unwrap_or(&std::env::temp_dir()))?;
        write_tiny_qwen3(&path, 7).context("writing the tiny test model")?;
    }
    Ok(path)
}

/// Runs `her bench bare-loop` as a child process and reads its result line.
fn bare_loop_in_child(
    options: &LocalEngineOptions,
    sampling: &SamplingConfig,
    prompt_file: &Path,
    flash_attention: bool,
) -> anyhow::Result<Side> {
    let exe = std::env::current_exe()?;
    let output = std::process::Command::new(exe)
        .args(["bench", "bare-loop", "--model"])
        .arg(&options.model_path)
        .args(["--n-ctx", &options.n_ctx.to_string()])
        .args(["--n-batch", &options.n_batch.to_string()])
        .args(["--threads", &options.effective_threads().to_string()])
        .args(["--n-gpu-layers", &options.n_gpu_layers.to_string()])
        .args(["--flash-attn", if flash_attention { "on" } else { "off" }])
        .arg("--prompt-file")
        .arg(prompt_file)
        .args(["--sampling", &serde_json::to_string(sampling)?])
        .output()?;
    if !output.status.success() {
        return Err(anyhow!(
            "bare loop failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let line = String::from_utf8_lossy(&output.stdout);
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [prompt_tokens, tokens, tps, decode_ms, sample_ms] = fields[..] else {
        return Err(anyhow!("unexpected bare loop output '{line}'"));
    };
    let tokens: f64 = tokens.parse()?;
    Ok(Side {
        prompt_tokens: prompt_tokens.parse()?,
        tps: tps.parse()?,
        decode_ms: decode_ms.parse::<f64>()? / tokens.max(1.0),
        sample_ms: sample_ms.parse::<f64>()? / tokens.max(1.0),
    })
}

/// `her bench bare-loop`: the baseline in this process (run as a child so
/// the engine's model is not loaded twice). Prints "PROMPT_TOKENS TOKENS
/// TOKENS_PER_SECOND DECODE_MS SAMPLE_MS".
pub fn run_bare_loop(args: &BareLoopArgs) -> anyhow::Result<()> {
    let options = BareOptions {
        model: args.model.clone(),
        n_ctx: args.n_ctx,
        n_batch: args.n_batch,
        threads: args.threads,
        n_gpu_layers: args.n_gpu_layers,
        flash_attention: args.flash_attn == "on",
        sampling: serde_json::from_str(&args.sampling)?,
    };
    let prompt = match &args.prompt_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the prompt file {}", path.display()))?,
        None => THROUGHPUT_PROMPT.to_string(),
    };
    let r = bare_loop(&options, &prompt)?;
    println!(
        "{} {} {} {} {}",
        r.prompt_tokens, r.tokens, r.tokens_per_second, r.decode_ms, r.sample_ms
    );
    Ok(())
}

fn scripted_chat(
    app: &AppContext,
    engine: &LocalEngine,
    sampling: &SamplingConfig,
    turns: usize,
) -> anyhow::Result<()> {
    let character = app.character(None)?;
    let name = character.name.clone();
    let mut sampling = sampling.clone();
    sampling.max_new_tokens = 48;
    let user = character
        .user_name(&app.config().chat.user_name)
        .to_string();
    let mut chat = Conversation::new(
        character,
        user.clone(),
        app.config().chat.prompt_variant,
        sampling,
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let count = |text: String| engine.tokenize(text).wait().map(|t| t.len());
    println!("  turn  prompt  evaluated  bound  ttft ms  prompt eval ms");
    let mut previous_reply = String::new();
    let mut ttft = Vec::new();
    let mut within = true;
    for turn in 0..turns {
        let line = SCRIPT[turn % SCRIPT.len()];
        let outcome = runtime.block_on(chat.send(engine, line, |_| {}))?;
        let started = outcome.started.ok_or_else(|| anyhow!("no Started event"))?;
        // History keeps the reply with a `Name: ` prefix (HER's trained
        // form), so the bound counts it too; 16 covers the turn headers.
        let kept = format!("{name}: {previous_reply}");
        let bound = count(format!("{user}: {line}"))? + count(kept)? + 16;
        let evaluated = started.evaluated_tokens;
        if turn > 0 && evaluated > bound {
            within = false;
        }
        let t = outcome.finished.stats.time_to_first_token_ms;
        ttft.push(t);
        println!(
            "  {:>4}  {:>6}  {:>9}  {:>5}  {:>7.1}  {:>14.1}",
            turn + 1,
            started.prompt_tokens,
            evaluated,
            if turn == 0 {
                "-".to_string()
            } else {
                bound.to_string()
            },
            t,
            outcome.finished.stats.prompt_ms
        );
        previous_reply = outcome.reply;
    }
    if ttft.len() >= 2 {
        let (second, last) = (ttft[1], ttft[ttft.len() - 1]);
        println!(
            "  evaluated tokens within bound on every turn: {within}\n  TTFT turn {} / turn 2 = {last:.1} / {second:.1} ms = ratio {:.2} (target <= 1.3)",
            ttft.len(),
            last / second.max(f64::MIN_POSITIVE)
        );
    }
    Ok(())
}
