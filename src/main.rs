//! The `her` binary: parse flags, load the studio, run one command.

use her_core::fsutil::IoError;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use her_core::character::Character;
use her_core::character::card::Format;
use her_core::character::transfer;
use her_core::story::{Shelf, StoryLog, wanted_books};
use her_engine::Backend;
use her_engine::dialogue::{Conversation, Recorder, SceneConversation, new_header, transcript_of};
use her_studio::app::AppContext;
use her_studio::cli::{
    BenchCommand, ChatArgs, Cli, Command, EvalCommand, ExportCommand, ImportArgs, ImportCommand,
    PrefsCommand,
};
use her_studio::commands;
use her_studio::commands::chat::{
    HeadlessOptions, LineStory, Saving, run_headless, run_headless_scene,
};
use her_studio::{bench, doctor, logging};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // A closed pipe (`her prompt | head`) is the reader's choice, not an error.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut overrides = AppContext::parse_sets(&cli.set).map_err(anyhow::Error::msg)?;
    match &cli.command {
        Some(Command::Chat(args)) => {
            overrides.extend(args.model.overrides());
            overrides.extend(args.sampling.overrides());
        }
        Some(Command::Doctor(args)) => overrides.extend(args.overrides()),
        Some(Command::Prompt(args)) => overrides.extend(args.model.overrides()),
        Some(Command::Annotate(args)) => overrides.extend(args.model.overrides()),
        Some(Command::Judge(args)) => overrides.extend(args.model.overrides()),
        Some(Command::Eval(args)) => {
            overrides.extend(args.model.overrides());
            if let Some(EvalCommand::Calibrate(calibrate)) = &args.command {
                overrides.extend(calibrate.model.overrides());
            }
        }
        Some(Command::Train(train)) => {
            if let Some(run) = train.run_args() {
                overrides.extend(run.model.overrides());
            }
        }
        _ => {}
    }
    let app = match AppContext::load(cli.studio.as_deref(), &overrides) {
        Ok(app) => app,
        // Doctor must still report on a broken config.
        Err(err) if matches!(cli.command, Some(Command::Doctor(_))) => {
            eprintln!("config: {err}");
            return Ok(ExitCode::FAILURE);
        }
        Err(err) => return Err(err.into()),
    };
    start_logging(&app);
    match cli.command {
        Some(Command::Chat(args))
            if !args.headless && args.scene.is_none() && stdout_is_terminal() =>
        {
            tui(&app, &args)
        }
        Some(Command::Chat(args)) => chat(&app, &args),
        None if stdout_is_terminal() => tui(&app, &ChatArgs::interactive_default()),
        None => chat(&app, &ChatArgs::interactive_default()),
        Some(Command::Characters) => {
            her_core::character::print_list(&app.config().characters_dir(&app.studio.root))?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Import(ImportArgs {
            what: Some(ImportCommand::Adapter(args)),
            ..
        })) => {
            commands::import_adapter::run(&app, &args)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Import(ImportArgs {
            path: Some(path),
            force,
            ..
        })) => {
            let characters = app.config().characters_dir(&app.studio.root);
            let report = transfer::import(&path, &characters, &app.scenes_dir(), force)?;
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
            for path in &report.written {
                println!("wrote {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        // clap requires a path or a subcommand.
        Some(Command::Import(_)) => {
            anyhow::bail!("her import needs a card or scene file, or `adapter PEFT_DIR`")
        }
        Some(Command::Export(ExportCommand::Session(args))) => {
            use her_core::session::{ExportFormat, ExportOptions, export, load_session};
            let (format, ext) = match args.format.as_str() {
                "txt" | "text" => (ExportFormat::PlainText, "txt"),
                "md" | "markdown" => (ExportFormat::Markdown, "md"),
                "st" | "sillytavern" => (ExportFormat::SillyTavern, "st.jsonl"),
                other => anyhow::bail!("--format '{other}': expected txt, md or st"),
            };
            let (session, issues) = load_session(&args.file)?;
            for issue in &issues {
                eprintln!("warning: {issue}");
            }
            let out = args
                .out
                .clone()
                .unwrap_or_else(|| args.file.with_extension(ext));
            let options = ExportOptions {
                drop_role_thinking: args.no_thoughts,
            };
            export(&session, format, options, &out)?;
            println!("wrote {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Export(ExportCommand::Prefs(args))) => {
            commands::prefs::export_prefs(&app, &args)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Prefs(PrefsCommand::Summary(filter))) => {
            commands::prefs::summary(&app, &filter)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Prefs(PrefsCommand::Leaderboard(args))) => {
            commands::prefs::leaderboard(&app, &args)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Prefs(PrefsCommand::Agreement(args))) => {
            commands::prefs::agreement(&app, &args)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Prefs(PrefsCommand::Merge(args))) => {
            commands::prefs::merge(&app, &args)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Annotate(args)) => {
            commands::annotate::run(&app, &args)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Judge(args)) => {
            commands::judge::run(&app, &args)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Eval(args)) => commands::eval::run(&app, &args),
        Some(Command::Train(train)) => commands::train::run(&app, &train),
        Some(Command::Export(ExportCommand::Card(args))) => {
            let character = app.character(Some(&args.name))?;
            let format = if args.json { Format::Json } else { Format::Png };
            let out = match &args.out {
                Some(out) => out.clone(),
                None => transfer::default_card_path(&character, format)?,
            };
            transfer::export(&character, format, &out)?;
            println!("wrote {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Export(ExportCommand::Lore(args))) => {
            use her_core::lore;
            let dir = lore::lore_dir(&app.config().characters_dir(&app.studio.root));
            let path = lore::find_book(&dir, &args.name)?;
            let book = lore::load_book(&path)?;
            let out = match &args.out {
                Some(out) => out.clone(),
                None => format!("{}.json", her_core::character::store::slug(&book.name)?).into(),
            };
            lore::export_book(&book, &out)?;
            println!("wrote {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Doctor(_)) => Ok(doctor::run(&app)),
        Some(Command::Prompt(args)) => {
            her_studio::commands::prompt::run(&app, &args)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Bench(BenchCommand::Engine(args))) => {
            bench::engine::run(&app, &args)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Bench(BenchCommand::Samplers(args))) => {
            bench::samplers::run(&app, &args)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Bench(BenchCommand::BareLoop(args))) => {
            bench::engine::run_bare_loop(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Bench(BenchCommand::Train(args))) => {
            bench::train::run(&app, &args)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Bench(BenchCommand::TrainLoop(args))) => {
            bench::train::run_train_loop(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Bench(BenchCommand::Attention(args))) => {
            bench::attention::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Bench(BenchCommand::AttentionLayer(args))) => {
            bench::attention::run_layer_child(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Bench(BenchCommand::Logits(args))) => {
            bench::logits::run(&app, &args)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Bench(BenchCommand::Rl(args))) => {
            bench::rl::run(&app, &args)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Bench(BenchCommand::GpuParity(args))) => {
            bench::gpu_parity::run(&app, &args)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn stdout_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::io::stdin().is_terminal()
}

/// The full-screen studio. `her` alone opens the character picker; `her
/// chat` opens a new session with the chosen or default character, or
/// `--session FILE` reopens one.
fn tui(app: &AppContext, args: &ChatArgs) -> anyhow::Result<ExitCode> {
    let keymap = her_studio::tui::keymap::Keymap::default()
        .with_overrides(
            &app.config()
                .keys
                .iter()
                .filter(|(_, chord)| !chord.is_empty())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
        .map_err(anyhow::Error::msg)
        .context("config [keys]")?;
    let theme = her_studio::tui::theme::Theme::load(&app.config().chat.theme, &app.studio.root)
        .map_err(anyhow::Error::msg)?;
    if args.no_save {
        anyhow::bail!("--no-save is for the line chat (--headless); the TUI saves every change");
    }
    let start = match (&args.session, &args.character) {
        (Some(path), _) => {
            let (session, _) = her_core::session::load_session(path)?;
            let character = session.header().character.clone().ok_or_else(|| {
                anyhow::anyhow!("session '{}' names no character", path.display())
            })?;
            her_studio::tui::Start::Session {
                character,
                path: path.clone(),
                fork: args.fork,
            }
        }
        (None, Some(name)) => her_studio::tui::Start::Character(name.clone()),
        (None, None) if args.from_picker => her_studio::tui::Start::Picker,
        (None, None) => her_studio::tui::Start::Character(app.config().chat.character.clone()),
    };
    eprintln!("loading {} …", app.backend_label());
    let engine = app.start_backend()?;
    load_adapter_flag(engine.as_ref(), args)?;
    commands::eval::load_promoted(app, engine.as_ref(), args)?;
    // The terminal is restored when run returns: stderr is the user's again.
    match her_studio::tui::run(app, engine, start, keymap, theme)? {
        Some(failure) => {
            eprintln!("error: {failure}");
            Ok(ExitCode::FAILURE)
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

fn chat_scene(
    app: &AppContext,
    args: &ChatArgs,
    name: &str,
    resumed: Option<LineSession>,
) -> anyhow::Result<ExitCode> {
    let scene = app.scene(name)?;
    let cast = scene.cast(&app.config().characters_dir(&app.studio.root))?;
    let engine = app.start_backend()?;
    load_adapter_flag(engine.as_ref(), args)?;
    let config = app.config();
    let mut play = SceneConversation::new(
        scene,
        cast,
        config.chat.prompt_variant,
        config.sampling.clone(),
    );
    let lead = play
        .cast
        .first()
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let header = new_header(
        &play.scene.title,
        &lead,
        Some(&play.scene.title),
        &engine.model_info(),
        &config.sampling,
    );
    let mut saving = line_saving(app, args, resumed, &mut play.transcript, header, None);
    line_runtime()?.block_on(run_headless_scene(
        engine.as_ref(),
        &mut play,
        line_options(args),
        &mut saving,
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// A session the line chat continues: where its turns go, and its story so far.
struct LineSession {
    saving: Saving,
    lines: Vec<her_core::prompt::Line>,
}

/// Where a line chat's turns go: on into the resumed session (its story
/// put into `transcript`), nowhere with --no-save, or into a new session
/// with `header`, opened by `greeter`'s greetings.
fn line_saving(
    app: &AppContext,
    args: &ChatArgs,
    resumed: Option<LineSession>,
    transcript: &mut Vec<her_core::prompt::Line>,
    header: her_core::session::SessionHeader,
    greeter: Option<her_core::character::Character>,
) -> Saving {
    match resumed {
        Some(LineSession { saving, lines }) => {
            *transcript = lines;
            saving
        }
        None if args.no_save => Saving::Off,
        None => Saving::New {
            dir: app.config().sessions_dir(&app.studio.root),
            header: Box::new(header),
            greeter: greeter.map(Box::new),
        },
    }
}

/// `--session FILE` for the line chat: the file opened for appending (its
/// lock taken), forked with `--fork`, or only read with `--no-save`.
fn open_line_session(
    app: &AppContext,
    path: &std::path::Path,
    args: &ChatArgs,
) -> anyhow::Result<(LineSession, her_core::session::SessionHeader)> {
    use her_core::session::{SessionError, fork_session, load_session};
    let (saving, session, issues) = if args.no_save {
        let (session, issues) = load_session(path)?;
        (Saving::Off, session, issues)
    } else {
        let opened = if args.fork {
            let dir = app.config().sessions_dir(&app.studio.root);
            fork_session(path, &dir)
        } else {
            her_core::session::SessionFile::open(path)
        };
        let (file, session, issues) = match opened {
            Ok(opened) => opened,
            Err(err @ SessionError::Locked { .. }) => anyhow::bail!(
                "{err}: close it there, add --fork to continue in a copy, or --no-save to chat without saving"
            ),
            Err(SessionError::Io(IoError { cause, .. }))
                if cause.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                anyhow::bail!(
                    "you may not write to '{}' ({cause}): add --fork to continue in a copy, or --no-save to only read it",
                    path.display()
                )
            }
            Err(err) => return Err(err.into()),
        };
        eprintln!("session: {}", file.path().display());
        if let Some(dead) = file.taken_over() {
            eprintln!(
                "note: the session was left open by {}, which has ended; it is yours now",
                her_core::session::Holder::describe(Some(dead))
            );
        }
        let recorder = Recorder::new(file, session.clone());
        (Saving::Open(Box::new(recorder)), session, issues)
    };
    for issue in &issues {
        eprintln!("warning: {}: {issue}", path.display());
    }
    let lines = transcript_of(&session);
    Ok((LineSession { saving, lines }, session.header().clone()))
}

/// Applies `--adapter PATH [--adapter-scale S]` before the first reply.
fn load_adapter_flag(engine: &dyn Backend, args: &ChatArgs) -> anyhow::Result<()> {
    if let Some(adapter) = &args.adapter {
        engine
            .load_adapter(adapter.clone(), args.adapter_scale)
            .wait()
            .with_context(|| format!("loading adapter '{}'", adapter.display()))?;
    }
    Ok(())
}

/// The line-based chat runs on a single-threaded runtime: the engine has its own thread.
fn line_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn line_options(args: &ChatArgs) -> HeadlessOptions {
    HeadlessOptions {
        interactive: !args.headless,
        stats: args.stats,
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Opens the log and puts the config's warnings in it (on stderr when
/// there is no log to put them in).
fn start_logging(app: &AppContext) {
    let config = app.config();
    let started = match config.log_file(&app.studio.root) {
        Some(file) => match logging::init(&file, config.log.level.as_str()) {
            Ok(_) => true,
            Err(err) => {
                eprintln!("warning: {err}; continuing without a log file");
                false
            }
        },
        None => false,
    };
    for warning in &app.loaded.warnings {
        tracing::warn!("{warning}");
        if !started {
            eprintln!("warning: {warning}");
        }
    }
}

/// The lorebooks a line chat with `character` may use (config, the
/// character's, the resumed session's attached ones), loaded once.
fn line_story(app: &AppContext, saving: &Saving, character: &Character) -> LineStory {
    let mut story = app.config().story_config(&app.studio.root);
    story.tokens = app.story_tokens();
    let log = match saving {
        Saving::Open(recorder) => StoryLog::read(recorder.session()).0,
        _ => StoryLog::default(),
    };
    let wanted = wanted_books(&story, &log, [character], &[]);
    let books = Shelf::load(&story.lore_dir, wanted.iter().map(String::as_str));
    LineStory { story, books }
}

fn chat(app: &AppContext, args: &ChatArgs) -> anyhow::Result<ExitCode> {
    if let Some(scene) = &args.scene {
        return chat_scene(app, args, scene, None);
    }
    // The session first: a wrong --session fails before the model loads.
    let resumed = match &args.session {
        Some(path) => Some(open_line_session(app, path, args)?),
        None => None,
    };
    let (resumed, character_name) = match resumed {
        Some((line_session, header)) => {
            if let Some(title) = &header.scene {
                let stem = app.scene_titled(title).ok_or_else(|| {
                    anyhow::anyhow!(
                        "the session plays the scene '{title}', which is not in '{}'",
                        app.scenes_dir().display()
                    )
                })?;
                return chat_scene(app, args, &stem, Some(line_session));
            }
            let name = header
                .character
                .ok_or_else(|| anyhow::anyhow!("the session names no character"))?;
            (Some(line_session), Some(name))
        }
        None => (None, args.character.clone()),
    };
    let character = app.character(character_name.as_deref())?;
    let engine = app.start_backend()?;
    load_adapter_flag(engine.as_ref(), args)?;
    commands::eval::load_promoted(app, engine.as_ref(), args)?;
    let config = app.config();
    let user_name = character.user_name(&config.chat.user_name).to_string();
    let mut conversation = Conversation::new(
        character.clone(),
        user_name,
        config.chat.prompt_variant,
        config.sampling.clone(),
    );
    let header = new_header(
        &character.name,
        &character.name,
        None,
        &engine.model_info(),
        &config.sampling,
    );
    let mut saving = line_saving(
        app,
        args,
        resumed,
        &mut conversation.transcript,
        header,
        Some(character.clone()),
    );
    let story = line_story(app, &saving, &character);
    line_runtime()?.block_on(run_headless(
        engine.as_ref(),
        &mut conversation,
        Some(&story),
        line_options(args),
        &mut saving,
    ))?;
    Ok(ExitCode::SUCCESS)
}
