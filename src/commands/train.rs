//! `her train sft`: gather samples, run the loop with a progress line, and
//! say where the adapter is and how to load it in the chat.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};

use crate::app::AppContext;
use crate::cli::{DpoArgs, SftArgs};
use crate::prefs::RatingScore;
use crate::prefs::sessions::{SessionPlayers, kept_replies};
use crate::session::{list_sessions, load_session};
use crate::train::data::{Message, Sample, read_jsonl_hashed};
use crate::train::run::progress_line;
use crate::train::sft::{DataSource, Progress, SftJob, run};

pub fn sft(app: &AppContext, args: &SftArgs) -> anyhow::Result<ExitCode> {
    let config = app.config();
    let model = app.model_path();
    crate::engine::local::check_model_file(&model)?;
    let fingerprint = crate::engine::local::fingerprint(&model)
        .with_context(|| format!("reading '{}'", model.display()))?;
    let (samples, sources) = gather(app, args)?;
    let runs = config.runs_dir(&app.studio.root);
    let run_dir = run_folder(
        &runs,
        args.resume.as_deref(),
        args.name.as_deref(),
        args.data.first(),
        "sft",
    )?;
    let job = SftJob {
        model,
        model_fingerprint: fingerprint,
        settings: config.train.clone(),
        run: run_dir.clone(),
        resume: args.resume.is_some(),
        sources,
    };
    let stop = Arc::new(AtomicBool::new(false));
    watch_ctrl_c(stop.clone());
    eprintln!(
        "training {} samples into {} (ctrl+c saves a checkpoint and stops)",
        samples.len(),
        run_dir.display()
    );
    let mut stderr = std::io::stderr();
    let report = run(&job, samples, &stop, &mut |p| match p {
        Progress::Step(s) => {
            let line = progress_line(
                s.step,
                s.total_steps,
                s.loss,
                s.tokens_per_s,
                s.eta_s,
                s.rss_mib,
            );
            overwrite_line(&mut stderr, &line);
        }
        Progress::Eval(e) => {
            let _ = writeln!(
                stderr,
                "\r\x1b[Kheld-out loss at step {}: {:.4}",
                e.step, e.eval_loss
            );
        }
    })?;
    eprintln!();
    if report.too_long > 0 {
        eprintln!(
            "note: {} samples longer than train.max_seq_len were left out",
            report.too_long
        );
    }
    let first = report.losses.first().copied().unwrap_or(f64::NAN);
    let last = report.losses.last().copied().unwrap_or(f64::NAN);
    println!(
        "{} steps · loss {first:.4} → {last:.4} · {:.0} tok/s · peak {:.0} MiB",
        report.steps, report.tokens_per_s, report.peak_mib
    );
    if let (Some((_, before)), Some((_, after))) = (report.evals.first(), report.evals.last()) {
        println!("held-out loss {before:.4} → {after:.4}");
    }
    if let Some(at) = report.early_stopped {
        println!(
            "early stopping at step {at}: {} evaluations without an improvement",
            config.train.early_stopping_patience
        );
    }
    if let (Some((best_step, best_loss)), Some(adapter_step)) = (report.best, report.adapter_step) {
        if adapter_step == best_step && adapter_step != report.steps {
            println!(
                "best held-out loss {best_loss:.4} at step {best_step}: the adapter holds those \
                 weights (train.load_best_model_at_end); the final ones are in checkpoints/step-{:06}",
                report.steps
            );
        } else {
            println!("best held-out loss {best_loss:.4} at step {best_step}");
        }
    }
    if report.interrupted {
        println!(
            "stopped; continue with: her train sft --resume {}",
            run_dir.display()
        );
        return Ok(ExitCode::from(130));
    }
    if let Some(adapter) = &report.adapter_gguf {
        println!("adapter: {}", adapter.display());
        println!("  in the chat: /adapter {}", adapter.display());
    }
    if let Some(peft) = &report.peft_dir {
        println!("PEFT files: {}", peft.display());
    }
    if let (true, Some(adapter)) = (args.gate, &report.adapter_gguf) {
        super::eval::gate_after_training(app, adapter)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Sets `stop` on ctrl+c, so the loop saves a checkpoint and returns.
pub(super) fn watch_ctrl_c(stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, Ordering::SeqCst);
            }
        });
    });
}

