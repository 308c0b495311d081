//! Playing a scene for evaluation: every character (and the Environment
//! narrator, when the scene has one and it is wanted) is played by the model
//! under test through [`SceneConversation`], so each actor gets its own
//! prompt and sees the others' speech and actions but never their plans or
//! inner thoughts. Who speaks next is asked of the model under a grammar, or
//! drawn at random with a seed.

use serde::{Deserialize, Serialize};

use super::scenes::EvalScene;
use her_core::character::{ENVIRONMENT, NextSpeaker};
use her_core::generation::SamplingConfig;
use her_core::prompt::PromptVariant;
use her_core::rng::{Rng, SplitMix64};
use her_engine::dialogue::SceneConversation;
use her_engine::{Backend, EngineError, FinishReason, Provenance};

/// How the next speaker is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NextSpeakerMode {
    /// The model under test picks, constrained to the cast's names.
    Model,
    /// Uniformly among the speakers other than the last one, seeded.
    Random,
}

impl NextSpeakerMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NextSpeakerMode::Model => "model",
            NextSpeakerMode::Random => "random",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Turns at most (the Environment's included).
    pub rounds: usize,
    pub next_speaker: NextSpeakerMode,
    /// Keep the Environment narrator of scenes that have one.
    pub environment: bool,
    pub sampling: SamplingConfig,
    pub variant: PromptVariant,
}

/// One generated turn.
#[derive(Debug, Clone, PartialEq)]
pub struct SimTurn {
    pub speaker: String,
    /// The raw reply, plan included.
    pub text: String,
    pub finish_reason: FinishReason,
    pub provenance: Provenance,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimTranscript {
    pub turns: Vec<SimTurn>,
}

impl SimTranscript {
    /// Turns by characters; the narrator's do not count for the score.
    pub fn actor_turns(&self) -> usize {
        self.turns
            .iter()
            .filter(|t| t.speaker != ENVIRONMENT)
            .count()
    }

