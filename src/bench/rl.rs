//! `her bench rl`: how fast RL writes its rollouts compared with plain
//! generation of the same prompts with the same seeds (target ≥ 0.9), and
//! where an RL step's time goes.
//!
//! The RL run goes first, in full (engine with the adapter being trained,
//! swapped in every step, groups decoded as parallel sequences); then, with
//! that engine gone, fresh engines generate for the same prompts and seeds:
//! one reply after the other as the chat does, without an adapter (the
//! target's baseline) and with the run's final adapter, and batched like
//! the rollouts with that adapter.

use std::sync::atomic::AtomicBool;

use anyhow::{Context, bail};

use crate::app::AppContext;
use crate::cli::BenchRlArgs;
use her_engine::LocalEngine;
use her_train::data::step_indices;
use her_train::rl::prompts::read_prompts_jsonl;
use her_train::rl::rollout::{rollout_seed, sample, sample_serial};
use her_train::rl::{RlJob, rollout_sampling};
use her_train::train_loop::{Progress, RunSpec, run as run_rl};

pub fn run(app: &AppContext, args: &BenchRlArgs) -> anyhow::Result<()> {
    let config = app.config();
    let model = args.model.clone().unwrap_or_else(|| app.model_path());
    her_engine::local::check_model_file(&model)?;
    let prompts_path = args
        .prompts
        .clone()
        .unwrap_or_else(|| app.studio.root.join("assets/datasets/elizabeth-sft.jsonl"));
    let prompts = read_prompts_jsonl(&prompts_path)?;
    if prompts.is_empty() {
        bail!("'{}' holds no prompts", prompts_path.display());
    }
    let mut rl = config.rl.clone();
    rl.steps = args.steps;
    rl.group_size = args.group;
    rl.prompts_per_step = args.prompts_per_step;
    rl.max_new_tokens = args.max_new_tokens;
    rl.reward_judge = if args.judge { 1.0 } else { 0.0 };
    rl.reward_format = 0.5;
    rl.reward_layout = 0.1;
    let engine = config.model.engine_options(model.clone());
    // A scratch run folder, removed at the end.
    let dir = std::env::temp_dir().join(format!("her-bench-rl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let job = RlJob {
        spec: RunSpec {
            model_fingerprint: her_engine::local::fingerprint(&model)?,
            model: model.clone(),
            settings: config.train.clone(),
            run: dir.join("run"),
            resume: false,
            init_adapter: None,
        },
        judge: if args.judge {
            Some(Box::new(LocalEngine::start(engine.clone())?))
        } else {
            None
        },
        engine: engine.clone(),
        rl: rl.clone(),
        sampling: config.sampling.clone(),
        sources: Vec::new(),
    };
    println!(
        "RL: {} steps × {} prompts × {} replies of ≤ {} tokens on {}",
        rl.steps,
        rl.prompts_per_step,
        rl.group_size,
        rl.max_new_tokens,
        model.display()
    );
    let never = AtomicBool::new(false);
    let mut per_step = Vec::new();
    let report = run_rl(&job, prompts.clone(), &never, &mut |p| {
        let Progress::Step(m) = p else {
            return;
        };
        per_step.push(m.metrics.rollout_tokens as f64 / m.metrics.rollout_s.max(1e-9));
        eprintln!(
            "  step {}: rollouts {} tokens in {:.2} s ({:.1} tok/s)",
            m.step,
            m.metrics.rollout_tokens,
            m.metrics.rollout_s,
            m.metrics.rollout_tokens as f64 / m.metrics.rollout_s.max(1e-9)
        );
    })
    .with_context(|| format!("the RL run in '{}'", dir.display()))?;

    // Plain generation: the same prompts, seeds and sampling, without an
    // adapter, then with the run's final adapter (what LoRA itself costs in
    // llama.cpp, apart from anything the RL loop adds), one reply after the
    // other and batched.
    let prompts = her_train::rl::prompts::dedup(prompts);
    let sampling = rollout_sampling(&config.sampling, &rl);
    let plan = Plan {
        prompts: &prompts,
        sampling: &sampling,
        rl: &rl,
        seed: config.train.seed,
    };
    let plain = plan.generate(&engine, None, Decoding::Serial)?;
    let adapter = report
        .adapter_gguf
        .clone()
        .context("the RL run wrote no adapter")?;
    let serial_adapter = plan.generate(&engine, Some(&adapter), Decoding::Serial)?;
    let batched_adapter = plan.generate(&engine, Some(&adapter), Decoding::Batched)?;
    let _ = std::fs::remove_dir_all(&dir);

    let rl_rate = report.rollout_tokens_per_s();
    println!();
    println!(
        "rollout tokens/s during RL (batched)     {rl_rate:>8.1}   ({} tokens in {:.2} s; median step {:.1})",
        report.rollout_tokens,
        report.rollout_s,
        super::median(&per_step)
    );
    plain.print("plain, one by one, no adapter");
    serial_adapter.print("plain, one by one, final adapter");
    batched_adapter.print("plain, batched, final adapter");
    println!(
        "ratio RL ÷ plain one by one, no adapter  {:>8.3}   (target ≥ 0.90)",
        rl_rate / plain.rate().max(1e-9)
    );
    println!(
        "ratio RL ÷ plain batched, same adapter   {:>8.3}   (what the RL loop adds beyond batched decoding)",
        rl_rate / batched_adapter.rate().max(1e-9)
    );
    println!(
        "batched ÷ one by one, same adapter       {:>8.3}   (what batching the group buys)",
        batched_adapter.rate() / serial_adapter.rate().max(1e-9)
    );
    let same = batched_adapter
        .replies
        .iter()
        .zip(&serial_adapter.replies)
        .filter(|(a, b)| a == b)
        .count();
    println!(
        "batched replies identical to one by one  {same:>4} / {}",
        serial_adapter.replies.len()
    );
    let with_swaps = report.rollout_tokens as f64 / (report.rollout_s + report.swap_s).max(1e-9);
    println!(
        "ratio RL with adapter swaps ÷ no adapter {:>8.3}",
        with_swaps / plain.rate().max(1e-9)
    );
    let total = report.swap_s + report.rollout_s + report.scoring_s + report.update_s;
    let share = |x: f64| 100.0 * x / total.max(1e-9);
    println!(
        "RL step time: adapter swap {:.1}% · rollout {:.1}% · scoring {:.1}% · update {:.1}% (of {total:.1} s)",
        share(report.swap_s),
        share(report.rollout_s),
        share(report.scoring_s),
        share(report.update_s)
    );
    Ok(())
}

/// How a plan generates each group.
#[derive(Clone, Copy)]
enum Decoding {
    /// One reply after the other, in the chat's single-sequence context.
    Serial,
    /// The group's replies as parallel sequences, as RL's rollouts.
    Batched,
}

/// Tokens and seconds of one way of generating the plan's replies.
struct Measured {
    tokens: usize,
    seconds: f64,
    per_step: Vec<f64>,
    /// Every reply's token ids, in plan order.
    replies: Vec<Vec<i32>>,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.tokens as f64 / self.seconds.max(1e-9)
    }

    fn print(&self, label: &str) {
        println!(
            "{label:<40} {:>8.1}   ({} tokens in {:.2} s; median step {:.1})",
            self.rate(),
            self.tokens,
            self.seconds,
            super::median(&self.per_step)
        );
    }
}

