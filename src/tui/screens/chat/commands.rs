//! Slash commands typed in the composer.

use std::path::PathBuf;

use crate::tui::app::{App, Overlay, Screen};
use crate::tui::effect::{AdapterFor, Effect, Opening};
use crate::tui::update::{cast_name, open_session};

pub const HELP: &str = "/help · /prompt · /clear (new session) · /fork (continue in a copy of this session) · /history (sessions) · /rename TITLE · /character · /model [PATH] · /adapter PATH [scale] | off · /sampling [key=value …] · /preset [NAME] · /arena [seeds|temp T|base|adapter PATH] · /runs (training runs, loss charts; enter loads the adapter) · /evals (evaluations: scores per dimension with intervals) · /export txt|md|st [PATH] · /lore · /note · /memory · /plan [TEXT] · /thought [#N] [TEXT] (rewrite the reply's plan or a thought and regenerate after it)";

pub fn run(app: &mut App, command: &str) -> Vec<Effect> {
    let mut words = command.split_whitespace();
    let name = words.next().unwrap_or_default();
    let args: Vec<&str> = words.collect();
    match name {
        "help" => app.overlay = Some(Overlay::Help { scroll: 0 }),
        "prompt" => return count_prompt(app),
        "clear" => return open_session(app, Opening::New),
        "fork" => match &app.chat {
            Some(chat) => {
                let path = chat.path.clone();
                return open_session(app, Opening::Fork(path));
            }
            None => app.notify("/fork copies the open session: open one first", true),
        },
        "history" => {
            return vec![Effect::OpenCharacter {
                name: cast_name(app),
                then: None,
            }];
        }
        "character" | "characters" => app.screen = Screen::Characters,
        "model" => match args.as_slice() {
            [] => {
                let s = &app.status;
                let text = format!(
                    "model {} · context {}/{} tokens · /model PATH loads another GGUF",
                    s.model, s.context_used, s.n_ctx
                );
                app.notify(text, false);
            }
            // A server's model is chosen where it runs (or by `/adapter` for a vLLM LoRA).
            [_] if !app.backend_local => app.notify(
                "/model loads a local GGUF; with backend.kind = \"openai\" the server chooses the model",
                true,
            ),
            [_] if app.engine_loading => app.notify("a model is loading already", true),
            [path] if app.streaming.is_none() => {
                return vec![Effect::CheckModel(PathBuf::from(path))];
            }
            [_] => app.notify(
                "wait for the reply to finish (or ctrl+c) before switching models",
                true,
            ),
            _ => app.notify("/model PATH", true),
        },
        "rename" => {
            let title = args.join(" ");
            match &mut app.chat {
                Some(chat) if !title.is_empty() => match chat.rename(&title) {
                    Ok(()) => {
                        app.status.session = title;
                        app.notify("session renamed", false);
                    }
                    Err(err) => app.notify(err.to_string(), true),
                },
                _ => app.notify("/rename NEW TITLE", true),
            }
        }
        "adapter" => match args.as_slice() {
            ["off" | "none" | "clear"] => {
                return vec![Effect::ClearAdapter {
                    for_: AdapterFor::Chat,
                }];
            }
            // A LoRA GGUF, or a training run or checkpoint folder: its
            // adapter (exported if needed).
            [path] => {
                app.notify(format!("loading the adapter {path} …"), false);
                return vec![Effect::FindRunAdapter(PathBuf::from(path))];
            }
            [path, scale] => match scale.parse::<f32>() {
                Ok(scale) if scale.is_finite() => {
                    app.notify(format!("loading the adapter {path} …"), false);
                    return vec![Effect::LoadAdapter {
                        path: PathBuf::from(path),
                        scale,
                        for_: AdapterFor::Chat,
                    }];
                }
                _ => app.notify(format!("/adapter: scale '{scale}' is not a number"), true),
            },
            _ => app.notify(
                "/adapter PATH [scale] to load a LoRA GGUF, /adapter off to remove it",
                true,
            ),
        },
        "sampling" => sampling(app, &args),
        "preset" | "presets" => preset(app, &args),
        "arena" => return crate::tui::overlays::arena::update::start(app, &args),
        "evals" | "eval" if args.is_empty() => {
            app.overlay = Some(Overlay::Evals { cursor: 0 });
            return vec![Effect::ListEvals(app.evals_dir.clone())];
        }
        "runs" | "train" if args.is_empty() => {
            app.overlay = Some(Overlay::Runs { cursor: 0 });
            return vec![Effect::ListRuns(app.runs_dir.clone())];
        }
        "export" => return export(app, &args),
        "plan" | "thought" => {
            let rest = command.trim_start().get(name.len()..).unwrap_or_default();
            let layer = if name == "plan" {
                her_core::format::Layer::SystemThinking
            } else {
                her_core::format::Layer::RoleThinking
            };
            return crate::tui::screens::chat::steer::run(app, layer, rest);
        }
        "lore" | "note" | "memory" => {
            let rest = command.trim_start().get(name.len()..).unwrap_or_default();
            return crate::tui::screens::chat::story_commands::run(app, name, rest);
        }
        other => app.notify(format!("unknown command '/{other}'; {HELP}"), true),
    }
    Vec::new()
}

