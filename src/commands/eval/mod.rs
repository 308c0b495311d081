//! `her eval`: play scenes with the base model and adapters, judge them and
//! check them with the rules, report scores with intervals; `--gate A B`
//! (and `her train … --gate`) promotes an adapter only when the judge passed
//! calibration and no dimension regresses; `her eval calibrate` checks a
//! judge on the calibration set. Also the chat's side of promotion: loading
//! the adapter promoted for a character.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

mod calibrate;
mod gate;

pub use gate::load_promoted;

use crate::app::AppContext;
use crate::cli::{CalibrateArgs, ChatArgs, EvalArgs, EvalCommand};
use crate::config::JudgeKind;
use her_core::character::Character;
use her_core::prompt::PromptVariant;
use her_engine::local::sha256_file;
use her_engine::{Backend, LocalEngine};
use her_eval::calibrate::{
    ADVICE, CalibrationStatus, JudgeIdentity, calibrate, render_calibration, set, write_calibration,
};
use her_eval::promote::{
    GateLogEntry, Promotion, append_gate_log, gate_log, promote, promoted_adapter, promoted_file,
};
use her_eval::report::report_table;
use her_eval::rules::RuleOptions;
use her_eval::{
    EvalPlan, EvalResults, FileId, GATE_FILE, NextSpeakerMode, Progress, SimOptions, SystemSpec,
    decide, judge_sampling, load_scenes, render_decision, run_eval,
};

/// Settings of one evaluation, from flags over `[eval]`.
struct Options {
    rounds: usize,
    seeds: Vec<u32>,
    max_new_tokens: u32,
    temperature: f32,
    next_speaker: NextSpeakerMode,
    environment: bool,
    resamples: usize,
    seed: u32,
    judge_model: Option<PathBuf>,
    judge_n_ctx: Option<u32>,
    name: Option<String>,
    sessions: bool,
}

impl Options {
    fn new(app: &AppContext, args: &EvalArgs) -> Self {
        let config = app.config();
        let e = &config.eval;
        let seed = args.seed.unwrap_or(config.sampling.seed);
        let count = args.seeds.unwrap_or(e.seeds).max(1);
        let judge_model = judge_model_path(app, args.judge_model.as_deref());
        Self {
            rounds: args.rounds.unwrap_or(e.rounds).max(1) as usize,
            seeds: (0..count).map(|i| seed.wrapping_add(i)).collect(),
            max_new_tokens: args.max_new_tokens.unwrap_or(e.max_new_tokens),
            temperature: args.temperature.unwrap_or(config.sampling.temperature),
            next_speaker: match args.next_speaker.as_deref().unwrap_or(&e.next_speaker) {
                "random" => NextSpeakerMode::Random,
                _ => NextSpeakerMode::Model,
            },
            environment: e.environment && !args.no_environment,
            resamples: args.resamples.unwrap_or(e.resamples).max(1) as usize,
            seed,
            judge_model,
            judge_n_ctx: args.judge_n_ctx,
            name: args.name.clone(),
            sessions: !args.no_sessions,
        }
    }
}

/// `--judge-model`, else `eval.judge_model` (relative to the studio).
fn judge_model_path(app: &AppContext, flag: Option<&Path>) -> Option<PathBuf> {
    let config = app.config();
    flag.map(Path::to_path_buf).or_else(|| {
        let configured = &config.eval.judge_model;
        (!configured.as_os_str().is_empty())
            .then(|| config.resolve_path(&app.studio.root, configured))
    })
}

