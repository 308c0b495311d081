//! The gate: decide whether a candidate adapter beats the baseline, log
//! the decision and promote it for chat; and loading what was promoted.

use super::*;

/// Decides, logs (terminal, `gate.json`, `adapters/gate-log.jsonl`) and
/// promotes. Returns whether the candidate was promoted.
pub(super) fn gate(
    app: &AppContext,
    results: &EvalResults,
    dir: &Path,
    character: &Character,
) -> anyhow::Result<bool> {
    let [baseline, candidate] = results.systems.as_slice() else {
        bail!("a gate compares exactly two systems, baseline and candidate");
    };
    let s = &results.settings;
    let decision = decide(
        baseline,
        candidate,
        results.judge_calibration.as_ref(),
        s.resamples,
        s.bootstrap_seed,
    )?;
    println!("\n{}", render_decision(&decision));
    let json = serde_json::to_string_pretty(&decision)?;
    her_core::fsutil::write_atomic(&dir.join(GATE_FILE), format!("{json}\n").as_bytes(), true)
        .with_context(|| format!("writing '{}'", dir.join(GATE_FILE).display()))?;
    let log = gate_log(&app.studio.root);
    append_gate_log(
        &log,
        &GateLogEntry {
            decided_at: her_core::session::now_rfc3339(),
            character: character.name.clone(),
            evaluation: dir.to_path_buf(),
            baseline_adapter: baseline.adapter.as_ref().map(|a| a.path.clone()),
            candidate_adapter: candidate.adapter.as_ref().map(|a| a.path.clone()),
            decision: decision.clone(),
        },
    )?;
    println!(
        "logged in {} and {}",
        dir.join(GATE_FILE).display(),
        log.display()
    );
    if !decision.promote {
        println!(
            "not promoted: {} keeps {}",
            character.name,
            baseline
                .adapter
                .as_ref()
                .map_or("the base model".to_string(), |a| a
                    .path
                    .display()
                    .to_string())
        );
        return Ok(false);
    }
    let Some(adapter) = &candidate.adapter else {
        println!("the candidate is the base model: nothing to promote");
        return Ok(true);
    };
    let file = promoted_file(&app.studio.root);
    promote(
        &file,
        &character.name,
        Promotion {
            adapter: adapter.path.clone(),
            sha256: adapter.sha256.clone(),
            promoted_at: her_core::session::now_rfc3339(),
            evaluation: dir.to_path_buf(),
            replaced: baseline
                .adapter
                .as_ref()
                .map_or("base".to_string(), |a| a.path.display().to_string()),
        },
    )?;
    println!(
        "promoted {} for {} ({}); `her chat --character '{}'` now loads it",
        adapter.path.display(),
        character.name,
        file.display(),
        character.name
    );
    Ok(true)
}

/// Loads the adapter promoted for the chat's character, unless `--adapter`
/// chose one or the chat is a scene or a saved session.
pub fn load_promoted(
    app: &AppContext,
    engine: &dyn Backend,
    args: &ChatArgs,
) -> anyhow::Result<()> {
    if args.adapter.is_some() || args.scene.is_some() || args.session.is_some() || args.from_picker
    {
        return Ok(());
    }
    let Ok(character) = app.character(args.character.as_deref()) else {
        return Ok(());
    };
    let file = promoted_file(&app.studio.root);
    let promotion = match promoted_adapter(&file, &character.name) {
        Ok(Some(p)) => p,
        Ok(None) => return Ok(()),
        Err(err) => {
            eprintln!("warning: {err}; continuing without a promoted adapter");
            return Ok(());
        }
    };
    if !promotion.adapter.is_file() {
        eprintln!(
            "warning: the adapter promoted for {} ('{}', in {}) is gone; continuing without it",
            character.name,
            promotion.adapter.display(),
            file.display()
        );
        return Ok(());
    }
    engine
        .load_adapter(promotion.adapter.clone(), args.adapter_scale)
        .wait()
        .with_context(|| {
            format!(
                "loading the promoted adapter '{}'",
                promotion.adapter.display()
            )
        })?;
    eprintln!(
        "using the adapter promoted for {}: {} (--adapter overrides)",
        character.name,
        promotion.adapter.display()
    );
    Ok(())
}
