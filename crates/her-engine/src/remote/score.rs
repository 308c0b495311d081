//! Token counts and log-probabilities on a server.
//!
//! llama-server: the completion's tokens are forced one by one with a token
//! grammar (`<[id]>`) and `n_probs` reports each forced token's
//! log-probability under the raw logits, which is what the local engine
//! computes. Other servers: `echo` + `logprobs` (vLLM and the OpenAI API
//! return the prompt's log-probs that way); where neither works, a clear error.

use reqwest::Method;
use serde_json::{Value, json};

use super::Ctx;
use super::adapters::lora_field;
use super::error::RemoteError;
use super::http::Http;
use super::probe::{Flavour, tokenize_body};
use crate::{EngineError, TokenLogprob};

/// Token ids of `text` from the server's own tokenizer.
pub async fn tokenize(
    http: &Http,
    flavour: Flavour,
    model: &str,
    text: &str,
    add_special: bool,
) -> Result<Vec<i32>, RemoteError> {
    let body = tokenize_body(flavour, model, text, add_special);
    let reply = match http.json(Method::POST, "/tokenize", Some(&body)).await {
        Ok(reply) => reply,
        Err(RemoteError::NotFound { .. }) => {
            return Err(RemoteError::Unsupported {
                what: "tokenizing",
                reason: "the server has no /tokenize (llama-server and vLLM have one)".into(),
            });
        }
        Err(err) => return Err(err),
    };
    reply
        .get("tokens")
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                // llama-server answers {id, piece} objects when asked for pieces.
                .filter_map(|t| t.as_i64().or_else(|| t.get("id").and_then(Value::as_i64)))
                .map(|t| t as i32)
                .collect()
        })
        .ok_or_else(|| RemoteError::NotOpenAi {
            url: http.shown("/tokenize"),
            found: "its /tokenize reply has no 'tokens' array".into(),
        })
}

pub async fn score(
    ctx: &Ctx,
    prompt: &str,
    completion: &str,
) -> Result<Vec<TokenLogprob>, EngineError> {
    match ctx.server.flavour {
        Flavour::LlamaServer => score_forced(ctx, prompt, completion).await,
        Flavour::OpenAi => score_echo(ctx, prompt, completion).await,
    }
}

async fn score_forced(
    ctx: &Ctx,
    prompt: &str,
    completion: &str,
) -> Result<Vec<TokenLogprob>, EngineError> {
    let (flavour, model) = (ctx.server.flavour, ctx.model_name());
    let prompt_ids = tokenize(&ctx.http, flavour, &model, prompt, true).await?;
    let completion_ids = tokenize(&ctx.http, flavour, &model, completion, false).await?;
    if prompt_ids.is_empty() || completion_ids.is_empty() {
        return Ok(Vec::new());
    }
    let n_ctx = ctx.server.info.n_ctx as usize;
    let total = prompt_ids.len() + completion_ids.len();
    if n_ctx > 0 && total > n_ctx {
        return Err(EngineError::PromptTooLong {
            prompt_tokens: total,
            n_ctx,
        });
    }
    let grammar = format!(
        "root ::= {}",
        completion_ids
            .iter()
            .map(|id| format!("<[{id}]>"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut body = json!({
        "model": model,
        "prompt": prompt_ids,
        "max_tokens": completion_ids.len(),
        "temperature": 0.0,
        "grammar": grammar,
        "n_probs": 1,
        "post_sampling_probs": false,
        "stop": [],
        "cache_prompt": true,
        "stream": false,
    });
    if let Some(lora) = lora_field(&ctx.server.adapters, &ctx.active) {
        body["lora"] = lora;
    }
    let path = "/v1/completions";
    let reply = ctx.http.json(Method::POST, path, Some(&body)).await?;
    let entries = reply
        .pointer("/choices/0/logprobs/content")
        .and_then(Value::as_array)
        .ok_or_else(|| RemoteError::Unsupported {
            what: "scoring",
            reason: "llama-server returned no log-probs for the forced tokens".into(),
        })?;
    let mut out = Vec::with_capacity(completion_ids.len());
    for (want, entry) in completion_ids.iter().zip(entries) {
        let id = entry.get("id").and_then(Value::as_i64).map(|t| t as i32);
        if id != Some(*want) {
            return Err(RemoteError::Unsupported {
                what: "scoring",
                reason: format!("the server sampled token {id:?} where {want} was forced"),
            }
            .into());
        }
        out.push(TokenLogprob {
            token: *want,
            piece: entry
                .get("token")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            logprob: entry
                .get("logprob")
                .and_then(Value::as_f64)
                .unwrap_or(f64::NEG_INFINITY),
        });
    }
    if out.len() != completion_ids.len() {
        return Err(RemoteError::Unsupported {
            what: "scoring",
            reason: format!(
                "the server scored {} of the completion's {} tokens (it stopped early)",
                out.len(),
                completion_ids.len()
            ),
        }
        .into());
    }
    Ok(out)
}

async fn score_echo(
    ctx: &Ctx,
    prompt: &str,
    completion: &str,
) -> Result<Vec<TokenLogprob>, EngineError> {
    let body = json!({
        "model": ctx.model_name(),
        "prompt": format!("{prompt}{completion}"),
        "echo": true,
        "logprobs": 0,
        "max_tokens": 1,
        "temperature": 0.0,
        // vLLM: ids instead of token text, as "token_id:123".
        "return_tokens_as_token_ids": true,
    });
    let unsupported = |reason: String| RemoteError::Unsupported {
        what: "scoring (log-probs of a given reply)",
        reason,
    };
    let reply = match ctx
        .http
        .json(Method::POST, "/v1/completions", Some(&body))
        .await
    {
        Ok(reply) => reply,
        Err(RemoteError::Rejected { message, .. }) => {
            return Err(unsupported(format!(
                "it refused echo + logprobs ({message}); use vLLM or llama-server"
            ))
            .into());
        }
        Err(err) => return Err(err.into()),
    };
    let logprobs = reply.pointer("/choices/0/logprobs");
    let column = |key: &str| {
        logprobs
            .and_then(|l| l.get(key))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (tokens, values, offsets) = (
        column("tokens"),
        column("token_logprobs"),
        column("text_offset"),
    );
    if tokens.is_empty() || offsets.len() != tokens.len() {
        return Err(unsupported("it returned no log-probs for the prompt (echo)".into()).into());
    }
    // Offsets count characters; the completion starts after the prompt's.
    let start = prompt.chars().count() as u64;
    let end = start + completion.chars().count() as u64;
    let mut out = Vec::new();
    for ((token, value), offset) in tokens.iter().zip(&values).zip(&offsets) {
        let at = offset.as_u64().unwrap_or(0);
        if at < start || at >= end {
            continue;
        }
        let text = token.as_str().unwrap_or_default();
        let id = text
            .strip_prefix("token_id:")
            .and_then(|n| n.parse().ok())
            .unwrap_or(-1);
        out.push(TokenLogprob {
            token: id,
            piece: if id >= 0 {
                String::new()
            } else {
                text.to_owned()
            },
            logprob: value.as_f64().unwrap_or(f64::NEG_INFINITY),
        });
    }
    Ok(out)
}
