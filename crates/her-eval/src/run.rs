//! One evaluation from start to end: each system (the base model and each
//! adapter) plays every scene with every seed, each transcript is saved as a
//! session, judged and checked by the rules, and the results are summarised
//! and written.

use std::path::{Path, PathBuf};

use super::EvalError;
use super::calibrate::CalibrationStatus;
use super::judge::{JudgeAnswer, JudgeCase, answer_grammar, judge_prompt, parse_answer};
use super::results::{
    EvalResults, EvalSettings, FileId, RESULTS_FORMAT, SceneRecord, SceneRef, SystemResult,
    TurnRecord, UnitResult, write_results,
};
use super::rules::{RuleFlaw, RuleOptions, RuleScores, RuleTurn, check_transcript};
use super::scenes::EvalScene;
use super::score::SceneScores;
use super::simulate::{SimOptions, SimTranscript, simulate};
use super::transcript::{TranscriptInfo, save_transcript};
use her_core::generation::SamplingConfig;
use her_engine::{Backend, GenerateRequest};

/// The base model (no adapter) or one adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemSpec {
    pub label: String,
    pub adapter: Option<PathBuf>,
}

impl SystemSpec {
    pub fn base() -> Self {
        Self {
            label: "base".into(),
            adapter: None,
        }
    }

    /// An adapter, labelled by its run folder (`runs/NAME/adapter.gguf` →
    /// NAME) or file stem.
    pub fn adapter(path: &Path) -> Self {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let label = match path.parent().and_then(Path::file_name) {
            Some(dir) if stem == "adapter" => dir.to_string_lossy().into_owned(),
            _ => stem,
        };
        Self {
            label,
            adapter: Some(path.to_path_buf()),
        }
    }
}

/// Everything an evaluation needs besides the backends.
#[derive(Debug, Clone)]
pub struct EvalPlan {
    pub name: String,
    /// `evals/NAME/`.
    pub dir: PathBuf,
    /// Where transcripts go as sessions (`None`: not saved).
    pub sessions_dir: Option<PathBuf>,
    pub scenes: Vec<EvalScene>,
    pub systems: Vec<SystemSpec>,
    pub seeds: Vec<u32>,
    pub sim: SimOptions,
    /// The judge's sampler (see [`judge_sampling`]).
    pub judge_sampling: SamplingConfig,
    /// Whether the judge follows the answer grammar (local judges do).
    pub judge_grammar: bool,
    pub resamples: usize,
    pub bootstrap_seed: u64,
    pub model: FileId,
    pub judge: FileId,
    /// The judge's calibration, shown in the report and used by the gate.
    pub judge_calibration: Option<CalibrationStatus>,
    pub rules: RuleOptions,
}

/// What happened, for a progress display.
#[derive(Debug, Clone)]
pub enum Progress<'a> {
    System {
        label: &'a str,
        adapter_sha256: Option<&'a str>,
    },
    Played {
        system: &'a str,
        scene: &'a str,
        seed: u32,
        turns: usize,
        session: Option<&'a Path>,
    },
    Judged {
        system: &'a str,
        scene: &'a str,
        seed: u32,
        scores: &'a SceneScores,
        /// The rules' scores of the same transcript.
        rule_scores: &'a SceneScores,
    },
}

/// The judge's sampler: greedy, room for the longest answer the grammar
/// allows, no stop strings that could cut the JSON.
pub fn judge_sampling(base: &SamplingConfig, grammar: bool) -> SamplingConfig {
    SamplingConfig {
        temperature: 0.0,
        max_new_tokens: if grammar {
            super::judge::max_answer_chars() as u32
        } else {
            base.max_new_tokens.max(4096)
        },
        stop: Vec::new(),
        repeat_penalty: 1.0,
        ..base.clone()
    }
}

/// Judges one transcript.
pub async fn judge_transcript(
    judge: &dyn Backend,
    scene: &EvalScene,
    transcript: &SimTranscript,
    sampling: &SamplingConfig,
    grammar: bool,
) -> Result<JudgeAnswer, EvalError> {
    let characters: Vec<(String, String)> = scene
        .cast
        .iter()
        .map(|c| (c.name.clone(), c.profile.clone()))
        .collect();
    let lines = transcript.lines();
    let case = JudgeCase {
        book: &scene.scene.book,
        scenario: &scene.scene.scenario,
        characters: &characters,
        transcript: &lines,
    };
    judge_case(judge, &case, &scene.id, sampling, grammar).await
}

