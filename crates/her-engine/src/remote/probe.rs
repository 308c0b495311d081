//! Finding out what the server is: which models it serves, whether it is
//! llama-server (native extras: /props, /tokenize, /lora-adapters, token
//! grammars) or another OpenAI-compatible server such as vLLM.

use std::path::PathBuf;

use reqwest::Method;
use serde_json::{Value, json};

use super::error::RemoteError;
use super::http::Http;
use crate::{ChatTemplateFamily, ModelInfo};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    LlamaServer,
    /// vLLM and other servers: only the OpenAI routes are assumed.
    OpenAi,
}

/// One entry of `GET /v1/models`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServedModel {
    pub id: String,
    /// Other names the server accepts (llama-server's aliases).
    pub aliases: Vec<String>,
    /// vLLM: the base model of a LoRA module.
    pub parent: Option<String>,
    /// vLLM: the path a model or LoRA module was loaded from.
    pub root: Option<String>,
    pub n_ctx: Option<u64>,
}

/// A LoRA adapter llama-server was started with (`--lora`).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerAdapter {
    pub id: u64,
    pub path: String,
    pub scale: f64,
}

#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub flavour: Flavour,
    pub models: Vec<ServedModel>,
    /// The model requests name when no adapter is chosen.
    pub model: String,
    pub adapters: Vec<ServerAdapter>,
    /// `/tokenize` works: prompts can be fitted and hashed by token.
    pub can_tokenize: bool,
    pub info: ModelInfo,
}

pub async fn probe(http: &Http, wanted: &str) -> Result<ServerInfo, RemoteError> {
    let listing = http.json(Method::GET, "/v1/models", None).await?;
    let models = parse_models(&listing).ok_or_else(|| RemoteError::NotOpenAi {
        url: http.shown("/v1/models"),
        found: "its model list has no 'data' array".into(),
    })?;
    let model = choose_model(&models, wanted)?;
    // /props is llama-server's own; a failure other than a refused key just
    // means another server.
    let props = match http.json(Method::GET, "/props", None).await {
        Ok(props) => Some(props),
        Err(err @ RemoteError::Unauthorized { .. }) => return Err(err),
        Err(_) => None,
    };
    let is_llama = props
        .as_ref()
        .is_some_and(|p| p.get("default_generation_settings").is_some());
    let flavour = if is_llama {
        Flavour::LlamaServer
    } else {
        Flavour::OpenAi
    };
    let adapters = match flavour {
        Flavour::LlamaServer => list_adapters(http).await?,
        Flavour::OpenAi => Vec::new(),
    };
    let body = tokenize_body(flavour, &model, "a", false);
    let can_tokenize = http
        .json(Method::POST, "/tokenize", Some(&body))
        .await
        .ok()
        .is_some_and(|r| r.get("tokens").is_some_and(Value::is_array));
    let info = model_info(http, flavour, &models, &model, props.as_ref());
    tracing::info!(
        "remote backend: {} serves '{model}' ({flavour:?}, {} adapters, tokenize: {can_tokenize})",
        http.base_shown(),
        adapters.len()
    );
    Ok(ServerInfo {
        flavour,
        models,
        model,
        adapters,
        can_tokenize,
        info,
    })
}

pub async fn list_adapters(http: &Http) -> Result<Vec<ServerAdapter>, RemoteError> {
    let list = http.json(Method::GET, "/lora-adapters", None).await?;
    Ok(list
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|a| {
                    Some(ServerAdapter {
                        id: a.get("id")?.as_u64()?,
                        path: a.get("path")?.as_str()?.to_owned(),
                        scale: a.get("scale").and_then(Value::as_f64).unwrap_or(0.0),
                    })
                })
                .collect()
        })
        .unwrap_or_default())
}

/// The body of `POST /tokenize` that llama-server and vLLM both accept.
pub fn tokenize_body(flavour: Flavour, model: &str, text: &str, add_special: bool) -> Value {
    match flavour {
        Flavour::LlamaServer => json!({"content": text, "add_special": add_special}),
        Flavour::OpenAi => {
            json!({"model": model, "prompt": text, "add_special_tokens": add_special})
        }
    }
}

