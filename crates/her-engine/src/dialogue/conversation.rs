//! One character, one transcript, one engine: the turn loop shared by front ends.

use crate::{Backend, EngineError, Event, Finished, GenerateRequest, Started};
use her_core::character::Character;
use her_core::format::PREFILL;
use her_core::generation::SamplingConfig;
use her_core::prompt::{Additions, HerPrompt, Line, PromptOptions, PromptVariant};

/// A running conversation with a character.
pub struct Conversation {
    pub character: Character,
    pub user_name: String,
    pub variant: PromptVariant,
    pub sampling: SamplingConfig,
    pub transcript: Vec<Line>,
    /// What a session's lore, memory and note add to the next prompt (set
    /// by the front end before each turn); `None`: only the character's own
    /// card book, with the default settings.
    pub additions: Option<Additions>,
    /// Turns dropped for the last reply; reused so the KV cache stays valid.
    dropped_turns: usize,
}

/// How a turn ended.
#[derive(Debug, Clone)]
pub struct TurnOutcome {
    pub started: Option<Started>,
    pub finished: Finished,
    /// The text the model generated after the prefill.
    pub reply: String,
}

impl Conversation {
    pub fn new(
        character: Character,
        user_name: String,
        variant: PromptVariant,
        sampling: SamplingConfig,
    ) -> Self {
        let sampling = apply_overrides(sampling, &character);
        let mut transcript = Vec::new();
        if let Some(greeting) = character.greetings.first() {
            transcript.push(Line::new(character.name.clone(), greeting.clone()));
        }
        Self {
            character,
            user_name,
            variant,
            sampling,
            transcript,
            additions: None,
            dropped_turns: 0,
        }
    }

    /// The prompt for the next reply.
    pub fn prompt(&self) -> HerPrompt {
        let options = PromptOptions::new(self.variant, self.user_name.clone());
        match &self.additions {
            Some(additions) => {
                HerPrompt::build_with(&self.character, &options, &self.transcript, additions)
            }
            None => HerPrompt::build(&self.character, &options, &self.transcript),
        }
    }

    /// Sends a user line and streams the reply through `on_text`. The reply
    /// joins the transcript when it finished (a cancelled one too: it is what
    /// the user saw).
    pub async fn send(
        &mut self,
        backend: &dyn Backend,
        user_text: &str,
        on_text: impl FnMut(&str),
    ) -> Result<TurnOutcome, EngineError> {
        self.transcript
            .push(Line::new(self.user_name.clone(), user_text));
        let mut request = GenerateRequest::new(self.prompt(), self.sampling.clone());
        request.min_skip = self.dropped_turns;
        match stream_reply(backend, request, on_text).await {
            Ok(outcome) => {
                self.dropped_turns = outcome.started.map_or(0, |s| s.dropped_turns);
                self.transcript
                    .push(Line::new(self.character.name.clone(), outcome.raw()));
                Ok(outcome)
            }
            Err(err) => {
                // The user line stays out of history so a retry does not duplicate it.
                self.transcript.pop();
                Err(err)
            }
        }
    }
}

impl TurnOutcome {
    /// The reply as stored: prefill included, so it parses like any reply.
    pub fn raw(&self) -> String {
        format!("{PREFILL}{}", self.reply)
    }
}

/// Runs one generation to its end, passing text pieces to `on_text`.
pub async fn stream_reply(
    backend: &dyn Backend,
    request: GenerateRequest,
    mut on_text: impl FnMut(&str),
) -> Result<TurnOutcome, EngineError> {
    let mut stream = backend.generate(request);
    let mut reply = String::new();
    let mut started = None;
    while let Some(event) = stream.next().await {
        match event {
            Event::Started(s) => started = Some(s),
            Event::Text(piece) => {
                on_text(&piece);
                reply.push_str(&piece);
            }
            Event::Stats(_) => {}
            Event::Finished(finished) => {
                return Ok(TurnOutcome {
                    started,
                    finished,
                    reply,
                });
            }
            Event::Failed(err) => return Err(err),
        }
    }
    Err(EngineError::EngineStopped)
}

/// A character's own sampling preferences override the config's.
pub fn character_sampling(s: SamplingConfig, character: &Character) -> SamplingConfig {
    apply_overrides(s, character)
}

pub(crate) fn apply_overrides(mut s: SamplingConfig, character: &Character) -> SamplingConfig {
    if let Some(o) = &character.sampling {
        s.temperature = o.temperature.unwrap_or(s.temperature);
        s.top_p = o.top_p.unwrap_or(s.top_p);
        s.top_k = o.top_k.unwrap_or(s.top_k);
        s.min_p = o.min_p.unwrap_or(s.min_p);
        s.repeat_penalty = o.repeat_penalty.unwrap_or(s.repeat_penalty);
        s.max_new_tokens = o.max_new_tokens.unwrap_or(s.max_new_tokens);
    }
    s
}
