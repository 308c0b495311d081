//! `her bench samplers`: what the extended sampler chain costs at decode
//! time. One engine generates the same story prompt with the default chain
//! and with DRY, XTC and banned phrases on, alternating so both see the
//! same machine state; the figure is full ÷ default tokens/s (target ≥ 0.9).

use super::engine::{THROUGHPUT_PROMPT, bench_model};
use super::median;
use crate::app::AppContext;
use crate::cli::BenchSamplersArgs;
use crate::config::SamplingConfig;
use her_engine::{Backend, GenerateRequest, GenerationStats, LocalEngine};

/// Phrases writers ban most (purple prose); none should fire on a story
/// prompt, so the bench measures the matching, not rewinds.
const BANNED: &[&str] = &[
    "shivers down her spine",
    "a testament to",
    "barely above a whisper",
    "eyes sparkling with mischief",
    "the air was thick with",
    "little did they know",
    "a mix of emotions",
    "ministrations",
];

/// The default chain with DRY, XTC and banned phrases switched on.
pub fn full_chain(base: &SamplingConfig) -> SamplingConfig {
    SamplingConfig {
        dry_multiplier: 0.8,
        dry_base: 1.75,
        dry_allowed_length: 2,
        xtc_probability: 0.5,
        xtc_threshold: 0.1,
        banned_phrases: BANNED.iter().map(|p| (*p).to_owned()).collect(),
        ..base.clone()
    }
}

pub fn run(app: &AppContext, args: &BenchSamplersArgs) -> anyhow::Result<()> {
    let model_path = bench_model(app, args.decode.model.as_deref())?;
    let mut options = app.config().model.engine_options(model_path.clone());
    options.threads = args.decode.threads;
    let mut default = SamplingConfig {
        max_new_tokens: args.decode.tokens as u32,
        ..SamplingConfig::default()
    };
    // Every token is decoded whatever it is: a stop string would end runs early.
    default.stop.clear();
    let full = full_chain(&default);
    println!(
        "model: {}  threads: {}  {} tokens x {} runs per chain",
        model_path.display(),
        options.effective_threads(),
        args.decode.tokens,
        args.decode.runs
    );
    let engine = LocalEngine::start(options)?;
    let (mut plain, mut tuned) = (Vec::new(), Vec::new());
    for run in 0..args.decode.runs {
        let seed = default.seed.wrapping_add(run as u32);
        plain.push(decode(&engine, &default, seed)?);
        tuned.push(decode(&engine, &full, seed)?);
    }
    let row = |name: &str, runs: &[GenerationStats]| {
        let of = |f: fn(&GenerationStats) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        let tps = of(|s| s.tokens_per_second);
        let sample = of(|s| s.sample_ms / s.generated_tokens.max(1) as f64);
        let tokens = of(|s| s.generated_tokens as f64);
        println!(
            "  {name:<48} {tps:>8.1} tok/s  sampling {sample:>7.3} ms/token  ({tokens:.0} tokens)"
        );
        tps
    };
    println!("\n  chain                                              decode");
    let base = row("default (temperature, top-k, top-p)", &plain);
    let with = row("full (+ DRY 0.8, XTC 0.5/0.1, 8 banned phrases)", &tuned);
    println!(
        "\n  full / default = {:.3} (target >= 0.9)",
        with / base.max(f64::MIN_POSITIVE)
    );
    Ok(())
}

fn decode(
    engine: &LocalEngine,
    sampling: &SamplingConfig,
    seed: u32,
) -> anyhow::Result<GenerationStats> {
    let sampling = SamplingConfig {
        seed,
        ..sampling.clone()
    };
    let request = GenerateRequest::new(THROUGHPUT_PROMPT.to_string(), sampling);
    let (_, done) = engine.generate(request).collect_blocking()?;
    Ok(done.stats)
}
