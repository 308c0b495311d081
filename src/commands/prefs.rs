//! `her export prefs`, `her prefs summary|leaderboard|agreement`: gather the
//! studio's preference records, filter them, and write or report.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::app::AppContext;
use crate::cli::{
    AgreementArgs, ExportPrefsArgs, LeaderboardArgs, PrefsFilterArgs, PrefsMergeArgs,
};
use her_core::prefs::agreement_report::{AgreementOptions, agreement_report};
use her_core::prefs::leaderboard::LeaderboardOptions;
use her_core::prefs::sessions::SessionPlayers;
use her_core::prefs::store::{Gathered, Sources, gather};
use her_core::prefs::{
    Filter, Format, MinHealth, PreferenceRecord, ThinkingEdits, export, export_all,
};

impl PrefsFilterArgs {
    pub fn to_filter(&self) -> anyhow::Result<Filter> {
        let min_format_health = match self.min_health.as_deref() {
            None => None,
            Some("no-errors" | "no_errors" | "errors") => Some(MinHealth::NoErrors),
            Some("no-warnings" | "no_warnings" | "warnings") => Some(MinHealth::NoWarnings),
            Some(other) => bail!("--min-health '{other}': expected no-errors or no-warnings"),
        };
        let filter = Filter {
            characters: self.characters.clone(),
            annotators: self.annotators.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
            min_format_health,
            include_implicit: !self.no_implicit,
            thinking_edits: match self.thinking_edits.as_deref() {
                None | Some("keep") => ThinkingEdits::Keep,
                Some("drop") => ThinkingEdits::Drop,
                Some("only") => ThinkingEdits::Only,
                Some(other) => bail!("--thinking-edits '{other}': expected keep, drop or only"),
            },
        };
        filter.check()?;
        Ok(filter)
    }
}

/// Every record of the studio, and notes on what could not be read.
pub fn gather_studio(app: &AppContext) -> anyhow::Result<Gathered> {
    let config = app.config();
    let root = &app.studio.root;
    let characters = app.all_players();
    let annotator = config.prefs.annotator_id();
    let sources = Sources {
        sessions_dir: &config.sessions_dir(root),
        prefs_dir: &config.prefs_dir(root),
        players: SessionPlayers {
            cast: &characters,
            variant: config.chat.prompt_variant,
            user_name: &config.chat.user_name,
            annotator: &annotator,
        },
    };
    Ok(gather(&sources)?)
}

/// "skipped N lines": damaged lines cost only themselves, and the user
/// learns how many (the notes above name each one).
fn report_skipped(lines: usize) {
    match lines {
        0 => {}
        1 => eprintln!("note: skipped 1 line that could not be read (see above)"),
        n => eprintln!("note: skipped {n} lines that could not be read (see above)"),
    }
}

/// Gathers, reports unreadable sources on stderr, and filters.
pub fn filtered(
    app: &AppContext,
    filter: &PrefsFilterArgs,
) -> anyhow::Result<Vec<PreferenceRecord>> {
    let filter = filter.to_filter()?;
    let gathered = gather_studio(app)?;
    for note in &gathered.notes {
        eprintln!("note: {note}");
    }
    report_skipped(gathered.lines_skipped);
    Ok(filter.apply(gathered.records)?)
}

pub fn export_prefs(app: &AppContext, args: &ExportPrefsArgs) -> anyhow::Result<()> {
    let records = filtered(app, &args.filter)?;
    let reports = if args.format == "all" {
        let dir = args
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("prefs-export"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        export_all(&records, &dir)?
            .into_iter()
            .map(|(format, report)| (dir.join(format.file_name()), report))
            .collect::<Vec<_>>()
    } else {
        let format: Format = args.format.parse()?;
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("prefs-{}.jsonl", format.name())));
        vec![(out.clone(), export(&records, format, &out)?)]
    };
    println!("{} records after filters", records.len());
    for (path, report) in reports {
        let skipped: Vec<String> = report
            .skip_counts()
            .into_iter()
            .map(|(why, n)| format!("{n} {why}"))
            .collect();
        let skipped = if skipped.is_empty() {
            String::new()
        } else {
            format!(" (left out: {})", skipped.join(", "))
        };
        println!(
            "wrote {} lines to {}{skipped}",
            report.written,
            path.display()
        );
    }
    Ok(())
}

