//! `her train rl`: gather prompts, start the engines, run the RL loop with a
//! progress line, and say where the adapter and the rollouts are.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, bail};

use super::train::{kept_in_studio, overwrite_line, run_folder, watch_ctrl_c};
use crate::app::AppContext;
use crate::cli::RlArgs;
use crate::engine::LocalEngineOptions;
use crate::train::rl::prompts::{RlPrompt, read_prompts_jsonl};
use crate::train::rl::{RlJob, StepMetrics, run};
use crate::train::sft::DataSource;

pub fn rl(app: &AppContext, args: &RlArgs) -> anyhow::Result<ExitCode> {
    let config = app.config();
    let model = app.model_path();
    crate::engine::local::check_model_file(&model)?;
    let (prompts, sources) = gather(app, args)?;
    // The judge runs in its own engine ([judge], or --judge-model): the
    // rollout engine's adapter changes every step.
    let judge: Option<Box<dyn crate::engine::Backend>> = if config.rl.reward_judge > 0.0 {
        Some(match &args.judge_model {
            Some(path) => {
                crate::engine::local::check_model_file(path)?;
                Box::new(crate::engine::LocalEngine::start(
                    LocalEngineOptions::from_config(&config.model, path.clone()),
                )?)
            }
            None => app.start_judge()?,
        })
    } else {
        None
    };
    let runs = config.runs_dir(&app.studio.root);
    let run_dir = run_folder(
        &runs,
        args.resume.as_deref(),
        args.name.as_deref(),
        args.prompts.first().or(args.queue.first()),
        "rl",
    )?;
    let job = RlJob {
        model_fingerprint: crate::engine::local::fingerprint(&model)
            .with_context(|| format!("reading '{}'", model.display()))?,
        engine: app.engine_options(),
        model,
        judge,
        settings: config.train.clone(),
        rl: config.rl.clone(),
        sampling: config.sampling.clone(),
        run: run_dir.clone(),
        resume: args.resume.is_some(),
        init_adapter: args.init_adapter.clone(),
        sources,
    };
    let stop = Arc::new(AtomicBool::new(false));
    watch_ctrl_c(stop.clone());
    eprintln!(
        "RL on {} prompts, {} replies each per step, into {} (ctrl+c saves and stops)",
        prompts.len(),
        config.rl.group_size,
        run_dir.display()
    );
    if config.rl.reward_human > 0.0 {
        eprintln!(
            "your ratings are part of the reward: open `her`, then /runs, select this run and press r"
        );
    }
    let mut stderr = std::io::stderr();
    let report = run(&job, prompts, &stop, &mut |m| {
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
        run_dir.join("rollouts.jsonl").display()
    );
    if report.interrupted {
        println!(
            "stopped; continue with: her train rl --resume {} (same prompts)",
            run_dir.display()
        );
        return Ok(ExitCode::from(130));
    }
    if let Some(adapter) = &report.adapter_gguf {
        println!("adapter: {}", adapter.display());
        println!("  in the chat: /adapter {}", adapter.display());
        if args.gate {
            super::eval::gate_after_training(app, adapter)?;
        }
    }
    Ok(ExitCode::SUCCESS)
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
    let mut prompts = Vec::new();
    let mut sources = Vec::new();
    let source = |name: &PathBuf| -> anyhow::Result<DataSource> {
        let bytes = crate::fsutil::read::bytes(name, crate::fsutil::read::Kind::Dataset)?;
        Ok(DataSource {
            name: name.display().to_string(),
            sha256: crate::hashing::sha256_hex(&bytes),
        })
    };
    for path in &args.prompts {
        prompts.extend(read_prompts_jsonl(path)?);
        sources.push(source(path)?);
    }
    for path in &args.queue {
        let items = crate::prefs::queue::read_queue(path)?;
        prompts.extend(
            items
                .into_iter()
                .map(|item| RlPrompt::new(item.character, item.context)),
        );
        sources.push(source(path)?);
    }
    if args.from_sessions {
        let (kept, dir) = kept_in_studio(app)?;
        let before = prompts.len();
        prompts.extend(
            kept.into_iter()
                .filter(|k| {
                    args.character
                        .as_deref()
                        .is_none_or(|c| c.eq_ignore_ascii_case(&k.character))
                })
                .map(|k| RlPrompt::new(k.character, k.context)),
        );
        let digest: String = prompts[before..].iter().map(|p| p.id.as_str()).collect();
        sources.push(DataSource {
            name: format!("sessions in {}", dir.display()),
            sha256: crate::hashing::sha256_hex(digest.as_bytes()),
        });
    }
    if prompts.is_empty() {
        bail!("no prompts: the files are empty, or no session has a kept reply to learn from");
    }
    Ok((prompts, sources))
}
