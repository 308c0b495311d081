//! LoRA adapters on a server. llama-server loads them at start (`--lora`)
//! and applies them per request by id and scale; vLLM serves each LoRA
//! module under its own model name (`--lora-modules NAME=PATH`), so
//! choosing an adapter there means asking for that model.

use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::{Value, json};

use super::http::Http;
use super::probe::{Flavour, ServedModel, ServerAdapter, list_adapters};
use crate::{AdapterInfo, EngineError};

/// What requests carry for the chosen adapter.
#[derive(Debug, Clone, PartialEq)]
pub enum Active {
    Base,
    /// llama-server: this adapter id at this scale, the others at 0.
    Lora {
        id: u64,
        scale: f32,
    },
    /// vLLM and others: the LoRA module's model name.
    Model(String),
}

/// The adapter `path` names on a llama-server: same path, else same file name.
pub fn find_lora<'a>(adapters: &'a [ServerAdapter], path: &Path) -> Option<&'a ServerAdapter> {
    let wanted = path.to_string_lossy();
    let canonical = std::fs::canonicalize(path).ok();
    adapters
        .iter()
        .find(|a| a.path == wanted || canonical.as_deref() == Some(Path::new(&a.path)))
        .or_else(|| {
            adapters
                .iter()
                .find(|a| Path::new(&a.path).file_name() == path.file_name())
        })
}

/// The served LoRA module `path` names: by model name, file stem, or the path it was loaded from.
pub fn find_module<'a>(models: &'a [ServedModel], path: &Path) -> Option<&'a ServedModel> {
    let wanted = path.to_string_lossy();
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    models.iter().filter(|m| m.parent.is_some()).find(|m| {
        m.id == wanted
            || stem.as_deref() == Some(m.id.as_str())
            || m.root.as_deref() == Some(&*wanted)
            || m.root
                .as_deref()
                .is_some_and(|r| Path::new(r).file_name() == path.file_name())
    })
}

/// The per-request `lora` list: every server adapter, the chosen one at its scale.
pub fn lora_field(adapters: &[ServerAdapter], active: &Active) -> Option<Value> {
    if adapters.is_empty() {
        return None;
    }
    let list: Vec<Value> = adapters
        .iter()
        .map(|a| {
            let scale = match active {
                Active::Lora { id, scale } if *id == a.id => f64::from(*scale),
                _ => 0.0,
            };
            json!({"id": a.id, "scale": scale})
        })
        .collect();
    Some(Value::Array(list))
}

/// Resolves and applies an adapter. On llama-server the server-wide scales
/// are set too (`POST /lora-adapters`), so other clients see the same model.
pub async fn load(
    http: &Http,
    flavour: Flavour,
    models: &[ServedModel],
    path: &Path,
    scale: f32,
) -> Result<(Active, AdapterInfo), EngineError> {
    let fail = |reason: String| EngineError::Adapter {
        path: path.to_path_buf(),
        reason,
    };
    let (active, server_path) = match flavour {
        Flavour::LlamaServer => {
            let adapters = list_adapters(http).await?;
            let Some(found) = find_lora(&adapters, path) else {
                let known: Vec<String> = adapters.iter().map(|a| format!("'{}'", a.path)).collect();
                return Err(fail(format!(
                    "llama-server at '{}' was not started with it (start it with --lora {} --lora-init-without-apply); it has: {}",
                    http.base_shown(),
                    path.display(),
                    if known.is_empty() {
                        "no adapters".into()
                    } else {
                        known.join(", ")
                    }
                )));
            };
            let active = Active::Lora {
                id: found.id,
                scale,
            };
            let body = lora_field(&adapters, &active).unwrap_or(Value::Array(Vec::new()));
            http.json(Method::POST, "/lora-adapters", Some(&body))
                .await?;
            (active, PathBuf::from(&found.path))
        }
        Flavour::OpenAi => {
            let Some(module) = find_module(models, path) else {
                let known: Vec<String> = models
                    .iter()
                    .filter(|m| m.parent.is_some())
                    .map(|m| format!("'{}'", m.id))
                    .collect();
                return Err(fail(format!(
                    "the server at '{}' serves no LoRA module by that name (vLLM: --enable-lora --lora-modules NAME=PATH); it serves: {}",
                    http.base_shown(),
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                )));
            };
            if (scale - 1.0).abs() > f32::EPSILON {
                return Err(fail(format!(
                    "this server applies a LoRA module at scale 1 only, not {scale}"
                )));
            }
            (Active::Model(module.id.clone()), PathBuf::from(&module.id))
        }
    };
    // The hash identifies the adapter only when the same file is here too.
    let sha256 = crate::local::sha256_file(path).unwrap_or_default();
    let info = AdapterInfo {
        path: if path.exists() {
            path.to_path_buf()
        } else {
            server_path
        },
        scale,
        sha256,
    };
    Ok((active, info))
}

/// Back to the base model; on llama-server every adapter's scale goes to 0.
pub async fn clear(http: &Http, flavour: Flavour) -> Result<(), EngineError> {
    if flavour == Flavour::LlamaServer {
        let adapters = list_adapters(http).await?;
        if let Some(body) = lora_field(&adapters, &Active::Base) {
            http.json(Method::POST, "/lora-adapters", Some(&body))
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn adapters_are_found_by_path_or_file_name() {
        let adapters = vec![
            ServerAdapter {
                id: 0,
                path: "/srv/a.gguf".into(),
                scale: 0.0,
            },
            ServerAdapter {
                id: 1,
                path: "/srv/runs/b.gguf".into(),
                scale: 0.0,
            },
        ];
        assert_eq!(
            find_lora(&adapters, Path::new("/srv/a.gguf")).unwrap().id,
            0
        );
        assert_eq!(
            find_lora(&adapters, Path::new("runs/x/b.gguf")).unwrap().id,
            1
        );
        assert!(find_lora(&adapters, Path::new("c.gguf")).is_none());
        let field = lora_field(&adapters, &Active::Lora { id: 1, scale: 0.5 }).unwrap();
        assert_eq!(
            field,
            json!([{"id": 0, "scale": 0.0}, {"id": 1, "scale": 0.5}])
        );
        assert_eq!(lora_field(&[], &Active::Base), None);
    }

    #[test]
    fn vllm_modules_are_found_by_name_or_root() {
        let m = |id: &str, root: &str| ServedModel {
            id: id.into(),
            aliases: Vec::new(),
            parent: Some("base".into()),
            root: Some(root.into()),
            n_ctx: None,
        };
        let models = vec![m("eliza", "/loras/eliza-r16"), m("darcy", "/loras/darcy")];
        assert_eq!(
            find_module(&models, Path::new("eliza")).unwrap().id,
            "eliza"
        );
        assert_eq!(
            find_module(&models, Path::new("/x/eliza-r16")).unwrap().id,
            "eliza"
        );
        assert_eq!(
            find_module(&models, Path::new("darcy.gguf")).unwrap().id,
            "darcy"
        );
        assert!(find_module(&models, Path::new("bingley")).is_none());
    }
}