/// The run folder: the one being resumed, or a new one (named, or dated)
/// that must not already hold a run.
pub(super) fn run_folder(
    runs: &std::path::Path,
    resume: Option<&std::path::Path>,
    name: Option<&str>,
    first_input: Option<&PathBuf>,
    kind: &str,
) -> anyhow::Result<PathBuf> {
    if let Some(dir) = resume {
        return Ok(dir.to_path_buf());
    }
    let dir = match name {
        Some(name) => runs.join(name),
        None => runs.join(default_name(first_input.map(PathBuf::as_path), kind)),
    };
    if dir.join("run.json").exists() {
        bail!(
            "'{}' already holds a run; choose another --name, or --resume {} to continue it",
            dir.display(),
            dir.display()
        );
    }
    Ok(dir)
}

/// Rewrites the terminal's current line (a progress display on stderr).
pub(super) fn overwrite_line(out: &mut std::io::Stderr, text: &str) {
    let _ = write!(out, "\r{text}\x1b[K");
    let _ = out.flush();
}

/// `DATE-STEM-KIND-TIME`: sortable, and a second run the same day gets its
/// own folder instead of refusing to start.
fn default_name(first_input: Option<&std::path::Path>, kind: &str) -> String {
    let now = crate::session::now_rfc3339();
    let date = now.get(..10).unwrap_or("run");
    let time = now.get(11..19).unwrap_or("").replace(':', "");
    let stem = first_input
        .and_then(|p| p.file_stem())
        .map_or("studio".into(), |n| n.to_string_lossy().into_owned());
    format!("{date}-{stem}-{kind}-{time}")
}

fn gather(app: &AppContext, args: &SftArgs) -> anyhow::Result<(Vec<Sample>, Vec<DataSource>)> {
    let mut samples = Vec::new();
    let mut sources = Vec::new();
    for path in &args.data {
        let (read, sha256) = read_jsonl_hashed(path)?;
        samples.extend(read);
        sources.push(DataSource {
            name: path.display().to_string(),
            sha256,
        });
    }
    if args.from_sessions {
        let (from_sessions, source) = session_samples(app, args)?;
        samples.extend(from_sessions);
        sources.push(source);
    }
    if samples.is_empty() && args.resume.is_some() {
        bail!("--resume needs the same --data (or --from-sessions) as the run it continues");
    }
    if samples.is_empty() {
        bail!("no samples: the data is empty, or no kept reply passed the filters");
    }
    Ok((samples, sources))
}

/// Every reply kept on the active branches of the studio's sessions (an
/// unreadable session is reported and skipped), and the sessions folder.
pub(super) fn kept_in_studio(
    app: &AppContext,
) -> anyhow::Result<(Vec<crate::prefs::sessions::KeptReply>, PathBuf)> {
    let config = app.config();
    let cast = app.all_players();
    let annotator = config.prefs.annotator_id();
    let players = SessionPlayers {
        cast: &cast,
        variant: config.chat.prompt_variant,
        user_name: &config.chat.user_name,
        annotator: &annotator,
    };
    let dir = config.sessions_dir(&app.studio.root);
    let mut kept = Vec::new();
    for summary in list_sessions(&dir)? {
        let Ok((session, _)) = load_session(&summary.path) else {
            eprintln!(
                "note: '{}' could not be read; skipped",
                summary.path.display()
            );
            continue;
        };
        kept.extend(kept_replies(&session, &players));
    }
    Ok((kept, dir))
}

