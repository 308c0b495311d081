//! `her bench engine`: (a) engine generation speed against a bare
//! llama-cpp-2 decode loop with the same sampler; (b) KV-cache reuse and
//! time-to-first-token over a scripted multi-turn chat.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, anyhow};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;

use super::median;
use crate::app::AppContext;
use crate::chat::Conversation;
use crate::cli::BenchEngineArgs;
use crate::config::SamplingConfig;
use crate::engine::local::{backend, sampler};
use crate::engine::{Backend, GenerateRequest, LocalEngine, LocalEngineOptions};
use crate::gguf::fixture::write_tiny_qwen3;

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
    let mut options = LocalEngineOptions::from_config(&app.config().model, model_path.clone());
    options.threads = args.threads;
    options.n_ctx = options.n_ctx.max(4096);
    println!(
        "model: {}  threads: {}",
        model_path.display(),
        options.effective_threads()
    );

    let mut sampling = app.config().sampling.clone();
    sampling.max_new_tokens = args.tokens as u32;

    // (a) Bare loop first, then the engine: never two models in memory at once.
    println!(
        "\n(a) generation speed, {} tokens x {} runs per side",
        args.tokens, args.runs
    );
    let mut bare = Vec::new();
    for run in 0..args.runs {
        let mut s = sampling.clone();
        s.seed = sampling.seed.wrapping_add(run as u32);
        bare.push(bare_loop(&options, &s)?);
    }
    let engine = LocalEngine::start(options.clone())?;
    let mut ours = Vec::new();
    for run in 0..args.runs {
        let mut s = sampling.clone();
        s.seed = sampling.seed.wrapping_add(run as u32);
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

/// The baseline: llama-cpp-2 used directly, same context settings, same
/// sampler chain, same per-token work (sample, detokenize, decode).
fn bare_loop(
    options: &LocalEngineOptions,
    sampling: &SamplingConfig,
) -> anyhow::Result<(usize, f64)> {
    let backend = backend()?;
    let params = LlamaModelParams::default()
        .with_n_gpu_layers(options.n_gpu_layers)
        .with_use_mmap(options.use_mmap);
    let model = LlamaModel::load_from_file(backend, &options.model_path, &params)?;
    let threads = options.effective_threads() as i32;
    let n_batch = options.n_batch.min(options.n_ctx);
    let ctx_params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(options.n_ctx))
        .with_n_batch(n_batch)
        .with_n_ubatch(n_batch)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut ctx = model.new_context(backend, ctx_params)?;
    let prompt = model
        .vocab()
        .tokenize(THROUGHPUT_PROMPT.as_bytes(), true, true);
    let mut batch = LlamaBatch::new(n_batch as usize, 1);
    for (i, &t) in prompt.iter().enumerate() {
        batch.add(t, i as i32, &[0], i + 1 == prompt.len())?;
    }
    ctx.decode(&mut batch)?;
    let mut chain = sampler::build_chain(sampling, model.n_vocab());
    let vocab = model.vocab();
    let mut pos = prompt.len() as i32;
    let mut generated = 0usize;
    let mut start: Option<Instant> = None;
    let mut text = Vec::new();
    while generated < sampling.max_new_tokens as usize {
        let token = chain.sample(&ctx, -1);
        start.get_or_insert_with(Instant::now);
        if vocab.is_eog(token) {
            break;
        }
        generated += 1;
        text.extend(vocab.token_to_piece(token, true, None));
        if generated >= sampling.max_new_tokens as usize {
            break;
        }
        batch.clear();
        batch.add(token, pos, &[0], true)?;
        ctx.decode(&mut batch)?;
        pos += 1;
    }
    let secs = start.map_or(0.0, |s| s.elapsed().as_secs_f64());
    Ok((
        generated,
        if secs > 0.0 {
            generated as f64 / secs
        } else {
            0.0
        },
    ))
}

fn scripted_chat(
    app: &AppContext,
    engine: &LocalEngine,
    sampling: &SamplingConfig,
    turns: usize,
) -> anyhow::Result<()> {
    let character = app.character(None)?;
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
    println!("  turn  prompt  evaluated  bound  ttft ms");
    let mut previous_reply = String::new();
    let mut ttft = Vec::new();
    let mut within = true;
    for turn in 0..turns {
        let line = SCRIPT[turn % SCRIPT.len()];
        let outcome = runtime.block_on(chat.send(engine, line, |_| {}))?;
        let started = outcome.started.ok_or_else(|| anyhow!("no Started event"))?;
        let bound = count(format!("{user}: {line}"))? + count(previous_reply.clone())? + 16;
        let evaluated = started.evaluated_tokens;
        if turn > 0 && evaluated > bound {
            within = false;
        }
        let t = outcome.finished.stats.time_to_first_token_ms;
        ttft.push(t);
        println!(
            "  {:>4}  {:>6}  {:>9}  {:>5}  {:>7.1}",
            turn + 1,
            started.prompt_tokens,
            evaluated,
            if turn == 0 {
                "-".to_string()
            } else {
                bound.to_string()
            },
            t
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