pub fn run(app: &AppContext, args: &EvalArgs) -> anyhow::Result<ExitCode> {
    if let Some(EvalCommand::Calibrate(calibrate_args)) = &args.command {
        return calibrate::run_calibration(app, calibrate_args);
    }
    let options = Options::new(app, args);
    let systems = match &args.gate {
        Some(pair) => pair.iter().map(|s| system_of(s)).collect(),
        None => {
            let mut systems = vec![SystemSpec::base()];
            systems.extend(args.adapters.iter().map(|a| adapter_system(a)));
            systems
        }
    };
    let scenes = load_scenes(
        &args.scenes,
        &app.scenes_dir(),
        &app.config().characters_dir(&app.studio.root),
    )?;
    // Known before the long run, so a typo costs nothing.
    let character = match &args.gate {
        Some(_) => Some(resolve_character(app, args.character.as_deref())?),
        None => None,
    };
    let (results, dir) = evaluate(app, &options, systems, scenes, character.is_some())?;
    if let Some(character) = character {
        let promoted = gate::gate(app, &results, &dir, &character)?;
        return Ok(if promoted {
            ExitCode::SUCCESS
        } else {
            // A refusal is an answer, not a failure; scripts can still tell.
            ExitCode::from(3)
        });
    }
    Ok(ExitCode::SUCCESS)
}

/// `her train sft --gate`: the new adapter against the one promoted for
/// chat.character (or the base model), on the scenes that character is in.
pub fn gate_after_training(app: &AppContext, adapter: &Path) -> anyhow::Result<bool> {
    let character = resolve_character(app, None)?;
    let baseline = match promoted_adapter(&promoted_file(&app.studio.root), &character.name)? {
        Some(p) if p.adapter.is_file() => adapter_system(&p.adapter),
        _ => SystemSpec::base(),
    };
    let all = load_scenes(
        &[],
        &app.scenes_dir(),
        &app.config().characters_dir(&app.studio.root),
    )?;
    let own: Vec<_> = all
        .iter()
        .filter(|s| s.cast.iter().any(|c| c.name == character.name))
        .cloned()
        .collect();
    let scenes = if own.is_empty() { all } else { own };
    eprintln!(
        "gate: {} against {} on {} scene(s) with {}",
        adapter.display(),
        baseline.label,
        scenes.len(),
        character.name
    );
    let options = Options::new(app, &EvalArgs::default());
    let systems = vec![baseline, adapter_system(adapter)];
    let (results, dir) = evaluate(app, &options, systems, scenes, true)?;
    gate::gate(app, &results, &dir, &character)
}

/// A character file (by name or stem), or else a scene member of that name.
fn resolve_character(app: &AppContext, name: Option<&str>) -> anyhow::Result<Character> {
    match app.character(name) {
        Ok(c) => Ok(c),
        Err(err) => {
            let wanted = name.unwrap_or(&app.config().chat.character);
            app.all_players()
                .into_iter()
                .find(|p| p.name.eq_ignore_ascii_case(wanted))
                .ok_or_else(|| err.into())
        }
    }
}

/// `base` or an adapter path.
fn system_of(spec: &str) -> SystemSpec {
    if spec.eq_ignore_ascii_case("base") {
        SystemSpec::base()
    } else {
        adapter_system(Path::new(spec))
    }
}

