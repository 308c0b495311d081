//! A scripted backend for unit tests: actors answer with marked plans,
//! thoughts, actions and speech (or, with `degenerate_adapter` and an
//! adapter loaded, all answer as "Ada" with one line); the director names
//! the first speaker it is offered; the judge lists one flaw per dimension,
//! or answers with `judge`. Every prompt is kept.

use std::path::PathBuf;
use std::sync::Mutex;

use super::scenes::EvalScene;
use her_core::character::{Scene, SceneMember};
use her_engine::{
    AdapterInfo, Backend, ChatTemplateFamily, Event, EventStream, FinishReason, Finished,
    GenerateRequest, GenerationStats, ModelInfo, Pending, Provenance, TokenLogprob,
};

/// (kind, speaker or "", prompt, grammar) of one request.
type Entry = (&'static str, String, String, Option<String>);

/// A judge's answer to its prompt.
pub type JudgeFn = Box<dyn Fn(&str) -> String + Send + Sync>;

/// The degenerate adapter: one line, under another name.
pub const ADA_LINE: &str = "Ada: <role_thinking>Always.</role_thinking>Only on Mondays, and on \
every day that ends in y.";

#[derive(Default)]
pub struct ScriptedBackend {
    pub(crate) log: Mutex<Vec<Entry>>,
    /// Severity the judge gives each flaw (default 2).
    pub severity: Option<u8>,
    /// Answers the judge's prompts instead of the fixed flaws.
    pub judge: Option<JudgeFn>,
    /// With an adapter loaded, every actor says [`ADA_LINE`].
    pub degenerate_adapter: bool,
    pub(crate) adapter_loaded: Mutex<bool>,
}

/// A judge that never finds a flaw.
pub fn no_flaws_judge() -> JudgeFn {
    Box::new(|_| {
        "{\"storyline_consistency\": [], \"anthropomorphism\": [], \"character_fidelity\": [], \
         \"storyline_quality\": []}"
            .to_string()
    })
}

impl ScriptedBackend {
    fn entries(&self, kind: &str) -> Vec<(String, String, Option<String>)> {
        self.log
            .lock()
            .map(|log| {
                log.iter()
                    .filter(|e| e.0 == kind)
                    .map(|e| (e.1.clone(), e.2.clone(), e.3.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn actor_prompts(&self) -> Vec<(String, String)> {
        self.entries("actor")
            .into_iter()
            .map(|(who, p, _)| (who, p))
            .collect()
    }

    pub fn director_prompts(&self) -> Vec<String> {
        self.entries("director").into_iter().map(|e| e.1).collect()
    }

    pub fn director_grammars(&self) -> Vec<String> {
        self.entries("director")
            .into_iter()
            .filter_map(|e| e.2)
            .collect()
    }

    pub fn judge_prompts(&self) -> Vec<String> {
        self.entries("judge").into_iter().map(|e| e.1).collect()
    }

    fn answer(&self, request: &GenerateRequest) -> (&'static str, String, String) {
        let prompt = request.prompt.render(0);
        if prompt.contains("Who speaks next?") {
            // `root ::= "A" | "B"`: the first name offered.
            let first = request
                .grammar
                .as_deref()
                .and_then(|g| g.split('"').nth(1))
                .unwrap_or_default()
                .to_string();
            return ("director", String::new(), first);
        }
        if prompt.contains("strict critic of role-play") {
            if let Some(judge) = &self.judge {
                return ("judge", String::new(), judge(&prompt));
            }
            let s = self.severity.unwrap_or(2);
            let one = format!("[{{\"flaw\": \"flat\", \"severity\": {s}}}]");
            let answer = format!(
                "{{\"storyline_consistency\": {one}, \"anthropomorphism\": {one}, \
                 \"character_fidelity\": {one}, \"storyline_quality\": []}}"
            );
            return ("judge", String::new(), answer);
        }
        let name = prompt
            .split("You are ")
            .nth(1)
            .and_then(|rest| rest.split(" from ").next())
            .unwrap_or("?")
            .to_string();
        let degenerate =
            self.degenerate_adapter && self.adapter_loaded.lock().map(|l| *l).unwrap_or(false);
        let reply = if degenerate {
            format!("PLAN-{name}</system_thinking>{ADA_LINE}")
        } else {
            format!(
                "PLAN-{name}</system_thinking>{name}: <role_thinking>THINK-{name}</role_thinking>\
                 <role_action>ACT-{name}</role_action>SAY-{name}"
            )
        };
        ("actor", name, reply)
    }
}

impl Backend for ScriptedBackend {
    fn generate(&self, request: GenerateRequest) -> EventStream {
        let (kind, who, text) = self.answer(&request);
        if let Ok(mut log) = self.log.lock() {
            log.push((kind, who, request.prompt.render(0), request.grammar.clone()));
        }
        let (tx, stream) = EventStream::channel();
        let _ = tx.send(Event::Text(text));
        let _ = tx.send(Event::Finished(Finished {
            choices: Vec::new(),
            reason: FinishReason::EndOfGeneration,
            stop_string: None,
            tokens: Vec::new(),
            stats: GenerationStats::default(),
            provenance: Provenance {
                model: "scripted".into(),
                model_fingerprint: "f".into(),
                adapter: None,
                seed: request.sampling.seed,
                prompt_sha256: String::new(),
                prompt_tokens_sha256: String::new(),
                dropped_turns: 0,
                sampling: None,
                unapplied: Vec::new(),
            },
        }));
        stream
    }

    fn cancel(&self) {}

    fn score(&self, _prompt: String, _completion: String) -> Pending<Vec<TokenLogprob>> {
        Pending::ready(Ok(Vec::new()))
    }

    fn tokenize(&self, text: String) -> Pending<Vec<i32>> {
        Pending::ready(Ok(text.bytes().map(i32::from).collect()))
    }

    fn load_adapter(&self, path: PathBuf, scale: f32) -> Pending<AdapterInfo> {
        if let Ok(mut loaded) = self.adapter_loaded.lock() {
            *loaded = true;
        }
        Pending::ready(Ok(AdapterInfo {
            path,
            scale,
            sha256: "ad".repeat(32),
        }))
    }

    fn clear_adapter(&self) -> Pending<()> {
        if let Ok(mut loaded) = self.adapter_loaded.lock() {
            *loaded = false;
        }
        Pending::ready(Ok(()))
    }

    fn model_info(&self) -> ModelInfo {
        ModelInfo {
            path: "scripted.gguf".into(),
            name: "scripted".into(),
            fingerprint: "f".into(),
            architecture: "none".into(),
            file_type: "none".into(),
            file_size: 0,
            n_params: 0,
            n_layer: 0,
            n_embd: 0,
            n_head: 0,
            n_head_kv: 0,
            n_vocab: 0,
            n_ctx_train: 0,
            n_ctx: 4096,
            chat_template: ChatTemplateFamily::ChatMl,
            devices: Vec::new(),
            n_gpu_layers_requested: 0,
            n_gpu_layers_offloaded: 0,
            flash_attention: false,
            threads: 1,
        }
    }
}

/// Ann and Bob at tea, with a narrator.
pub fn tea_scene() -> EvalScene {
    let member = |name: &str, profile: &str| SceneMember {
        character: None,
        name: Some(name.into()),
        profile: Some(profile.into()),
        motivation: String::new(),
    };
    let scene = Scene {
        title: "Tea".into(),
        book: "A Book".into(),
        scenario: "Tea time at the vicarage.".into(),
        environment: true,
        members: vec![member("Ann", "Kind."), member("Bob", "Gruff.")],
        ..Scene::default()
    };
    let cast = scene
        .cast(std::path::Path::new("/nonexistent"))
        .unwrap_or_default();
    EvalScene {
        id: "tea".into(),
        source: "tea.toml".into(),
        scene,
        cast,
        from_coser: false,
    }
}
