//! `her bench engine`: (a) engine generation speed against a bare
//! llama-cpp-2 decode loop with the same sampler; (b) KV-cache reuse and
//! time-to-first-token over a scripted multi-turn chat.

use std::path::PathBuf;

use anyhow::{Context, anyhow};

use super::median;
use crate::app::AppContext;
use crate::cli::{BareLoopArgs, BenchEngineArgs};
use crate::config::SamplingConfig;
use her_engine::dialogue::Conversation;
use her_engine::local::bare::{BareOptions, bare_loop};
use her_engine::{Backend, GenerateRequest, LocalEngine, LocalEngineOptions};
use her_gguf::fixture::write_tiny_qwen3;

const THROUGHPUT_PROMPT: &str = "<|im_start|>system\nYou are a storyteller.<|im_end|>\n<|im_start|>user\nTell me a long story about a ship in a storm.<|im_end|>\n<|im_start|>assistant\n";

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

pub fn run(app: &AppContext, args: &BenchEngineArgs) -> anyhow::Result<()> {
    let model_path = match args.model.as_deref() {
        Some("tiny") => tiny_model()?,
        Some(path) => PathBuf::from(path),
        None => app.model_path(),
    };
    let mut options = app.config().model.engine_options(model_path.clone());
    options.threads = args.threads;
    options.n_ctx = options.n_ctx.max(4096);
    println!(
        "model: {}  threads: {}",
        model_path.display(),
        options.effective_threads()
    );

    let mut sampling = app.config().sampling.clone();
    sampling.max_new_tokens = args.tokens as u32;

    // (a) Each bare run happens in a child process and each engine run in a
    // freshly started engine, alternating, so only one model computes at a
    // time and nothing of one side (llama.cpp's OpenMP workers belong to the
    // thread that ran them) stays alive beside the other. The page cache
    // keeps reloading cheap; load time is not measured.
    println!(
        "\n(a) generation speed, {} tokens x {} runs per side",
        args.tokens, args.runs
    );
    let (mut bare, mut ours) = (Vec::new(), Vec::new());
    for run in 0..args.runs {
        let mut s = sampling.clone();
        s.seed = sampling.seed.wrapping_add(run as u32);
        bare.push(bare_loop_in_child(&options, &s)?);
        let engine = LocalEngine::start(options.clone())?;
        let (_, done) = engine
            .generate(GenerateRequest::new(THROUGHPUT_PROMPT.to_string(), s))
            .collect_blocking()?;
        ours.push((done.stats.generated_tokens, done.stats.tokens_per_second));
    }
    let bare_tps = median(&bare.iter().map(|r| r.1).collect::<Vec<_>>());
    let ours_tps = median(&ours.iter().map(|r| r.1).collect::<Vec<_>>());
    println!("  run  bare tokens  bare tok/s  engine tokens  engine tok/s");
    for (i, (b, o)) in bare.iter().zip(&ours).enumerate() {
        println!(
            "  {:>3}  {:>11}  {:>10.1}  {:>13}  {:>12.1}",
            i + 1,
            b.0,
            b.1,
            o.0,
            o.1
        );
    }
    println!(
        "  median: engine {ours_tps:.1} tok/s, bare loop {bare_tps:.1} tok/s, ratio {:.3} (target >= 0.98)",
        ours_tps / bare_tps.max(f64::MIN_POSITIVE)
    );

    // (b) A scripted chat: how much of each prompt is evaluated again.
    println!("\n(b) scripted {}-turn chat, KV-cache reuse", args.turns);
    let engine = LocalEngine::start(options)?;
    scripted_chat(app, &engine, &sampling, args.turns)
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
) -> anyhow::Result<(usize, f64)> {
    let exe = std::env::current_exe()?;
    let output = std::process::Command::new(exe)
        .args(["bench", "bare-loop", "--model"])
        .arg(&options.model_path)
        .args(["--n-ctx", &options.n_ctx.to_string()])
        .args(["--n-batch", &options.n_batch.to_string()])
        .args(["--threads", &options.effective_threads().to_string()])
        .args(["--sampling", &serde_json::to_string(sampling)?])
        .output()?;
    if !output.status.success() {
        return Err(anyhow!(
            "bare loop failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let line = String::from_utf8_lossy(&output.stdout);
    let (tokens, tps) = line
        .trim()
        .split_once(' ')
        .ok_or_else(|| anyhow!("unexpected bare loop output '{line}'"))?;
    Ok((tokens.parse()?, tps.parse()?))
}

/// `her bench bare-loop`: the baseline in this process (run as a child so
/// the engine's model is not loaded twice). Prints "TOKENS TOKENS_PER_SECOND".
pub fn run_bare_loop(args: &BareLoopArgs) -> anyhow::Result<()> {
    let options = BareOptions {
        model: args.model.clone(),
        n_ctx: args.n_ctx,
        n_batch: args.n_batch,
        threads: args.threads,
        sampling: serde_json::from_str(&args.sampling)?,
    };
    let result = bare_loop(&options, THROUGHPUT_PROMPT)?;
    println!("{} {}", result.tokens, result.tokens_per_second);
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
