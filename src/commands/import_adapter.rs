//! `her import adapter PEFT_DIR`: convert, then say what was written and
//! how to load it.

use std::path::PathBuf;

use crate::app::AppContext;
use crate::cli::ImportAdapterArgs;
use her_eval::promote::ADAPTERS_DIR;
use her_train::peft::import::import_peft;

pub fn run(app: &AppContext, args: &ImportAdapterArgs) -> anyhow::Result<()> {
    let model = args.model.clone().unwrap_or_else(|| app.model_path());
    let out = match &args.out {
        Some(out) => out.clone(),
        None => default_out(app, &args.dir)?,
    };
    let report = import_peft(&args.dir, &model, &out, args.force)?;
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    let targets: Vec<&str> = report.targets.iter().map(|t| t.short_name()).collect();
    println!(
        "wrote {}: {} LoRA pairs ({} layers × {}), r {}, alpha {}{}",
        report.out.display(),
        report.pairs,
        report.layers,
        targets.join(", "),
        report.rank,
        report.alpha,
        if report.qk_reordered {
            format!(
                "; q/k rows permuted into llama.cpp's '{}' order",
                report.arch
            )
        } else {
            String::new()
        }
    );
    println!("  in the chat: /adapter {}", report.out.display());
    Ok(())
}

/// `adapters/<folder name>.gguf` in the studio (a run's `peft/` folder is
/// named after its run).
fn default_out(app: &AppContext, dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let name_of = |p: &std::path::Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
    };
    let name = match (name_of(&canonical), canonical.parent().and_then(name_of)) {
        (Some(leaf), Some(run)) if leaf == "peft" => format!("{run}-peft"),
        (Some(leaf), _) => leaf,
        (None, _) => anyhow::bail!("'{}' names no folder: pass --out FILE", dir.display()),
    };
    Ok(app
        .studio
        .root
        .join(ADAPTERS_DIR)
        .join(format!("{name}.gguf")))
}