pub fn summary(app: &AppContext, filter: &PrefsFilterArgs) -> anyhow::Result<()> {
    let records = filtered(app, filter)?;
    let mut by: BTreeMap<(String, String, &str), (usize, usize)> = BTreeMap::new();
    for r in &records {
        let source = if r.implicit() { "implicit" } else { "explicit" };
        let entry = by
            .entry((r.character().to_string(), r.annotator().to_string(), source))
            .or_default();
        match r {
            PreferenceRecord::Pair(_) => entry.0 += 1,
            PreferenceRecord::Rating(_) => entry.1 += 1,
        }
    }
    println!(
        "{:<24} {:<20} {:<9} {:>6} {:>8}",
        "character", "annotator", "source", "pairs", "ratings"
    );
    for ((character, annotator, source), (pairs, ratings)) in &by {
        println!("{character:<24} {annotator:<20} {source:<9} {pairs:>6} {ratings:>8}");
    }
    let pairs = records
        .iter()
        .filter(|r| matches!(r, PreferenceRecord::Pair(_)))
        .count();
    println!("total: {pairs} pairs, {} ratings", records.len() - pairs);
    Ok(())
}

/// `her prefs leaderboard`: who wrote the better candidates.
pub fn leaderboard(app: &AppContext, args: &LeaderboardArgs) -> anyhow::Result<()> {
    let records = filtered(app, &args.filter)?;
    let options = LeaderboardOptions {
        labels: adapter_names(&records),
        resamples: args.resamples.max(1),
        ..LeaderboardOptions::default()
    };
    let board = her_core::prefs::leaderboard::leaderboard(&records, &options)?;
    print!("{}", board.render_text());
    Ok(())
}

/// Adapter sha256 → "file.gguf (sha 12 digits)", from the provenance the
/// chat recorded, so the leaderboard names adapters the way users do.
fn adapter_names(records: &[PreferenceRecord]) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for record in records {
        let PreferenceRecord::Pair(p) = record else {
            continue;
        };
        for prov in [&p.cand_1_provenance, &p.cand_2_provenance]
            .into_iter()
            .flatten()
        {
            if let (Some(sha), Some(name)) = (&prov.adapter_sha256, &prov.adapter_name) {
                let short: String = sha.chars().take(12).collect();
                names.insert(sha.clone(), format!("{name} ({short})"));
            }
        }
    }
    names
}

/// `her prefs agreement`: Cohen's kappa and Krippendorff's alpha.
pub fn agreement(app: &AppContext, args: &AgreementArgs) -> anyhow::Result<()> {
    let records = filtered(app, &args.filter)?;
    let options = AgreementOptions {
        include_judges: args.include_judges,
        include_implicit: !args.filter.no_implicit,
    };
    print!("{}", agreement_report(&records, &options).render_text());
    Ok(())
}

/// `her prefs merge SOURCE…`: new records from other machines, appended.
pub fn merge(app: &AppContext, args: &PrefsMergeArgs) -> anyhow::Result<()> {
    let prefs_dir = app.config().prefs_dir(&app.studio.root);
    let report = her_core::prefs::merge::merge(&prefs_dir, &args.sources, args.dry_run)?;
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    report_skipped(report.lines_skipped);
    let verb = if args.dry_run { "would add" } else { "added" };
    for (annotator, n) in &report.added {
        println!("{annotator}: {verb} {n} records");
    }
    println!(
        "{} records read from {} files: {} already here, {} {verb}",
        report.records_read,
        report.files_read,
        report.already_present,
        report.added_total()
    );
    for path in &report.written {
        println!("appended to {}", path.display());
    }
    Ok(())
}
