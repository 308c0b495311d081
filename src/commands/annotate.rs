//! `her annotate QUEUE.jsonl`: set up from the studio, run the screen, report.

use anyhow::Context;

use crate::annotate::{Sitting, open_sitting};
use crate::app::AppContext;
use crate::cli::AnnotateArgs;
use crate::tui::keymap::Keymap;
use crate::tui::screens::annotate::AnnotateScreen;
use crate::tui::theme::Theme;
use her_core::prefs::store::annotation_log;

pub fn run(app: &AppContext, args: &AnnotateArgs) -> anyhow::Result<()> {
    let config = app.config();
    let annotator = args
        .annotator
        .clone()
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| config.prefs.annotator_id());
    if annotator.starts_with("judge:") {
        anyhow::bail!("annotator ids starting with 'judge:' are reserved for AI judges");
    }
    let log = annotation_log(&config.prefs_dir(&app.studio.root), &args.queue, &annotator);
    let theme = Theme::load(&config.chat.theme, &app.studio.root).map_err(anyhow::Error::msg)?;
    let keymap = Keymap::from_config(&config.keys)
        .map_err(anyhow::Error::msg)
        .context("config [keys]")?;
    let run = open_sitting(&args.queue, &annotator, &log)?;
    let queue_name = args
        .queue
        .file_name()
        .map_or("queue".into(), |n| n.to_string_lossy().into_owned());
    let screen = AnnotateScreen::new(run, queue_name, log.clone(), config.sampling.clone());
    // The model starts only if an item has no candidates and two must be written.
    let start_engine = Box::new(|| app.start_backend().map_err(|e| e.to_string()));
    let (answered, total) = crate::tui::annotate(app, screen, keymap, theme, start_engine)?;
    let sitting = Sitting {
        answered,
        total,
        log,
    };
    println!(
        "{}/{} items answered; answers in {}",
        sitting.answered,
        sitting.total,
        sitting.log.display()
    );
    Ok(())
}