    /// (speaker, raw text) pairs.
    pub fn lines(&self) -> Vec<(String, String)> {
        self.turns
            .iter()
            .map(|t| (t.speaker.clone(), t.text.clone()))
            .collect()
    }
}

/// The sampler seed of turn `round` of a scene played with `seed`: every
/// turn differs, and the same (seed, round) always gives the same one.
pub fn turn_seed(seed: u32, round: usize) -> u32 {
    let mut mix = SplitMix64::new(u64::from(seed) << 32 | round as u64);
    (mix.next_u64() >> 32) as u32
}

/// A random next speaker: any but the last one when there is a choice.
pub fn random_next(speakers: &[String], last: Option<&str>, rng: &mut Rng) -> Option<String> {
    let choices: Vec<&String> = if speakers.len() > 1 {
        speakers
            .iter()
            .filter(|s| Some(s.as_str()) != last)
            .collect()
    } else {
        speakers.iter().collect()
    };
    choices.get(rng.below(choices.len())).map(|s| (*s).clone())
}

/// The scene as it is played: narrator kept or not, the model directing
/// when asked to.
pub fn play_setup(scene: &EvalScene, options: &SimOptions) -> SceneConversation {
    let mut setup = scene.scene.clone();
    setup.environment = setup.environment && options.environment;
    setup.next_speaker = match options.next_speaker {
        NextSpeakerMode::Model => NextSpeaker::Model,
        NextSpeakerMode::Random => NextSpeaker::RoundRobin,
    };
    SceneConversation::new(
        setup,
        scene.cast.clone(),
        options.variant,
        options.sampling.clone(),
    )
}

/// Plays `scene` for `options.rounds` turns with `seed`.
pub async fn simulate(
    backend: &dyn Backend,
    scene: &EvalScene,
    options: &SimOptions,
    seed: u32,
) -> Result<SimTranscript, EngineError> {
    let mut play = play_setup(scene, options);
    let mut rng = Rng::seed_from_u64(u64::from(seed));
    let mut transcript = SimTranscript::default();
    for round in 0..options.rounds {
        play.sampling.seed = turn_seed(seed, round);
        let speaker = match options.next_speaker {
            NextSpeakerMode::Model => play.choose_next(backend).await?,
            NextSpeakerMode::Random => {
                let last = transcript.turns.last().map(|t| t.speaker.as_str());
                random_next(&play.speakers(), last, &mut rng).ok_or_else(|| {
                    EngineError::InvalidSampling(format!("scene '{}' has no speakers", scene.id))
                })?
            }
        };
        let outcome = play.speak(backend, &speaker, |_| {}).await?;
        tracing::debug!(scene = %scene.id, seed, round, %speaker, "eval turn");
        transcript.turns.push(SimTurn {
            speaker,
            text: outcome.raw(),
            finish_reason: outcome.finished.reason,
            provenance: outcome.finished.provenance.clone(),
        });
    }
    Ok(transcript)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::testing::{ScriptedBackend, tea_scene};
    use her_core::prompt::next_speaker::parse_next_speaker;

    fn options(mode: NextSpeakerMode, rounds: usize) -> SimOptions {
        SimOptions {
            rounds,
            next_speaker: mode,
            environment: true,
            sampling: her_core::generation::SamplingConfig::default(),
            variant: PromptVariant::Evaluation,
        }
    }

    fn run(backend: &ScriptedBackend, mode: NextSpeakerMode, seed: u32) -> SimTranscript {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(simulate(backend, &tea_scene(), &options(mode, 6), seed))
            .unwrap()
    }

    #[test]
    fn actors_never_see_plans_or_the_others_thoughts() {
        let backend = ScriptedBackend::default();
        let t = run(&backend, NextSpeakerMode::Random, 3);
        assert_eq!(t.turns.len(), 6);
        let names = ["Ann", "Bob", ENVIRONMENT];
        let prompts = backend.actor_prompts();
        assert_eq!(prompts.len(), 6);
        let mut heard_someone = false;
        for (who, prompt) in &prompts {
            // Nobody's plan reaches any prompt, the actor's own included.
            assert!(!prompt.contains("PLAN-"), "{who}: {prompt}");
            for other in names.iter().filter(|n| *n != who) {
                assert!(
                    !prompt.contains(&format!("THINK-{other}")),
                    "{who} saw {other}'s thought"
                );
                if prompt.contains(&format!("SAY-{other}")) {
                    heard_someone = true;
                    assert!(
                        prompt.contains(&format!("ACT-{other}")),
                        "actions are visible"
                    );
                }
            }
        }
        assert!(heard_someone);
        // An actor who spoke before remembers its own thoughts (three
        // speakers, no one twice in a row: someone speaks again by turn 3).
        let again = (1..6)
            .find(|&i| t.turns[..i].iter().any(|x| x.speaker == t.turns[i].speaker))
            .expect("a speaker comes back");
        let (who, prompt) = &prompts[again];
        assert_eq!(who, &t.turns[again].speaker);
        assert!(prompt.contains(&format!("THINK-{who}")) && prompt.contains(&format!("SAY-{who}")));
        assert_eq!(
            t.actor_turns(),
            t.turns.iter().filter(|x| x.speaker != ENVIRONMENT).count()
        );
    }

    #[test]
    fn random_speakers_are_seeded_and_never_repeat() {
        let a = run(&ScriptedBackend::default(), NextSpeakerMode::Random, 9);
        let b = run(&ScriptedBackend::default(), NextSpeakerMode::Random, 9);
        let order = |t: &SimTranscript| {
            t.turns
                .iter()
                .map(|x| x.speaker.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(order(&a), order(&b));
        assert!(order(&a).windows(2).all(|w| w[0] != w[1]));
        let seeds: Vec<u32> = a.turns.iter().map(|x| x.provenance.seed).collect();
        assert_eq!(seeds, (0..6).map(|r| turn_seed(9, r)).collect::<Vec<_>>());
    }

    #[test]
    fn the_model_directs_under_a_grammar() {
        let backend = ScriptedBackend::default();
        let t = run(&backend, NextSpeakerMode::Model, 1);
        let grammars = backend.director_grammars();
        assert_eq!(grammars.len(), 6);
        // The scripted director names the first choice offered; the last
        // speaker is never offered again.
        assert!(grammars.iter().all(|g| g.starts_with("root ::= \"")));
        assert!(t.turns.windows(2).all(|w| w[0].speaker != w[1].speaker));
        // The director never sees inner thoughts either.
        assert!(
            backend
                .director_prompts()
                .iter()
                .all(|p| !p.contains("THINK-") && !p.contains("PLAN-"))
        );
    }

    #[test]
    fn without_the_environment_only_characters_speak() {
        let backend = ScriptedBackend::default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut o = options(NextSpeakerMode::Random, 5);
        o.environment = false;
        let t = rt
            .block_on(simulate(&backend, &tea_scene(), &o, 2))
            .unwrap();
        assert_eq!(t.actor_turns(), 5);
    }

    #[test]
    fn next_speaker_answers_parse() {
        let cast: Vec<String> = ["Ann", "Bob", ENVIRONMENT].map(String::from).to_vec();
        assert_eq!(
            parse_next_speaker("Environment", &cast).as_deref(),
            Some(ENVIRONMENT)
        );
        assert_eq!(
            parse_next_speaker("  bob.\n", &cast).as_deref(),
            Some("Bob")
        );
        assert_eq!(
            parse_next_speaker("Next: Ann, then Bob", &cast).as_deref(),
            Some("Ann")
        );
        assert_eq!(parse_next_speaker("", &cast), None);
        let mut rng = Rng::seed_from_u64(1);
        for _ in 0..50 {
            let next = random_next(&cast, Some("Bob"), &mut rng).unwrap();
            assert_ne!(next, "Bob");
        }
        assert_eq!(
            random_next(&cast[..1], Some("Ann"), &mut rng).as_deref(),
            Some("Ann")
        );
        assert_eq!(random_next(&[], None, &mut rng), None);
    }
}
