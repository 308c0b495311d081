//! What every command starts from: the studio folder and the layered config.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{self, ConfigError, ConfigSources, LoadedConfig};
use crate::config::{BackendKind, JudgeKind};
use crate::studio::{Studio, StudioOrigin};
use her_core::character::{Character, CharacterError, Scene, load_character_by_name, load_scene};
use her_core::story::{Summarizer, TokenCounter};
use her_engine::local::Vocab;
use her_engine::{Backend, EngineError, LocalEngine, LocalEngineOptions, RemoteEngine};

/// Starts a backend; `Send` so it can run off the TUI's loop.
pub type BackendStarter =
    Box<dyn FnOnce() -> Result<Box<dyn Backend>, EngineError> + Send + 'static>;

pub struct AppContext {
    pub studio: Studio,
    pub origin: StudioOrigin,
    pub loaded: LoadedConfig,
}

impl AppContext {
    /// Locates the studio and loads the config with `overrides` (dotted key,
    /// value) from the command line on top.
    pub fn load(
        studio: Option<&Path>,
        overrides: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        let (studio, origin) = Studio::locate(studio);
        let sources = ConfigSources::from_process(&studio.root);
        let loaded = config::load(&sources, overrides)?;
        let limits = &loaded.config.limits;
        her_core::fsutil::read::set_limits(limits.session_mb, limits.dataset_mb);
        Ok(Self {
            studio,
            origin,
            loaded,
        })
    }

    pub fn config(&self) -> &config::Config {
        &self.loaded.config
    }

    pub fn model_path(&self) -> PathBuf {
        self.config().model_path(&self.studio.root)
    }

    pub fn engine_options(&self) -> LocalEngineOptions {
        self.config().model.engine_options(self.model_path())
    }

    /// Loads the model (blocking).
    pub fn start_engine(&self) -> Result<LocalEngine, EngineError> {
        LocalEngine::start(self.engine_options())
    }

    /// The chat's backend as `[backend] kind` says: the local model, or a
    /// connection to a server (blocking until it answers).
    pub fn start_backend(&self) -> Result<Box<dyn Backend>, EngineError> {
        match self.config().backend.kind {
            BackendKind::Local => Ok(Box::new(self.start_engine()?)),
            BackendKind::Openai => Ok(Box::new(RemoteEngine::start(
                self.config().backend.remote_options(),
            )?)),
        }
    }

    /// How lore and memory budgets count tokens: with the local model's
    /// vocabulary, or the fixed estimate for a remote backend (whose
    /// vocabulary is not here) or a model that cannot be read (logged).
    pub fn story_tokens(&self) -> TokenCounter {
        if self.config().backend.kind == BackendKind::Openai {
            return TokenCounter::estimate();
        }
        match Vocab::load(&self.model_path()) {
            Ok(vocab) => self.story_tokens_with(Arc::new(vocab)),
            Err(err) => {
                tracing::warn!("lore and memory budgets estimate tokens: {err}");
                TokenCounter::estimate()
            }
        }
    }

    /// [`Self::story_tokens`] with the local model's vocabulary already read.
    pub fn story_tokens_with(&self, vocab: Arc<Vocab>) -> TokenCounter {
        match self.config().backend.kind {
            BackendKind::Local => vocab.counter(),
            BackendKind::Openai => TokenCounter::estimate(),
        }
    }

    /// What `start_backend` is about to load or reach, for a "loading …" line.
    pub fn backend_label(&self) -> String {
        match self.config().backend.kind {
            BackendKind::Local => self.model_path().display().to_string(),
            BackendKind::Openai => her_engine::remote::redact(&self.config().backend.base_url),
        }
    }

    /// The backend `her judge` uses (`[judge] kind`).
    pub fn start_judge(&self) -> Result<Box<dyn Backend>, EngineError> {
        match self.judge_starter() {
            Some(start) => start(),
            None => self.start_backend(),
        }
    }

