//! `her prompt`: the exact text the model would receive, with token counts
//! per section (the same view the TUI's `/prompt` shows).

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, anyhow};

use crate::app::AppContext;
use crate::cli::PromptArgs;
use crate::config::PromptVariant;
use her_core::prompt::{HerPrompt, Line, PromptOptions};
use her_core::session::load_session;
use her_core::story::{Shelf, StoryInput, StoryLog, explain, prepare, session_seed, wanted_books};
use her_engine::local::Vocab;

pub fn run(app: &AppContext, args: &PromptArgs) -> anyhow::Result<()> {
    let saved = match &args.session {
        Some(path) => Some(
            load_session(path)
                .with_context(|| format!("reading session '{}'", path.display()))?
                .0,
        ),
        None => None,
    };
    let character_name = saved
        .as_ref()
        .and_then(|s| s.header().character.clone())
        .or_else(|| args.character.clone());
    let character = app.character(character_name.as_deref())?;
    let config = app.config();
    let user_name = character.user_name(&config.chat.user_name).to_string();
    let variant = match args.variant.as_deref() {
        None => config.chat.prompt_variant,
        Some("training") => PromptVariant::Training,
        Some("evaluation") => PromptVariant::Evaluation,
        Some(other) => {
            return Err(anyhow!(
                "--variant '{other}': expected 'training' or 'evaluation'"
            ));
        }
    };
    let mut transcript = Vec::new();
    let mut path = Vec::new();
    if let Some(session) = &saved {
        let tree = session.tree();
        for node in tree
            .active_path()
            .into_iter()
            .filter_map(|id| tree.node(id))
        {
            transcript.push(Line::new(
                node.message.speaker.clone(),
                node.message.text.clone(),
            ));
            path.push(node.key.clone());
        }
    } else {
        if let Some(greeting) = character.greetings.first() {
            transcript.push(Line::new(character.name.clone(), greeting.clone()));
        }
        if args.lines.is_empty() {
            transcript.push(Line::new(user_name.clone(), "Hello."));
        }
    }
    for line in &args.lines {
        let (speaker, text) = line
            .split_once(": ")
            .ok_or_else(|| anyhow!("--line '{line}': expected 'Speaker: text'"))?;
        transcript.push(Line::new(speaker.trim(), text));
        path.push(format!("line-{}", path.len()));
    }
    // Lore, memory and note exactly as the TUI adds them for this branch.
    let (mut log, warnings) = saved
        .as_ref()
        .map_or_else(|| (StoryLog::default(), Vec::new()), StoryLog::read);
    for w in &warnings {
        eprintln!("warning: session {w}");
    }
    log.attached.extend(args.lore.iter().cloned());
    // One read of the vocabulary: the lore budget and the section counts.
    let vocab = Arc::new(
        Vocab::load(&app.model_path())
            .with_context(|| "counting tokens needs the model's vocabulary".to_string())?,
    );
    let mut story = config.story_config(&app.studio.root);
    story.tokens = app.story_tokens_with(vocab.clone());
    let seed = saved.as_ref().map_or(0, |s| session_seed(s.id()));
    let wanted = wanted_books(&story, &log, [&character], &[]);
    let books = Shelf::load(&story.lore_dir, wanted.iter().map(String::as_str));
    let prepared = prepare(
        &story,
        &log,
        &books,
        &StoryInput {
            character: &character,
            scene_lore: &[],
            user_name: &user_name,
            transcript: &transcript,
            path: &path,
            seed,
        },
    );
    let prompt = HerPrompt::build_with(
        &character,
        &PromptOptions::new(variant, user_name.clone()),
        &transcript,
        &prepared.additions,
    );
    let parts = prompt.parts(0);
    let mut out = std::io::stdout().lock();
    if !args.counts_only {
        for part in &parts {
            write!(out, "{}", part.text)?;
        }
        writeln!(out, "\n")?;
    }
    let full: String = parts.iter().map(|p| p.text.as_str()).collect();
    writeln!(out, "{:<48} {:>7}", "section", "tokens")?;
    for part in &parts {
        writeln!(out, "{:<48} {:>7}", part.label, vocab.count(&part.text))?;
    }
    writeln!(
        out,
        "{:<48} {:>7}  (tokenized whole; n_ctx = {})",
        "total",
        vocab.count(&full),
        config.model.n_ctx
    )?;
    writeln!(out, "\nlore, memory and note:")?;
    for line in explain(&prepared).lines() {
        writeln!(out, "  {line}")?;
    }
    if let Some(scan) = &prepared.scan {
        for a in &scan.activated {
            writeln!(
                out,
                "  {:<46} {:>7}",
                format!("entry {}#{} ({})", a.book, a.uid, a.placement),
                vocab.count(&a.content)
            )?;
        }
    }
    Ok(())
}