/// Judges the transcript `case` describes; `scene` names it in errors.
pub async fn judge_case(
    judge: &dyn Backend,
    case: &JudgeCase<'_>,
    scene: &str,
    sampling: &SamplingConfig,
    grammar: bool,
) -> Result<JudgeAnswer, EvalError> {
    let mut request = GenerateRequest::new(judge_prompt(case), sampling.clone());
    if grammar {
        request.grammar = Some(answer_grammar());
    }
    let outcome = her_engine::dialogue::stream_reply(judge, request, |_| {}).await?;
    parse_answer(&outcome.reply).map_err(|cause| EvalError::Unreadable {
        scene: scene.to_string(),
        finish: outcome.finished.reason.to_string(),
        cause,
    })
}

/// The rules' flaws in a played scene.
pub fn rule_flaws(
    scene: &EvalScene,
    transcript: &SimTranscript,
    options: &RuleOptions,
) -> Vec<RuleFlaw> {
    let mut cast: Vec<String> = scene.cast.iter().map(|c| c.name.clone()).collect();
    cast.push(her_core::character::ENVIRONMENT.to_string());
    let turns: Vec<RuleTurn> = transcript
        .turns
        .iter()
        .map(|t| RuleTurn {
            speaker: &t.speaker,
            text: &t.text,
            finish: t.finish_reason,
        })
        .collect();
    check_transcript(&turns, &cast, options)
}

