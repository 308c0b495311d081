//! `her train sft|dpo|kto|rl`: gather the data (`train::dataset`), then one
//! driver for every method: check the model, pick the run folder, watch
//! ctrl+c, run the method on the training loop with a progress line, and
//! say where the adapter is (gating it when asked). Each method keeps only
//! its data, its job and its summary lines.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};

use crate::app::AppContext;
use crate::cli::{PrefTrainArgs, RunArgs, SftArgs, TrainCommand};
use her_core::prefs::sessions::{SessionPlayers, kept_replies};
use her_core::session::{list_sessions, load_session};
use her_train::dataset::{self, KeptFilter};
use her_train::run::progress_line;
use her_train::sft::{Progress, SftJob};
use her_train::train_loop::{ErrorOf, ItemOf, Job, OnProgress, RunSpec};

pub fn run(app: &AppContext, command: &TrainCommand) -> anyhow::Result<ExitCode> {
    if command.run_args().is_some_and(|run| run.plan) {
        return super::train_plan::run_plan(app, command.kind());
    }
    match command {
        TrainCommand::Sft(args) => sft(app, args),
        TrainCommand::Dpo(args) => dpo(app, args),
        TrainCommand::Kto(args) => kto(app, args),
        TrainCommand::Rl(args) => super::train_rl::rl(app, args),
        TrainCommand::Plan(args) => super::train_plan::plan(app, args),
    }
}

/// What every method's run is set up with.
pub(super) struct Driver<'a> {
    app: &'a AppContext,
    args: &'a RunArgs,
    kind: &'static str,
    pub model: PathBuf,
    pub fingerprint: String,
    pub run_dir: PathBuf,
    pub stop: Arc<AtomicBool>,
}

impl<'a> Driver<'a> {
    /// Checks the model file, takes its fingerprint, picks the run folder
    /// (named after `first_input` by default) and sets ctrl+c to stop the
    /// run after a checkpoint.
    pub(super) fn start(
        app: &'a AppContext,
        args: &'a RunArgs,
        kind: &'static str,
        first_input: Option<&PathBuf>,
    ) -> anyhow::Result<Self> {
        let model = app.model_path();
        her_engine::local::check_model_file(&model)?;
        let fingerprint = her_engine::local::fingerprint(&model)
            .with_context(|| format!("reading '{}'", model.display()))?;
        let runs = app.config().runs_dir(&app.studio.root);
        let run_dir = run_folder(
            &runs,
            args.resume.as_deref(),
            args.name.as_deref(),
            first_input,
            kind,
        )?;
        let stop = Arc::new(AtomicBool::new(false));
        watch_ctrl_c(stop.clone());
        Ok(Self {
            app,
            args,
            kind,
            model,
            fingerprint,
            run_dir,
            stop,
        })
    }

    /// The run every method makes: the checked model, the run folder,
    /// `[train]`, and the adapter to start from.
    pub(super) fn spec(&self, init_adapter: Option<PathBuf>) -> RunSpec {
        RunSpec {
            model: self.model.clone(),
            model_fingerprint: self.fingerprint.clone(),
            settings: self.app.config().train.clone(),
            run: self.run_dir.clone(),
            resume: self.args.resume.is_some(),
            init_adapter,
        }
    }

