//! A scene in play: several AI characters, each prompted with its own view of
//! one shared transcript, and a policy for who speaks next.

use std::collections::HashMap;

use super::conversation::{TurnOutcome, apply_overrides, stream_reply};
use crate::{Backend, EngineError, GenerateRequest};
use her_core::character::{Character, ENVIRONMENT, NextSpeaker, Scene};
use her_core::generation::SamplingConfig;
use her_core::prompt::next_speaker::{
    next_speaker_prompt, parse_next_speaker, round_robin, speaker_grammar,
};
use her_core::prompt::{HerPrompt, Line, PromptOptions, PromptVariant};

/// Transcript lines the director sees when the model picks the next speaker.
const DIRECTOR_CONTEXT_LINES: usize = 8;

pub struct SceneConversation {
    pub scene: Scene,
    /// The AI characters, plus the narrator when the scene has one.
    pub cast: Vec<Character>,
    pub variant: PromptVariant,
    pub sampling: SamplingConfig,
    pub transcript: Vec<Line>,
    /// Turns dropped for each character's last reply (KV-cache friendly).
    dropped: HashMap<String, usize>,
}

impl SceneConversation {
    pub fn new(
        scene: Scene,
        mut cast: Vec<Character>,
        variant: PromptVariant,
        sampling: SamplingConfig,
    ) -> Self {
        if scene.environment {
            let narrator = scene.environment_character(&cast);
            cast.push(narrator);
        }
        Self {
            scene,
            cast,
            variant,
            sampling,
            transcript: Vec::new(),
            dropped: HashMap::new(),
        }
    }

    /// Who may speak: the AI characters and the narrator.
    pub fn speakers(&self) -> Vec<String> {
        self.cast.iter().map(|c| c.name.clone()).collect()
    }

    pub fn user_name(&self) -> Option<&str> {
        self.scene.user.as_ref().map(|p| p.name.as_str())
    }

    /// Adds a line from the user's persona (or a stage direction without one).
    pub fn add_user_line(&mut self, text: &str) {
        let speaker = self.user_name().unwrap_or("Director").to_string();
        self.transcript.push(Line::new(speaker, text));
    }

    /// The next speaker by the scene's policy. With `User` the caller asks
    /// the person; this falls back to round robin.
    pub async fn choose_next(&self, backend: &dyn Backend) -> Result<String, EngineError> {
        let speakers = self.speakers();
        let last = self.transcript.last().map(|l| l.speaker.as_str());
        if self.scene.next_speaker == NextSpeaker::Model {
            // Never the same speaker twice in a row when there is a choice.
            let choices: Vec<String> = if speakers.len() > 1 {
                speakers
                    .iter()
                    .filter(|s| Some(s.as_str()) != last)
                    .cloned()
                    .collect()
            } else {
                speakers.clone()
            };
            let prompt = next_speaker_prompt(
                &self.scene.book,
                &self.scene.scenario,
                &choices,
                &self.transcript,
                DIRECTOR_CONTEXT_LINES,
            );
            let mut sampling = self.sampling.clone();
            sampling.max_new_tokens = 16;
            let mut request = GenerateRequest::new(prompt, sampling);
            request.grammar = Some(speaker_grammar(&choices));
            let outcome = stream_reply(backend, request, |_| {}).await?;
            if let Some(name) = parse_next_speaker(&outcome.reply, &choices) {
                return Ok(name);
            }
            tracing::warn!(answer = %outcome.reply, "next-speaker answer matched no name; using round robin");
        }
        round_robin(&speakers, last)
            .ok_or_else(|| EngineError::InvalidSampling("the scene has no speakers".into()))
    }

    /// Generates `name`'s turn with that character's own prompt and view.
    pub async fn speak(
        &mut self,
        backend: &dyn Backend,
        name: &str,
        on_text: impl FnMut(&str),
    ) -> Result<TurnOutcome, EngineError> {
        let character = self.cast.iter().find(|c| c.name == name).ok_or_else(|| {
            EngineError::InvalidSampling(format!("'{name}' is not in this scene"))
        })?;
        let user = self.user_name().unwrap_or(ENVIRONMENT).to_string();
        let prompt = HerPrompt::build(
            character,
            &PromptOptions::new(self.variant, user),
            &self.transcript,
        );
        let mut request =
            GenerateRequest::new(prompt, apply_overrides(self.sampling.clone(), character));
        request.min_skip = self.dropped.get(name).copied().unwrap_or(0);
        let outcome = stream_reply(backend, request, on_text).await?;
        self.dropped.insert(
            name.to_string(),
            outcome.started.map_or(0, |s| s.dropped_turns),
        );
        self.transcript.push(Line::new(name, outcome.raw()));
        Ok(outcome)
    }
}