/// `/sampling`: the chain in effect; `/sampling key=value …`: changes
/// this session's sampling (any `[sampling]` key; lists as JSON or
/// comma-separated).
fn sampling(app: &mut App, args: &[&str]) {
    let Some(chat) = &mut app.chat else {
        return;
    };
    if args.is_empty() {
        let text = her_core::sampling_edit::describe_chain(&chat.sampling).join("\n");
        app.overlay = Some(Overlay::Prompt {
            title: "sampling chain (in the order it runs; /sampling key=value, /preset NAME)"
                .into(),
            text,
            scroll: 0,
        });
        return;
    }
    let next = match her_core::sampling_edit::apply_edits(&chat.sampling, args) {
        Ok(next) => next,
        Err(err) => {
            app.notify(format!("/sampling: {err}"), true);
            return;
        }
    };
    if let Err(err) = her_engine::local::sampler::validate(&next) {
        app.notify(format!("/sampling: {err}"), true);
        return;
    }
    chat.sampling = next;
    app.notify(
        "sampling updated for this session (/sampling shows the chain)",
        false,
    );
}

/// `/preset`: the presets there are; `/preset NAME`: its keys over this
/// session's sampling.
fn preset(app: &mut App, args: &[&str]) {
    let names: Vec<&str> = app.presets.iter().map(|p| p.name.as_str()).collect();
    let listing = if names.is_empty() {
        "no presets (put NAME.toml files of [sampling] keys in the studio's presets/)".to_string()
    } else {
        format!("presets: {}", names.join(", "))
    };
    let [name] = args else {
        app.notify(format!("/preset NAME · {listing}"), args.len() > 1);
        return;
    };
    let Some(found) = app.presets.iter().find(|p| p.name == *name) else {
        app.notify(format!("/preset: no preset '{name}' · {listing}"), true);
        return;
    };
    let Some(chat) = &mut app.chat else {
        return;
    };
    let next = her_core::sampling_edit::apply_preset(&chat.sampling, &found.text)
        .map_err(|e| e.to_string())
        .and_then(|next| {
            her_engine::local::sampler::validate(&next)
                .map(|()| next)
                .map_err(|e| e.to_string())
        });
    match next {
        Ok(next) => {
            chat.sampling = next;
            app.notify(
                format!("preset '{name}' in effect for this session (/sampling shows the chain)"),
                false,
            );
        }
        Err(err) => app.notify(format!("/preset {name}: {err}"), true),
    }
}

fn export(app: &mut App, args: &[&str]) -> Vec<Effect> {
    let Some(chat) = &app.chat else {
        return Vec::new();
    };
    let format = args.first().copied().unwrap_or("md");
    let path = args.get(1).map(PathBuf::from);
    match chat.export_target(format, path) {
        Ok((format, to)) => vec![Effect::Export {
            session: Box::new(chat.session.clone()),
            format,
            to,
        }],
        Err(err) => {
            app.notify(err, true);
            Vec::new()
        }
    }
}

/// `/prompt`: the next prompt by section; the engine counts the tokens.
fn count_prompt(app: &App) -> Vec<Effect> {
    let Some(chat) = &app.chat else {
        return Vec::new();
    };
    let speaker = chat.character.name.clone();
    let (prompt, prepared) = chat.build_upto(chat.leaf_key().as_deref(), &speaker);
    let preface = format!(
        "lore, memory and note (/lore explains):\n{}\n\ntokens  section\n",
        her_core::story::explain(&prepared)
    );
    vec![Effect::CountTokens {
        preface,
        parts: prompt.parts(chat.dropped_turns),
    }]
}

/// The prompt view once its tokens are counted.
pub fn prompt_counted(
    app: &mut App,
    preface: String,
    parts: &[her_core::prompt::PromptPart],
    counts: &[usize],
) {
    let mut table = preface;
    for (part, n) in parts.iter().zip(counts) {
        table.push_str(&format!("{n:>6}  {}\n", part.label));
    }
    let total: usize = counts.iter().sum();
    table.push_str(&format!(
        "{total:>6}  total (n_ctx {})\n\n",
        app.status.n_ctx
    ));
    let text: String = parts.iter().map(|p| p.text.as_str()).collect();
    app.overlay = Some(Overlay::Prompt {
        title: "the next prompt, with tokens per section".into(),
        text: format!("{table}{text}"),
        scroll: 0,
    });
}