/// An adapter by absolute path: results and promotions must not depend on
/// the folder `her` was started from.
fn adapter_system(path: &Path) -> SystemSpec {
    SystemSpec::adapter(&std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
}

/// Labels must tell systems apart: a repeated one gets `-2`, `-3`, ….
fn unique_labels(systems: &mut [SystemSpec]) {
    for i in 1..systems.len() {
        let mut n = 2;
        let stem = systems[i].label.clone();
        while systems[..i].iter().any(|s| s.label == systems[i].label) {
            systems[i].label = format!("{stem}-{n}");
            n += 1;
        }
    }
}

fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

fn file_id(path: &Path) -> anyhow::Result<FileId> {
    let sha256 = sha256_file(path).with_context(|| format!("reading '{}'", path.display()))?;
    Ok(FileId {
        path: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
        sha256,
    })
}

fn evaluate(
    app: &AppContext,
    options: &Options,
    mut systems: Vec<SystemSpec>,
    scenes: Vec<her_eval::EvalScene>,
    gating: bool,
) -> anyhow::Result<(EvalResults, PathBuf)> {
    let config = app.config();
    unique_labels(&mut systems);
    for system in &systems {
        if let Some(path) = &system.adapter
            && !path.exists()
        {
            bail!(
                "adapter '{}' does not exist: give an adapter GGUF (a run's is runs/NAME/adapter.gguf) or `base`",
                path.display()
            );
        }
    }
    let name = options.name.clone().unwrap_or_else(default_name);
    let dir = config.evals_dir(&app.studio.root).join(&name);
    if dir.join(her_eval::results::RESULTS_FILE).exists() {
        bail!(
            "'{}' already holds an evaluation; choose another --name",
            dir.display()
        );
    }
    let model_path = app.model_path();
    her_engine::local::check_model_file(&model_path)?;
    let model = file_id(&model_path)?;
    let sessions_dir = options
        .sessions
        .then(|| config.sessions_dir(&app.studio.root));
    if sessions_dir.is_some() {
        keep_coser_scenes(app, &scenes);
    }

    eprintln!("loading {} …", model_path.display());
    let actor = app.start_engine()?;
    let (judge_engine, judge) = start_judge(
        app,
        options.judge_model.as_deref(),
        options.judge_n_ctx,
        &model_path,
        || Ok(model.clone()),
    )?;
    let judge_sampling = judge_sampling(&config.sampling, true);
    let identity = JudgeIdentity::new(judge.clone(), &judge_sampling, true);
    let calibration = CalibrationStatus::lookup(
        &config.evals_dir(&app.studio.root),
        &identity.fingerprint(),
        config.eval.calibration_thresholds(),
    )?;
    if gating && !calibration.passed() {
        eprintln!(
            "note: {}; the gate will refuse whatever the scores: {ADVICE}",
            calibration.problem()
        );
    }
    let mut sampling = config.sampling.clone();
    sampling.max_new_tokens = options.max_new_tokens;
    sampling.temperature = options.temperature;
    let plan = EvalPlan {
        name: name.clone(),
        dir: dir.clone(),
        sessions_dir,
        scenes,
        systems,
        seeds: options.seeds.clone(),
        sim: SimOptions {
            rounds: options.rounds,
            next_speaker: options.next_speaker,
            environment: options.environment,
            sampling,
            variant: PromptVariant::Evaluation,
        },
        judge_sampling,
        judge_grammar: true,
        resamples: options.resamples,
        bootstrap_seed: u64::from(options.seed),
        model,
        judge,
        judge_calibration: Some(calibration),
        rules: RuleOptions {
            repetition_overlap: config.eval.repetition_overlap,
        },
    };
    eprintln!(
        "evaluating {} system(s) on {} scene(s) × {} seed(s), up to {} turns each, into {}",
        plan.systems.len(),
        plan.scenes.len(),
        plan.seeds.len(),
        plan.sim.rounds,
        dir.display()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let judge_backend: Option<&dyn Backend> = judge_engine.as_deref();
    let (results, _) =
        runtime.block_on(run_eval(&actor, judge_backend, &plan, &mut print_progress))?;
    println!("{}", report_table(&results));
    println!(
        "results: {}",
        dir.join(her_eval::results::RESULTS_FILE).display()
    );
    println!("chart:   {}", dir.join(her_eval::CHART_FILE).display());
    if let Some(dir) = &plan.sessions_dir {
        println!(
            "transcripts: sessions in {} (titles start with 'eval {name}')",
            dir.display()
        );
    }
    Ok((results, dir))
}

/// The judge of an evaluation or a calibration and its file identity: a GGUF
/// of its own (`judge_model`, or any `judge_n_ctx`), else the one `[judge]`
/// names (a local file or a server); `None` (and `actor_model()`) when the
/// actor's own model judges, with adapters removed.
fn start_judge(
    app: &AppContext,
    judge_model: Option<&Path>,
    judge_n_ctx: Option<u32>,
    model_path: &Path,
    actor_model: impl FnOnce() -> anyhow::Result<FileId>,
) -> anyhow::Result<(Option<Box<dyn Backend>>, FileId)> {
    let config = app.config();
    let use_judge_section =
        judge_model.is_none() && judge_n_ctx.is_none() && config.judge.kind != JudgeKind::Actor;
    let separate_judge = match judge_model {
        Some(path) => canonical(path) != canonical(model_path) || judge_n_ctx.is_some(),
        None => judge_n_ctx.is_some(),
    };
    if use_judge_section {
        eprintln!("starting the judge that [judge] in config.toml names …");
        let engine = app.start_judge()?;
        let info = engine.model_info();
        let id = match config.judge.kind {
            JudgeKind::Local => file_id(&info.path)?,
            // A server's model: its name and the fingerprint it reported.
            _ => FileId {
                path: PathBuf::from(format!("remote:{}", info.name)),
                sha256: info.fingerprint.clone(),
            },
        };
        Ok((Some(engine), id))
    } else if separate_judge {
        let judge_path = judge_model.unwrap_or(model_path).to_path_buf();
        her_engine::local::check_model_file(&judge_path)?;
        eprintln!("loading the judge {} …", judge_path.display());
        let mut o = app.engine_options();
        o.model_path = judge_path.clone();
        if let Some(n) = judge_n_ctx {
            o.n_ctx = n;
        }
        Ok((
            Some(Box::new(LocalEngine::start(o)?)),
            file_id(&judge_path)?,
        ))
    } else {
        Ok((None, actor_model()?))
    }
}

fn print_progress(p: Progress<'_>) {
    match p {
        Progress::System {
            label,
            adapter_sha256,
        } => match adapter_sha256 {
            Some(sha) => eprintln!("{label} (adapter sha256 {}…)", sha.get(..12).unwrap_or(sha)),
            None => eprintln!("{label} (no adapter)"),
        },
        Progress::Played {
            scene, seed, turns, ..
        } => eprintln!("  played {scene} seed {seed}: {turns} turns"),
        Progress::Judged {
            scene,
            seed,
            scores,
            rule_scores,
            ..
        } => eprintln!(
            "  judged {scene} seed {seed}: overall {:.1} (rules {:.1})",
            scores.overall, rule_scores.overall
        ),
    }
}

/// A CoSER scene's transcripts open in the TUI through a scene file of the
/// same title: write one (as `her import` would) unless it exists.
fn keep_coser_scenes(app: &AppContext, scenes: &[her_eval::EvalScene]) {
    let dir = app.scenes_dir();
    let known: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| her_core::character::load_scene(&e.path()).ok())
                .map(|s| s.title)
                .collect()
        })
        .unwrap_or_default();
    for scene in scenes.iter().filter(|s| s.from_coser) {
        if known.contains(&scene.scene.title) {
            continue;
        }
        if std::fs::create_dir_all(&dir).is_err() {
            return;
        }
        match her_core::character::store::save_scene(&dir, &scene.scene, false) {
            Ok(path) => eprintln!(
                "note: saved CoSER scene '{}' as {} so its transcripts open in the TUI",
                scene.scene.title,
                path.display()
            ),
            Err(err) => eprintln!(
                "note: CoSER scene '{}' has no scene file ({err}); its transcripts are saved but the TUI cannot replay them",
                scene.scene.title
            ),
        }
    }
}

fn default_name() -> String {
    let now = her_core::session::now_rfc3339();
    // 2026-01-02T03:04:05.678Z → 20260102-030405
    let digits: String = now.chars().filter(char::is_ascii_digit).collect();
    match (digits.get(..8), digits.get(8..14)) {
        (Some(date), Some(time)) => format!("{date}-{time}"),
        _ => "eval".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_become_unique() {
        let mut systems = vec![
            SystemSpec::base(),
            SystemSpec::adapter(Path::new("runs/a/adapter.gguf")),
            SystemSpec::adapter(Path::new("other/a/adapter.gguf")),
            system_of("BASE"),
        ];
        unique_labels(&mut systems);
        let labels: Vec<&str> = systems.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["base", "a", "a-2", "base-2"]);
    }

    #[test]
    fn default_names_are_dated() {
        let name = default_name();
        assert_eq!(name.len(), 15, "{name}");
        assert_eq!(&name[8..9], "-");
    }
}
