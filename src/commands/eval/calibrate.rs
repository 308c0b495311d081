//! `her eval calibrate`: how well the judge agrees with human verdicts.

use super::*;

/// `her eval calibrate`: judges every pair of the calibration set, stores
/// the result under the judge's fingerprint and prints it. Exits with 3
/// when the judge failed.
pub(super) fn run_calibration(app: &AppContext, args: &CalibrateArgs) -> anyhow::Result<ExitCode> {
    let config = app.config();
    let calibration_set = match &args.calibration_set {
        Some(dir) => set::from_dir(dir)?,
        None => {
            let shipped = app.studio.root.join(set::SET_DIR);
            if shipped.is_dir() {
                set::from_dir(&shipped)?
            } else {
                set::built_in()?
            }
        }
    };
    let model_path = app.model_path();
    let judge_model = judge_model_path(app, args.judge_model.as_deref());
    let (judge_engine, judge) = start_judge(
        app,
        judge_model.as_deref(),
        args.judge_n_ctx,
        &model_path,
        || {
            her_engine::local::check_model_file(&model_path)?;
            file_id(&model_path)
        },
    )?;
    let actor_engine;
    let backend: &dyn Backend = match &judge_engine {
        Some(engine) => engine.as_ref(),
        None => {
            eprintln!("loading {} as the judge …", model_path.display());
            actor_engine = app.start_engine()?;
            &actor_engine
        }
    };
    let sampling = judge_sampling(&config.sampling, true);
    let identity = JudgeIdentity::new(judge, &sampling, true);
    let pairs: usize = calibration_set.pairs_per_dimension().iter().sum();
    eprintln!(
        "calibrating the judge on {pairs} pairs in {} scenes from {} …",
        calibration_set.scenes.len(),
        calibration_set.source
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let calibration = runtime.block_on(calibrate(
        backend,
        &calibration_set,
        identity,
        &sampling,
        &mut |p| {
            eprintln!(
                "  {} {} ({}): clean {} · flawed {} → {}",
                p.scene,
                p.kind.key(),
                p.dimension.key(),
                p.clean_severity,
                p.flawed_severity,
                if p.flawed_lower {
                    "scored lower"
                } else {
                    "missed"
                }
            )
        },
    ))?;
    let evals = config.evals_dir(&app.studio.root);
    let path = write_calibration(&evals, &calibration)?;
    let status = calibration.status(config.eval.calibration_thresholds(), Some(path.clone()));
    println!("{}", render_calibration(&calibration, &status));
    println!("saved: {}", path.display());
    if status.passed() {
        println!("the gate now trusts this judge (same model file, prompt and settings)");
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{}: the gate will refuse on its word; {ADVICE}",
            status.problem()
        );
        Ok(ExitCode::from(3))
    }
}
