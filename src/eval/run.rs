//! One evaluation from start to end: each system (the base model and each
//! adapter) plays every scene with every seed, each transcript is saved as a
//! session and judged, and the results are summarised and written.

use std::path::{Path, PathBuf};

use super::EvalError;
use super::judge::{JudgeAnswer, JudgeCase, answer_grammar, judge_prompt, parse_answer};
use super::results::{
    EvalResults, EvalSettings, FileId, RESULTS_FORMAT, SceneRecord, SceneRef, SystemResult,
    UnitResult, write_results,
};
use super::scenes::EvalScene;
use super::score::SceneScores;
use super::simulate::{SimOptions, SimTranscript, simulate};
use super::transcript::{TranscriptInfo, save_transcript};
use crate::config::SamplingConfig;
use crate::engine::{Backend, GenerateRequest};

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
    let mut request = GenerateRequest::new(judge_prompt(&case), sampling.clone());
    if grammar {
        request.grammar = Some(answer_grammar());
    }
    let outcome = crate::chat::stream_reply(judge, request, |_| {}).await?;
    parse_answer(&outcome.reply).map_err(|cause| EvalError::Unreadable {
        scene: scene.id.clone(),
        finish: outcome.finished.reason.to_string(),
        cause,
    })
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
            let unit = UnitResult::new(
                scene.id.clone(),
                seed,
                transcript.actor_turns(),
                &answer,
                session,
            );
            on_progress(Progress::Judged {
                system: &spec.label,
                scene: &scene.id,
                seed,
                scores: &unit.scores,
            });
            records.push(SceneRecord {
                system: spec.label.clone(),
                unit: unit.clone(),
                answer,
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
        created_at: crate::session::now_rfc3339(),
        model: plan.model.clone(),
        judge: plan.judge.clone(),
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
    use crate::eval::simulate::NextSpeakerMode;
    use crate::eval::testing::{ScriptedBackend, tea_scene};

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
                sampling: crate::config::Config::default().sampling,
                variant: crate::prompt::PromptVariant::Evaluation,
            },
            judge_sampling: judge_sampling(&crate::config::Config::default().sampling, true),
            judge_grammar: true,
            resamples: 200,
            bootstrap_seed: 1,
            model: file("m.gguf"),
            judge: file("j.gguf"),
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
                let want = crate::eval::score::dimension_score(2, unit.actor_turns);
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
        assert_eq!(
            crate::eval::results::read_results(&plan.dir).unwrap(),
            results
        );
        assert_eq!(
            crate::session::list_sessions(&dir.path().join("sessions"))
                .unwrap()
                .len(),
            4
        );
    }
}