/// Samples from the replies kept in the studio's sessions.
fn session_samples(app: &AppContext, args: &SftArgs) -> anyhow::Result<(Vec<Sample>, DataSource)> {
    let (kept, dir) = kept_in_studio(app)?;
    let mut samples = Vec::new();
    for kept in kept {
        if args
            .character
            .as_deref()
            .is_some_and(|c| !c.eq_ignore_ascii_case(&kept.character))
        {
            continue;
        }
        if let Some(min) = args.min_stars
            && !passes(kept.rating, min)
        {
            continue;
        }
        let mut messages: Vec<Message> = kept
            .context
            .iter()
            .map(|m| Message {
                role: m.role.as_str().to_string(),
                content: m.content.clone(),
            })
            .collect();
        messages.push(Message {
            role: "assistant".into(),
            content: kept.reply,
        });
        samples.push(Sample { messages });
    }
    let digest: String = samples.iter().map(Sample::sha256).collect();
    let source = DataSource {
        name: format!("sessions in {}", dir.display()),
        sha256: crate::hashing::sha256_hex(digest.as_bytes()),
    };
    Ok((samples, source))
}

fn passes(rating: Option<RatingScore>, min_stars: u8) -> bool {
    match rating {
        Some(RatingScore::Stars(n)) => n >= min_stars,
        Some(RatingScore::ThumbsUp) => true,
        Some(RatingScore::ThumbsDown) | None => false,
    }
}

