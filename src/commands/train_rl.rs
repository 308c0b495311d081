//! `her train rl`: gather prompts, start the judge, run RL on the training
//! loop with a progress line, and say where the adapter and the rollouts are.

use std::process::ExitCode;

use anyhow::bail;

use super::train::{Driver, kept_in_studio, overwrite_line};
use crate::app::AppContext;
use crate::cli::RlArgs;
use her_train::dataset::{self, DataSource, KeptFilter};
use her_train::rl::prompts::RlPrompt;
use her_train::rl::{RlJob, StepMetrics};
use her_train::train_loop::Progress;

pub fn rl(app: &AppContext, args: &RlArgs) -> anyhow::Result<ExitCode> {
    let config = app.config();
    let (prompts, sources) = gather(app, args)?;
    // The judge runs in its own engine ([judge], or --judge-model): the
    // rollout engine's adapter changes every step.
    let judge: Option<Box<dyn her_engine::Backend>> = if config.rl.reward_judge > 0.0 {
        Some(match &args.judge_model {
            Some(path) => {
                her_engine::local::check_model_file(path)?;
                Box::new(her_engine::LocalEngine::start(
                    config.model.engine_options(path.clone()),
                )?)
            }
            None => app.start_judge()?,
        })
    } else {
        None
    };
    let first_input = args.prompts.first().or(args.queue.first());
    let driver = Driver::start(app, &args.run, "rl", first_input)?;
    let job = RlJob {
        spec: driver.spec(args.init.init_adapter.clone()),
        engine: app.engine_options(),
        judge,
        rl: config.rl.clone(),
        sampling: config.sampling.clone(),
        sources,
    };
    eprintln!(
        "RL on {} prompts, {} replies each per step, into {} (ctrl+c saves and stops)",
        prompts.len(),
        config.rl.group_size,
        driver.run_dir.display()
    );
    if config.rl.reward_human > 0.0 {
        eprintln!(
            "your ratings are part of the reward: open `her`, then /runs, select this run and press r"
        );
    }
    let mut stderr = std::io::stderr();
    let report = driver.train(&job, prompts, &mut |p| {
        let Progress::Step(m) = p else {
            return;
        };
        if m.metrics.layout_warning {
            eprintln!(
                "\r\x1b[Kwarning: layout '{}' is {:.0}% of the recent replies (RL collapse?)",
                m.metrics.dominant_layout,
                m.metrics.dominant_share * 100.0
            );
        }
        overwrite_line(&mut stderr, &progress(m));
    })?;
    eprintln!();
    let curve = &report.reward_curve;
    if let (Some(first), Some(last)) = (curve.first(), curve.last()) {
        println!(
            "{} steps · mean reward {first:+.3} → {last:+.3} · rollouts {:.0} tok/s",
            report.steps,
            report.rollout_tokens_per_s()
        );
    }
    let total = report.swap_s + report.rollout_s + report.scoring_s + report.update_s;
    if total > 0.0 {
        let share = |x: f64| 100.0 * x / total;
        println!(
            "time: adapter swap {:.0}% · rollout {:.0}% · scoring {:.0}% · update {:.0}% of {total:.0} s",
            share(report.swap_s),
            share(report.rollout_s),
            share(report.scoring_s),
            share(report.update_s)
        );
    }
    println!(
        "rollouts and reward parts: {}",
        driver.run_dir.join("rollouts.jsonl").display()
    );
    driver.finish(
        report.interrupted,
        " (same prompts)",
        report.adapter_gguf.as_deref(),
        None,
    )
}

fn progress(m: &StepMetrics) -> String {
    format!(
        "step {}/{} · reward {:+.3} ± {:.3} · kl {:.4} · clip {:.0}% · layouts {:.2} bits · format errors {:.0}% · {:.0} tok/s",
        m.step,
        m.total_steps,
        m.metrics.reward_mean,
        m.metrics.reward_std,
        m.metrics.kl,
        m.metrics.clip_fraction * 100.0,
        m.metrics.layout_entropy,
        m.metrics.format_error_rate * 100.0,
        m.metrics.rollout_tokens_per_s
    )
}

fn gather(app: &AppContext, args: &RlArgs) -> anyhow::Result<(Vec<RlPrompt>, Vec<DataSource>)> {
    let (mut prompts, mut sources) = dataset::rl_prompts_from_files(&args.prompts, &args.queue)?;
    if args.from_sessions {
        let (kept, dir) = kept_in_studio(app)?;
        let filter = KeptFilter {
            character: args.character.as_deref(),
            min_stars: None,
        };
        let (from_sessions, source) = dataset::rl_prompts_from_kept(kept, filter, &dir);
        prompts.extend(from_sessions);
        sources.push(source);
    }
    if prompts.is_empty() {
        bail!("no prompts: the files are empty, or no session has a kept reply to learn from");
    }
    Ok((prompts, sources))
}