    /// How to start the judge apart from the chat's backend, as work that
    /// can run off the TUI's loop; `None` when `[judge] kind = "actor"`
    /// (the judge is the chat's backend).
    pub fn judge_starter(&self) -> Option<BackendStarter> {
        let config = self.config();
        let judge = &config.judge;
        match judge.kind {
            JudgeKind::Actor => None,
            JudgeKind::Local => {
                let path = if judge.model_path.as_os_str().is_empty() {
                    self.model_path()
                } else {
                    config.resolve_path(&self.studio.root, &judge.model_path)
                };
                let options = config.model.engine_options(path);
                Some(Box::new(move || {
                    Ok(Box::new(LocalEngine::start(options)?) as Box<dyn Backend>)
                }))
            }
            JudgeKind::Openai => {
                let mut options = config.backend.remote_options();
                if !judge.base_url.is_empty() {
                    options.base_url = judge.base_url.clone();
                }
                options.model = judge.model.clone();
                options.api_key_env = judge.api_key_env.clone();
                options.api_key = her_engine::remote::key_from_env(&judge.api_key_env);
                Some(Box::new(move || {
                    Ok(Box::new(RemoteEngine::start(options)?) as Box<dyn Backend>)
                }))
            }
        }
    }

    /// How to start the model that writes the rolling summary apart from
    /// the chat's: the judge, when `memory.summarizer = "judge"` and the
    /// judge is not the chat's backend; `None`: the chat model writes it.
    pub fn summarizer_starter(&self) -> Option<BackendStarter> {
        match self.config().memory.summarizer {
            Summarizer::Chat => None,
            Summarizer::Judge => self.judge_starter(),
        }
    }

    /// The named character, or the configured default.
    pub fn character(&self, name: Option<&str>) -> Result<Character, CharacterError> {
        let dir = self.config().characters_dir(&self.studio.root);
        load_character_by_name(&dir, name.unwrap_or(&self.config().chat.character))
    }

    /// Everyone the studio's sessions can have given a voice: every readable
    /// character file, then scene members and narrators not seen yet.
    /// Unreadable files are skipped (`her characters` reports them).
    pub fn all_players(&self) -> Vec<Character> {
        let dir = self.config().characters_dir(&self.studio.root);
        let mut players: Vec<Character> = her_core::character::list_characters(&dir)
            .map(|list| list.into_iter().filter_map(|(_, c)| c.ok()).collect())
            .unwrap_or_default();
        let scenes = her_core::fsutil::toml_files(&self.scenes_dir()).unwrap_or_default();
        for scene in scenes.iter().filter_map(|p| load_scene(p).ok()) {
            let Ok(mut cast) = scene.cast(&dir) else {
                continue;
            };
            if scene.environment {
                let narrator = scene.environment_character(&cast);
                cast.push(narrator);
            }
            for member in cast {
                if !players.iter().any(|p| p.name == member.name) {
                    players.push(member);
                }
            }
        }
        players
    }

    /// The file stem of the scene with this title (a session names its scene
    /// by title).
    pub fn scene_titled(&self, title: &str) -> Option<String> {
        std::fs::read_dir(self.scenes_dir())
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| her_core::character::load_scene(p).is_ok_and(|s| s.title == title))
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
    }

    /// A scene by file stem in `characters/scenes/`, or a path to one.
    pub fn scene(&self, name: &str) -> Result<Scene, CharacterError> {
        // Whatever is there is read: the reader says what is wrong with it.
        let as_path = Path::new(name);
        if as_path.exists() {
            return load_scene(as_path);
        }
        let path = self.scenes_dir().join(format!("{name}.toml"));
        if !path.exists() {
            return Err(CharacterError::NotFound {
                name: name.to_string(),
                dir: self.scenes_dir(),
            });
        }
        load_scene(&path)
    }

    pub fn scenes_dir(&self) -> PathBuf {
        self.config()
            .characters_dir(&self.studio.root)
            .join("scenes")
    }

    /// Parses `--set key=value` flags.
    pub fn parse_sets(sets: &[String]) -> Result<Vec<(String, String)>, String> {
        sets.iter()
            .map(|s| {
                s.split_once('=')
                    .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                    .ok_or_else(|| {
                        format!(
                            "--set '{s}': expected KEY=VALUE, e.g. --set sampling.temperature=0.3"
                        )
                    })
            })
            .collect()
    }
}