/// Generation of the replies an RL run samples, outside RL.
struct Plan<'a> {
    prompts: &'a [her_train::rl::prompts::RlPrompt],
    sampling: &'a crate::config::SamplingConfig,
    rl: &'a crate::config::RlConfig,
    seed: u32,
}

impl Plan<'_> {
    /// Every step's groups in a fresh engine, with `adapter` loaded when given.
    fn generate(
        &self,
        options: &her_engine::LocalEngineOptions,
        adapter: Option<&std::path::Path>,
        decoding: Decoding,
    ) -> anyhow::Result<Measured> {
        use her_engine::Backend;
        let options = match decoding {
            Decoding::Serial => options.clone(),
            Decoding::Batched => options.for_groups(self.rl.group_size, self.rl.max_new_tokens),
        };
        let engine = LocalEngine::start(options)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        if let Some(path) = adapter {
            runtime.block_on(engine.load_adapter(path.to_path_buf(), 1.0))?;
        }
        let mut measured = Measured {
            tokens: 0,
            seconds: 0.0,
            per_step: Vec::new(),
            replies: Vec::new(),
        };
        for step in 0..u64::from(self.rl.steps) {
            let (mut step_tokens, mut step_s) = (0usize, 0.0);
            for p in step_indices(
                self.prompts.len(),
                self.rl.prompts_per_step as usize,
                u64::from(self.seed),
                step,
            ) {
                let seeds: Vec<u32> = (0..self.rl.group_size as usize)
                    .map(|m| rollout_seed(self.seed, step, p, m))
                    .collect();
                let prompt = self.prompts[p].render();
                let (replies, s) = runtime.block_on(async {
                    match decoding {
                        Decoding::Serial => {
                            sample_serial(&engine, &prompt, self.sampling, &seeds).await
                        }
                        Decoding::Batched => sample(&engine, &prompt, self.sampling, &seeds).await,
                    }
                })?;
                step_tokens += replies.iter().map(|r| r.tokens.len()).sum::<usize>();
                step_s += s;
                measured
                    .replies
                    .extend(replies.into_iter().map(|r| r.tokens));
            }
            measured
                .per_step
                .push(step_tokens as f64 / step_s.max(1e-9));
            measured.tokens += step_tokens;
            measured.seconds += step_s;
        }
        Ok(measured)
    }
}