    /// Runs `job` on the training loop; ctrl+c stops it after a checkpoint.
    pub(super) fn train<'j, J: Job>(
        &self,
        job: &'j J,
        items: Vec<ItemOf<'j, J>>,
        on_progress: &mut OnProgress<'_, J::Objective<'j>>,
    ) -> anyhow::Result<J::Report>
    where
        ErrorOf<'j, J>: std::error::Error + Send + Sync + 'static,
    {
        Ok(her_train::train_loop::run(
            job,
            items,
            &self.stop,
            on_progress,
        )?)
    }

    /// After the run: how to continue a stopped one (exit 130), or where
    /// the adapter is, and the gate when asked.
    pub(super) fn finish(
        &self,
        interrupted: bool,
        same_input: &str,
        adapter: Option<&Path>,
        peft: Option<&Path>,
    ) -> anyhow::Result<ExitCode> {
        if interrupted {
            println!(
                "stopped; continue with: her train {} --resume {}{same_input}",
                self.kind,
                self.run_dir.display()
            );
            return Ok(ExitCode::from(130));
        }
        if let Some(adapter) = adapter {
            println!("adapter: {}", adapter.display());
            println!("  in the chat: /adapter {}", adapter.display());
        }
        if let Some(peft) = peft {
            println!("PEFT files: {}", peft.display());
        }
        if let (true, Some(adapter)) = (self.args.gate, adapter) {
            super::eval::gate_after_training(self.app, adapter)?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

pub fn sft(app: &AppContext, args: &SftArgs) -> anyhow::Result<ExitCode> {
    let config = app.config();
    let (samples, sources) = gather(app, args)?;
    let driver = Driver::start(app, &args.run, "sft", args.data.first())?;
    let job = SftJob {
        spec: driver.spec(None),
        sources,
    };
    eprintln!(
        "training {} samples into {} (ctrl+c saves a checkpoint and stops)",
        samples.len(),
        driver.run_dir.display()
    );
    let mut stderr = std::io::stderr();
    let report = driver.train(&job, samples, &mut |p: Progress<'_>| match p {
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
    driver.finish(
        report.interrupted,
        "",
        report.adapter_gguf.as_deref(),
        report.peft_dir.as_deref(),
    )
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

/// The progress line of a preference method (DPO's margin, KTO's reward
/// gap): how far apart the good and bad replies are, and how often in order.
fn preference_line(step: u64, total: u64, loss: f64, gap: (&str, f64), accuracy: f64) -> String {
    format!(
        "step {step}/{total} · loss {loss:.4} · {} {:+.3} · accuracy {:.0}%",
        gap.0,
        gap.1,
        accuracy * 100.0
    )
}

/// Rewrites the terminal's current line (a progress display on stderr).
pub(super) fn overwrite_line(out: &mut std::io::Stderr, text: &str) {
    let _ = write!(out, "\r{text}\x1b[K");
    let _ = out.flush();
}

/// `DATE-STEM-KIND-TIME`: sortable, and a second run the same day gets its
/// own folder instead of refusing to start.
fn default_name(first_input: Option<&std::path::Path>, kind: &str) -> String {
    let now = her_core::session::now_rfc3339();
    let date = now.get(..10).unwrap_or("run");
    let time = now.get(11..19).unwrap_or("").replace(':', "");
    let stem = first_input
        .and_then(|p| p.file_stem())
        .map_or("studio".into(), |n| n.to_string_lossy().into_owned());
    format!("{date}-{stem}-{kind}-{time}")
}

fn gather(
    app: &AppContext,
    args: &SftArgs,
) -> anyhow::Result<(Vec<her_train::data::Sample>, Vec<dataset::DataSource>)> {
    let (mut samples, mut sources) = dataset::sft_from_files(&args.data)?;
    if args.from_sessions {
        let (kept, dir) = kept_in_studio(app)?;
        let filter = KeptFilter {
            character: args.character.as_deref(),
            min_stars: args.min_stars,
        };
        let (from_sessions, source) = dataset::sft_from_kept(kept, filter, &dir);
        samples.extend(from_sessions);
        sources.push(source);
    }
    if samples.is_empty() && args.run.resume.is_some() {
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
) -> anyhow::Result<(Vec<her_core::prefs::sessions::KeptReply>, PathBuf)> {
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

/// `her train dpo`: pairs from TRL files or the studio, the DPO loop, a report.
pub fn dpo(app: &AppContext, args: &PrefTrainArgs) -> anyhow::Result<ExitCode> {
    use her_train::dpo::{DpoJob, PairMetrics};
    use her_train::train_loop::Progress;
    let mut pairs = dataset::pairs_from_files(&args.data)?;
    if args.from_prefs {
        pairs.extend(dataset::pairs_from_records(super::prefs::filtered(
            app,
            &args.filter,
        )?));
    }
    if pairs.is_empty() {
        bail!(
            "no preference pairs with a winner: collect some in the arena or with `her annotate`"
        );
    }
    let driver = Driver::start(app, &args.run, "dpo", args.data.first())?;
    let job = DpoJob {
        spec: driver.spec(args.init.init_adapter.clone()),
        beta: args.beta,
    };
    eprintln!(
        "DPO on {} pairs into {} (ctrl+c saves and stops)",
        pairs.len(),
        driver.run_dir.display()
    );
    let mut stderr = std::io::stderr();
    let report = driver.train(&job, pairs, &mut |p| {
        if let Progress::Step(s) = p {
            let (gap, accuracy) = (s.metrics.margin, s.metrics.accuracy);
            let line = preference_line(s.step, s.total_steps, s.loss, ("margin", gap), accuracy);
            overwrite_line(&mut stderr, &line);
        }
    })?;
    eprintln!();
    let show = |m: &Option<PairMetrics>| {
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
    if !report.interrupted {
        println!("held-out after:  {}", show(&report.eval_after));
    }
    driver.finish(
        report.interrupted,
        " (same data)",
        report.adapter_gguf.as_deref(),
        None,
    )
}

/// `her train kto`: unpaired good/bad replies from TRL files or the studio.
pub fn kto(app: &AppContext, args: &PrefTrainArgs) -> anyhow::Result<ExitCode> {
    use her_train::kto::{KtoJob, KtoMetrics};
    use her_train::train_loop::Progress;
    let config = app.config();
    let mut samples = dataset::kto_from_files(&args.data)?;
    if args.from_prefs {
        let records = super::prefs::filtered(app, &args.filter)?;
        let (from_prefs, empty) = dataset::kto_from_records(&records)?;
        samples.extend(from_prefs);
        if empty > 0 {
            eprintln!("left out {empty} rated replies with an empty completion");
        }
    }
    if samples.is_empty() {
        bail!("no labelled replies: rate replies in the chat (thumbs or stars) first");
    }
    let driver = Driver::start(app, &args.run, "kto", args.data.first())?;
    let job = KtoJob {
        spec: driver.spec(args.init.init_adapter.clone()),
        beta: args.beta,
        kto: config.kto.clone(),
    };
    let mut stderr = std::io::stderr();
    let report = driver.train(&job, samples, &mut |p| {
        if let Progress::Step(s) = p {
            let (gap, accuracy) = (s.metrics.reward_gap, s.metrics.accuracy);
            let line =
                preference_line(s.step, s.total_steps, s.loss, ("reward gap", gap), accuracy);
            overwrite_line(&mut stderr, &line);
        }
    })?;
    eprintln!();
    let show = |m: &Option<KtoMetrics>| {
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
    if !report.interrupted {
        println!("held-out after: {}", show(&report.eval_after));
    }
    driver.finish(
        report.interrupted,
        " (same data)",
        report.adapter_gguf.as_deref(),
        None,
    )
}