/// `her train dpo`: pairs from TRL files or the studio, the DPO loop, a report.
pub fn dpo(app: &AppContext, args: &DpoArgs) -> anyhow::Result<ExitCode> {
    use crate::train::dpo::{DpoJob, read_dpo_jsonl, run as run_dpo};
    let config = app.config();
    let model = app.model_path();
    crate::engine::local::check_model_file(&model)?;
    let mut pairs = Vec::new();
    for path in &args.data {
        pairs.extend(read_dpo_jsonl(path)?);
    }
    if args.from_prefs {
        pairs.extend(studio_pairs(app, args)?);
    }
    if pairs.is_empty() {
        bail!(
            "no preference pairs with a winner: collect some in the arena or with `her annotate`"
        );
    }
    let runs = config.runs_dir(&app.studio.root);
    let run_dir = run_folder(
        &runs,
        args.resume.as_deref(),
        args.name.as_deref(),
        args.data.first(),
        "dpo",
    )?;
    let job = DpoJob {
        model_fingerprint: crate::engine::local::fingerprint(&model)?,
        model,
        settings: config.train.clone(),
        beta: args.beta,
        run: run_dir.clone(),
        resume: args.resume.is_some(),
        init_adapter: args.init_adapter.clone(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    watch_ctrl_c(stop.clone());
    eprintln!(
        "DPO on {} pairs into {} (ctrl+c saves and stops)",
        pairs.len(),
        run_dir.display()
    );
    let mut stderr = std::io::stderr();
    let report = run_dpo(&job, pairs, &stop, &mut |step, total, m| {
        let line = format!(
            "step {step}/{total} · loss {:.4} · margin {:+.3} · accuracy {:.0}%",
            m.loss,
            m.margin,
            m.accuracy * 100.0
        );
        overwrite_line(&mut stderr, &line);
    })?;
    eprintln!();
    let show = |m: &Option<crate::train::dpo::PairMetrics>| {
        m.as_ref()
            .map_or("n/a (no held-out pairs)".to_string(), |m| {
                format!(
                    "margin {:+.3}, accuracy {:.0}%, loss {:.4}",
                    m.margin,
                    m.accuracy * 100.0,
                    m.loss
                )
            })
    };
    println!(
        "{} steps on {} pairs ({} held out)",
        report.steps, report.train_pairs, report.eval_pairs
    );
    println!("held-out before: {}", show(&report.eval_before));
    if report.interrupted {
        println!(
            "stopped; continue with: her train dpo --resume {} (same data)",
            run_dir.display()
        );
        return Ok(ExitCode::from(130));
    }
    println!("held-out after:  {}", show(&report.eval_after));
    if let Some(adapter) = &report.adapter_gguf {
        println!(
            "adapter: {}\n  in the chat: /adapter {}",
            adapter.display(),
            adapter.display()
        );
        if args.gate {
            super::eval::gate_after_training(app, adapter)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The studio's pairs with a winner, as DPO samples.
fn studio_pairs(
    app: &AppContext,
    args: &DpoArgs,
) -> anyhow::Result<Vec<crate::train::dpo::PairSample>> {
    use crate::prefs::PreferenceRecord;
    let records = super::prefs::filtered(app, &args.filter)?;
    Ok(records
        .into_iter()
        .filter_map(|r| match r {
            PreferenceRecord::Pair(p) => {
                let (chosen, rejected) = p.winner_loser()?;
                Some(crate::train::dpo::PairSample {
                    prompt: p
                        .context
                        .iter()
                        .map(|m| Message {
                            role: m.role.as_str().to_string(),
                            content: if m.role == crate::prefs::Role::Assistant {
                                crate::format::strip_system_thinking(&m.content)
                            } else {
                                m.content.clone()
                            },
                        })
                        .collect(),
                    chosen: chosen.to_string(),
                    rejected: rejected.to_string(),
                })
            }
            PreferenceRecord::Rating(_) => None,
        })
        .collect())
}

/// `her train kto`: unpaired good/bad replies from TRL files or the studio.
pub fn kto(app: &AppContext, args: &DpoArgs) -> anyhow::Result<ExitCode> {
    use crate::train::kto::{KtoJob, KtoSample, read_kto_jsonl, run as run_kto};
    let config = app.config();
    let model = app.model_path();
    crate::engine::local::check_model_file(&model)?;
    let mut samples = Vec::new();
    for path in &args.data {
        samples.extend(read_kto_jsonl(path)?);
    }
    if args.from_prefs {
        // The KTO export decides labels (3 stars and praise of one layer are left out).
        let records = super::prefs::filtered(app, &args.filter)?;
        let (text, _) = crate::prefs::render(&records, crate::prefs::Format::Kto)?;
        let mut empty = 0;
        for line in text.lines() {
            let sample = serde_json::from_str::<KtoSample>(line)?;
            // A rating of an empty reply teaches nothing: left out, and said so.
            match sample.problem() {
                None => samples.push(sample),
                Some(_) => empty += 1,
            }
        }
        if empty > 0 {
            eprintln!("left out {empty} rated replies with an empty completion");
        }
    }
    if samples.is_empty() {
        bail!("no labelled replies: rate replies in the chat (thumbs or stars) first");
    }
    let runs = config.runs_dir(&app.studio.root);
    let run_dir = run_folder(
        &runs,
        args.resume.as_deref(),
        args.name.as_deref(),
        args.data.first(),
        "kto",
    )?;
    let job = KtoJob {
        model_fingerprint: crate::engine::local::fingerprint(&model)?,
        model,
        settings: config.train.clone(),
        beta: args.beta,
        kto: config.kto.clone(),
        run: run_dir.clone(),
        resume: args.resume.is_some(),
        init_adapter: args.init_adapter.clone(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    watch_ctrl_c(stop.clone());
    let mut stderr = std::io::stderr();
    let report = run_kto(&job, samples, &stop, &mut |step, total, m| {
        let line = format!(
            "step {step}/{total} · loss {:.4} · reward gap {:+.3} · accuracy {:.0}%",
            m.loss,
            m.reward_gap,
            m.accuracy * 100.0
        );
        overwrite_line(&mut stderr, &line);
    })?;
    eprintln!();
    let show = |m: &Option<crate::train::kto::KtoMetrics>| {
        m.as_ref()
            .map_or("n/a (no held-out replies)".to_string(), |m| {
                format!(
                    "reward gap {:+.3}, accuracy {:.0}%, loss {:.4}",
                    m.reward_gap,
                    m.accuracy * 100.0,
                    m.loss
                )
            })
    };
    println!(
        "{} steps; held-out before: {}",
        report.steps,
        show(&report.eval_before)
    );
    if report.interrupted {
        println!(
            "stopped; continue with: her train kto --resume {} (same data)",
            run_dir.display()
        );
        return Ok(ExitCode::from(130));
    }
    println!("held-out after: {}", show(&report.eval_after));
    if let Some(adapter) = &report.adapter_gguf {
        println!(
            "adapter: {}\n  in the chat: /adapter {}",
            adapter.display(),
            adapter.display()
        );
        if args.gate {
            super::eval::gate_after_training(app, adapter)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