/// Runs `plan`: `actor` plays (adapters are loaded into it in turn), `judge`
/// judges (`None`: the actor's base model judges, with the adapter removed
/// first). Writes `results.json` and the per-scene files into `plan.dir`.
pub async fn run_eval(
    actor: &dyn Backend,
    judge: Option<&dyn Backend>,
    plan: &EvalPlan,
    on_progress: &mut dyn FnMut(Progress<'_>),
) -> Result<(EvalResults, Vec<SceneRecord>), EvalError> {
    let info = actor.model_info();
    let settings = EvalSettings {
        rounds: plan.sim.rounds,
        seeds: plan.seeds.clone(),
        next_speaker: plan.sim.next_speaker.as_str().into(),
        environment: plan.sim.environment,
        max_new_tokens: plan.sim.sampling.max_new_tokens,
        temperature: plan.sim.sampling.temperature,
        resamples: plan.resamples,
        bootstrap_seed: plan.bootstrap_seed,
    };
    let settings_json = serde_json::to_value(&settings)?;
    let mut systems = Vec::new();
    let mut records = Vec::new();
    for spec in &plan.systems {
        let adapter = match &spec.adapter {
            Some(path) => {
                let loaded = actor
                    .load_adapter(path.clone(), 1.0)
                    .await
                    .map_err(|cause| EvalError::Adapter {
                        path: path.clone(),
                        cause,
                    })?;
                Some(FileId {
                    path: path.clone(),
                    sha256: loaded.sha256,
                })
            }
            None => {
                actor.clear_adapter().await?;
                None
            }
        };
        on_progress(Progress::System {
            label: &spec.label,
            adapter_sha256: adapter.as_ref().map(|a| a.sha256.as_str()),
        });
        // Play everything first, so a shared judge model switches adapters once.
        let mut played: Vec<(&EvalScene, u32, SimTranscript, Option<PathBuf>)> = Vec::new();
        for scene in &plan.scenes {
            for &seed in &plan.seeds {
                let transcript = simulate(actor, scene, &plan.sim, seed).await?;
                let session = match &plan.sessions_dir {
                    Some(dir) => {
                        let lead = scene.cast.first().map_or("", |c| c.name.as_str());
                        let transcript_info = TranscriptInfo {
                            eval_name: &plan.name,
                            system: &spec.label,
                            scene_id: &scene.id,
                            scene_title: &scene.scene.title,
                            lead,
                            seed,
                            model: &info.name,
                            model_fingerprint: &info.fingerprint,
                            adapter_sha256: adapter.as_ref().map(|a| a.sha256.as_str()),
                            settings: settings_json.clone(),
                        };
                        Some(save_transcript(dir, &transcript_info, &transcript)?)
                    }
                    None => None,
                };
                on_progress(Progress::Played {
                    system: &spec.label,
                    scene: &scene.id,
                    seed,
                    turns: transcript.turns.len(),
                    session: session.as_deref(),
                });
                played.push((scene, seed, transcript, session));
            }
        }
        let judge_backend = match judge {
            Some(j) => j,
            None => {
                if adapter.is_some() {
                    actor.clear_adapter().await?;
                }
                actor
            }
        };
        let mut units = Vec::new();
        for (scene, seed, transcript, session) in played {
            let answer = judge_transcript(
                judge_backend,
                scene,
                &transcript,
                &plan.judge_sampling,
                plan.judge_grammar,
            )
            .await?;
            let flaws = rule_flaws(scene, &transcript, &plan.rules);
            let rules = RuleScores::new(&flaws, transcript.actor_turns());
            let unit = UnitResult {
                rules: Some(rules),
                ..UnitResult::new(
                    scene.id.clone(),
                    seed,
                    transcript.actor_turns(),
                    &answer,
                    session,
                )
            };
            on_progress(Progress::Judged {
                system: &spec.label,
                scene: &scene.id,
                seed,
                scores: &unit.scores,
                rule_scores: &rules.scores,
            });
            records.push(SceneRecord {
                system: spec.label.clone(),
                unit: unit.clone(),
                answer,
                rule_flaws: flaws,
                turns: transcript
                    .turns
                    .iter()
                    .map(|t| TurnRecord {
                        speaker: t.speaker.clone(),
                        finish_reason: t.finish_reason.to_string(),
                    })
                    .collect(),
            });
            units.push(unit);
        }
        systems.push(SystemResult::new(
            spec.label.clone(),
            adapter,
            units,
            plan.resamples,
            plan.bootstrap_seed,
        )?);
    }
    actor.clear_adapter().await?;
    let results = EvalResults {
        format: RESULTS_FORMAT,
        name: plan.name.clone(),
        created_at: her_core::session::now_rfc3339(),
        model: plan.model.clone(),
        judge: plan.judge.clone(),
        judge_calibration: plan.judge_calibration.clone(),
        settings,
        scenes: plan
            .scenes
            .iter()
            .map(|s| SceneRef {
                id: s.id.clone(),
                title: s.scene.title.clone(),
                source: s.source.clone(),
            })
            .collect(),
        systems,
    };
    write_results(&plan.dir, &results, &records)?;
    let svg = super::svg::chart_svg(&results);
    super::results::write(&plan.dir.join(super::CHART_FILE), svg.as_bytes())?;
    let report = super::report::report_table(&results);
    super::results::write(&plan.dir.join(super::REPORT_FILE), report.as_bytes())?;
    tracing::info!(eval = %plan.name, dir = %plan.dir.display(), "evaluation written");
    Ok((results, records))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::simulate::NextSpeakerMode;
    use crate::testing::{ScriptedBackend, tea_scene};

    fn plan(dir: &Path) -> EvalPlan {
        let file = |p: &str| FileId {
            path: p.into(),
            sha256: "0".repeat(64),
        };
        EvalPlan {
            name: "unit".into(),
            dir: dir.join("evals/unit"),
            sessions_dir: Some(dir.join("sessions")),
            scenes: vec![tea_scene()],
            systems: vec![
                SystemSpec::base(),
                SystemSpec::adapter(Path::new("runs/lizzy/adapter.gguf")),
            ],
            seeds: vec![1, 2],
            sim: SimOptions {
                rounds: 4,
                next_speaker: NextSpeakerMode::Random,
                environment: true,
                sampling: her_core::generation::SamplingConfig::default(),
                variant: her_core::prompt::PromptVariant::Evaluation,
            },
            judge_sampling: judge_sampling(&her_core::generation::SamplingConfig::default(), true),
            judge_grammar: true,
            resamples: 200,
            bootstrap_seed: 1,
            model: file("m.gguf"),
            judge: file("j.gguf"),
            judge_calibration: None,
            rules: RuleOptions::default(),
        }
    }

    #[test]
    fn a_scripted_evaluation_end_to_end() {
        let dir = tempfile::tempdir().unwrap();
        let backend = ScriptedBackend::default();
        let plan = plan(dir.path());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut events = 0;
        let (results, records) = rt
            .block_on(run_eval(&backend, None, &plan, &mut |_| events += 1))
            .unwrap();
        // 2 systems × (1 + 2 played + 2 judged).
        assert_eq!(events, 10);
        assert_eq!(results.systems.len(), 2);
        assert_eq!(results.systems[1].label, "lizzy");
        assert_eq!(records.len(), 4);
        for system in &results.systems {
            assert_eq!(system.units.len(), 2);
            for unit in &system.units {
                // Severity 2 on three dimensions, none on the fourth.
                assert_eq!(unit.severity, [2, 2, 2, 0]);
                let want = crate::score::dimension_score(2, unit.actor_turns);
                assert!((unit.scores.dimensions[0] - want).abs() < 1e-9);
                assert!(unit.session.as_ref().unwrap().is_file());
            }
        }
        // Judge prompts hold no plans, but the thoughts.
        let prompts = backend.judge_prompts();
        assert_eq!(prompts.len(), 4);
        assert!(
            prompts
                .iter()
                .all(|p| !p.contains("PLAN-") && p.contains("THINK-"))
        );
        for f in [
            "results.json",
            "chart.svg",
            "report.txt",
            "scenes/tea.jsonl",
        ] {
            assert!(plan.dir.join(f).is_file(), "{f}");
        }
        assert_eq!(crate::results::read_results(&plan.dir).unwrap(), results);
        assert_eq!(
            her_core::session::list_sessions(&dir.path().join("sessions"))
                .unwrap()
                .len(),
            4
        );
    }

    /// The scenario in miniature: an adapter whose every reply is
    /// one line under another name, and a judge that finds no flaws in
    /// anything. The judge scores both systems 100; the gate refuses twice
    /// over — the judge failed calibration, and the rules' scores fell.
    #[test]
    fn a_degenerate_adapter_under_a_judge_that_finds_nothing_is_refused() {
        use crate::calibrate::{
            CalibrationState, CalibrationStatus, JudgeIdentity, calibrate, set,
        };
        use crate::rules::Rule;
        use crate::score::Dimension;
        use crate::testing::no_flaws_judge;

        let dir = tempfile::tempdir().unwrap();
        let backend = ScriptedBackend {
            judge: Some(no_flaws_judge()),
            degenerate_adapter: true,
            ..ScriptedBackend::default()
        };
        let mut plan = plan(dir.path());
        plan.seeds = vec![1, 2, 3];
        plan.systems[1] = SystemSpec::adapter(Path::new("runs/ada/adapter.gguf"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // The same judge on the calibration set first.
        let identity = JudgeIdentity::new(plan.judge.clone(), &plan.judge_sampling, true);
        let calibration = rt
            .block_on(calibrate(
                &backend,
                &set::built_in().unwrap(),
                identity,
                &plan.judge_sampling,
                &mut |_| {},
            ))
            .unwrap();
        let status = calibration.status([0.75; 4], None);
        assert_eq!(status.state, CalibrationState::Failed);
        plan.judge_calibration = Some(status.clone());

        let (results, records) = rt
            .block_on(run_eval(&backend, None, &plan, &mut |_| {}))
            .unwrap();
        let [base, ada] = results.systems.as_slice() else {
            panic!("two systems")
        };
        // The judge found nothing wrong with either.
        for system in [base, ada] {
            assert!(system.summary.iter().all(|c| c.mean == 100.0), "{system:?}");
        }
        // The rules found Ada speaking in everyone's turn.
        for record in records.iter().filter(|r| r.system == "ada") {
            assert_eq!(record.turns.len(), 4);
            for turn in 0..4 {
                assert!(
                    record.rule_flaws.iter().any(|f| f.turn == turn
                        && f.rule == Rule::WrongSpeaker
                        && f.dimension == Dimension::CharacterFidelity
                        && f.severity == 4),
                    "{:?}",
                    record.rule_flaws
                );
            }
        }
        let fidelity = |s: &SystemResult| s.rule_summary[2].mean;
        assert_eq!(fidelity(base), 100.0);
        assert!(fidelity(ada) < 50.0, "{}", fidelity(ada));

        let d = crate::decide(base, ada, results.judge_calibration.as_ref(), 500, 1).unwrap();
        assert!(!d.promote);
        assert!(d.checks.iter().all(|c| !c.regressed), "{d:?}");
        assert_eq!(d.refusals.len(), 2, "{:?}", d.refusals);
        assert!(
            d.refusals[0].contains("failed calibration"),
            "{}",
            d.refusals[0]
        );
        assert!(
            d.refusals[1].contains("character_fidelity"),
            "{}",
            d.refusals[1]
        );
        // The report says the judge is not to be trusted.
        let report = std::fs::read_to_string(plan.dir.join("report.txt")).unwrap();
        assert!(report.contains("judge calibration: FAILED"), "{report}");
        // Even a judge that had passed could not promote it: the rules refuse.
        let trusted = CalibrationStatus {
            state: CalibrationState::Passed,
            ..status
        };
        let d = crate::decide(base, ada, Some(&trusted), 500, 1).unwrap();
        assert!(!d.promote && d.refusals.len() == 1, "{:?}", d.refusals);
    }
}
