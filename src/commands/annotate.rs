//! `her annotate QUEUE.jsonl`: set up from the studio, run the screen, report.

use crate::annotate::{AnnotateSetup, run as run_screen};
use crate::app::AppContext;
use crate::cli::AnnotateArgs;
use crate::prefs::store::annotation_log;

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
    let setup = AnnotateSetup {
        log: annotation_log(&config.prefs_dir(&app.studio.root), &args.queue, &annotator),
        queue: args.queue.clone(),
        annotator,
        theme: crate::tui::theme::Theme::load(&config.chat.theme, &app.studio.root)
            .map_err(anyhow::Error::msg)?,
        sampling: config.sampling.clone(),
    };
    let sitting = run_screen(&setup, || Ok(app.start_backend()?))?;
    println!(
        "{}/{} items answered; answers in {}",
        sitting.answered,
        sitting.total,
        sitting.log.display()
    );
    Ok(())
}