pub fn parse_models(listing: &Value) -> Option<Vec<ServedModel>> {
    let data = listing.get("data")?.as_array()?;
    Some(
        data.iter()
            .filter_map(|m| {
                let text = |key: &str| m.get(key).and_then(Value::as_str).map(str::to_owned);
                Some(ServedModel {
                    id: text("id")?,
                    aliases: m
                        .get("aliases")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|s| s.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                    parent: text("parent"),
                    root: text("root"),
                    n_ctx: m
                        .get("max_model_len")
                        .or_else(|| m.pointer("/meta/n_ctx"))
                        .and_then(Value::as_u64),
                })
            })
            .collect(),
    )
}

/// The configured model if served, else the first base model.
pub fn choose_model(models: &[ServedModel], wanted: &str) -> Result<String, RemoteError> {
    let available = || {
        let names: Vec<String> = models.iter().map(|m| format!("'{}'", m.id)).collect();
        if names.is_empty() {
            "nothing".to_owned()
        } else {
            names.join(", ")
        }
    };
    if wanted.is_empty() {
        return models
            .iter()
            .find(|m| m.parent.is_none())
            .or_else(|| models.first())
            .map(|m| m.id.clone())
            .ok_or_else(|| RemoteError::ModelNotServed {
                model: String::new(),
                available: available(),
            });
    }
    models
        .iter()
        .find(|m| m.id == wanted || m.aliases.iter().any(|a| a == wanted))
        .map(|m| m.id.clone())
        .ok_or_else(|| RemoteError::ModelNotServed {
            model: wanted.to_owned(),
            available: available(),
        })
}

fn model_info(
    http: &Http,
    flavour: Flavour,
    models: &[ServedModel],
    model: &str,
    props: Option<&Value>,
) -> ModelInfo {
    let served = models.iter().find(|m| m.id == model);
    let n_ctx = props
        .and_then(|p| p.pointer("/default_generation_settings/n_ctx"))
        .and_then(Value::as_u64)
        .or_else(|| served.and_then(|m| m.n_ctx))
        .unwrap_or(0);
    let path = props
        .and_then(|p| p.get("model_path"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| served.and_then(|m| m.root.clone()))
        .unwrap_or_else(|| model.to_owned());
    let template = props
        .and_then(|p| p.get("chat_template"))
        .and_then(Value::as_str);
    // No file to hash: the server, model and path identify what answered.
    let fingerprint =
        her_core::hashing::sha256_hex(format!("{}\n{model}\n{path}", http.base_shown()).as_bytes());
    ModelInfo {
        path: PathBuf::from(&path),
        name: model.to_owned(),
        fingerprint: format!("remote-{}", fingerprint.get(..32).unwrap_or(&fingerprint)),
        architecture: "remote".into(),
        file_type: match flavour {
            Flavour::LlamaServer => "llama-server".into(),
            Flavour::OpenAi => "openai-compatible".into(),
        },
        file_size: 0,
        n_params: 0,
        n_layer: 0,
        n_embd: 0,
        n_head: 0,
        n_head_kv: 0,
        n_vocab: 0,
        n_ctx_train: 0,
        n_ctx: u32::try_from(n_ctx).unwrap_or(u32::MAX),
        chat_template: ChatTemplateFamily::detect(template),
        devices: Vec::new(),
        n_gpu_layers_requested: 0,
        n_gpu_layers_offloaded: 0,
        flash_attention: false,
        threads: 0,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn vllm_listing_with_a_lora_module() {
        let listing = json!({"object": "list", "data": [
            {"id": "her-32b", "root": "/models/HER-32B", "parent": null, "max_model_len": 32768},
            {"id": "elizabeth", "root": "/loras/elizabeth", "parent": "her-32b"}
        ]});
        let models = parse_models(&listing).unwrap();
        assert_eq!(models[0].n_ctx, Some(32768));
        assert_eq!(models[1].parent.as_deref(), Some("her-32b"));
        assert_eq!(choose_model(&models, "").unwrap(), "her-32b");
        assert_eq!(choose_model(&models, "elizabeth").unwrap(), "elizabeth");
        let err = choose_model(&models, "gpt-4").unwrap_err().to_string();
        assert!(
            err.contains("'gpt-4'") && err.contains("'her-32b', 'elizabeth'"),
            "{err}"
        );
    }
}
