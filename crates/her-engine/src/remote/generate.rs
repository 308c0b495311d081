//! One streamed completion: fit the prompt, POST /v1/completions with
//! `stream: true`, turn SSE chunks into engine events, end with exactly one
//! `Finished` or `Failed`.

use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedSender;

use super::adapters::lora_field;
use super::cancel::Cancel;
use super::error::RemoteError;
use super::probe::Flavour;
use super::probs::ChoiceReader;
use super::sse::SseParser;
use super::{Ctx, tokenize};
use crate::fit::fit_prompt;
use crate::local::{sampler, tokens_sha256};
use crate::stop::StopMatcher;
use crate::{
    EngineError, Event, FinishReason, Finished, GenerateRequest, GenerationStats, LiveStats,
    Provenance, Started,
};
use her_core::generation::SamplingConfig;

const STATS_INTERVAL: Duration = Duration::from_millis(250);

pub async fn generate(
    ctx: &Ctx,
    request: GenerateRequest,
    events: &UnboundedSender<Event>,
    mut cancel: Cancel,
    received: Instant,
) {
    if cancel.is_cancelled() {
        // Cancelled while queued: nothing was sent to the server.
        let _ = events.send(Event::Finished(finished_early(ctx, &request)));
        return;
    }
    if let Err(err) = run(ctx, &request, events, &mut cancel, received).await {
        let _ = events.send(Event::Failed(err));
    }
}

/// The prompt after dropping turns, its token ids when the server can
/// tokenize, and the reply budget.
struct Fitted {
    text: String,
    tokens: Option<Vec<i32>>,
    skip: usize,
    max_new: usize,
}

async fn fit(ctx: &Ctx, request: &GenerateRequest) -> Result<Fitted, EngineError> {
    let source = request.prompt.clone();
    let max_new = request.sampling.max_new_tokens as usize;
    let n_ctx = ctx.server.info.n_ctx as usize;
    if !ctx.server.can_tokenize || n_ctx == 0 {
        // Without a tokenizer the server itself reports a prompt that is too long.
        let skip = request.min_skip.min(source.droppable_turns());
        return Ok(Fitted {
            text: source.render(skip),
            tokens: None,
            skip,
            max_new,
        });
    }
    // fit_prompt counts synchronously; each count is a /tokenize call.
    let handle = tokio::runtime::Handle::current();
    let http = ctx.http.clone();
    let (flavour, model) = (ctx.server.flavour, ctx.server.model.clone());
    let min_skip = request.min_skip;
    let counter_source = source.clone();
    let fitted = tokio::task::spawn_blocking(move || {
        let mut failure = None;
        let fit = fit_prompt(
            |skip| {
                let text = counter_source.render(skip);
                match handle.block_on(tokenize(&http, flavour, &model, &text, true)) {
                    Ok(ids) => ids.len(),
                    Err(err) => {
                        failure.get_or_insert(err);
                        0
                    }
                }
            },
            counter_source.droppable_turns(),
            min_skip,
            n_ctx,
            max_new,
        );
        (fit, failure)
    })
    .await
    .map_err(|_| EngineError::EngineStopped)?;
    let (fit, failure) = fitted;
    if let Some(err) = failure {
        return Err(err.into());
    }
    let fit = fit.map_err(|no| EngineError::PromptTooLong {
        prompt_tokens: no.prompt_tokens,
        n_ctx: no.n_ctx,
    })?;
    let text = source.render(fit.skip);
    let tokens = tokenize(&ctx.http, flavour, &ctx.server.model, &text, true).await?;
    Ok(Fitted {
        text,
        tokens: Some(tokens),
        skip: fit.skip,
        max_new: fit.max_new_tokens,
    })
}

/// The request body: OpenAI fields plus the sampler extensions llama-server
/// and vLLM understand (each ignores the other's names), and the settings
/// in effect this server kind cannot apply.
pub fn body(
    ctx: &Ctx,
    prompt: &str,
    sampling: &SamplingConfig,
    max_new: usize,
    grammar: Option<&str>,
    candidates: usize,
) -> (Value, Vec<String>) {
    let stops: Vec<&String> = sampling.stop.iter().filter(|s| !s.is_empty()).collect();
    let mut body = json!({
        "model": ctx.model_name(),
        "prompt": prompt,
        "stream": true,
        "max_tokens": max_new,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,
        "min_p": sampling.min_p,
        "seed": sampling.seed,
        "stop": stops,
        "repeat_penalty": sampling.repeat_penalty,
        "repeat_last_n": sampling.repeat_last_n,
        "repetition_penalty": sampling.repeat_penalty,
    });
    let dropped = super::samplers::add_fields(&mut body, ctx.server.flavour, sampling);
    if ctx.server.flavour == Flavour::LlamaServer {
        body["cache_prompt"] = json!(true);
        // `verbose` adds the ids of sampled tokens and which stop string ended the reply.
        body["verbose"] = json!(true);
        body["return_tokens"] = json!(true);
        if let Some(lora) = lora_field(&ctx.server.adapters, &ctx.active) {
            body["lora"] = lora;
        }
        if candidates > 0 {
            // The model's own distribution, before the samplers, as the local engine reports.
            body["n_probs"] = json!(candidates);
            body["post_sampling_probs"] = json!(false);
        }
    }
    if let Some(gbnf) = grammar {
        body["grammar"] = json!(gbnf);
        body["guided_grammar"] = json!(gbnf);
    }
    (body, dropped)
}

/// Sends the completion request. A server that refuses one of our extension
/// fields (a strict OpenAI-compatible one) gets it once more with OpenAI's
/// fields only, and the settings that left out join `unapplied`: the reply
/// still comes. `None`: cancelled while waiting.
async fn send_completion(
    ctx: &Ctx,
    path: &str,
    body: &Value,
    sampling: &SamplingConfig,
    unapplied: &mut Vec<String>,
    cancel: &mut Cancel,
) -> Result<Option<reqwest::Response>, EngineError> {
    let first = tokio::select! {
        r = ctx.http.send(Method::POST, path, Some(body)) => r,
        () = cancel.cancelled() => return Ok(None),
    };
    let message = match first {
        Ok(response) => return Ok(Some(response)),
        Err(RemoteError::Rejected { message, .. })
            if super::samplers::refuses_an_extension(&message, body) =>
        {
            message
        }
        Err(err) => return Err(err.into()),
    };
    let (plain, lost) = super::samplers::openai_only(body, sampling);
    tracing::warn!(
        "{} refused an extension field ({message}); sending OpenAI's fields only",
        ctx.http.shown(path)
    );
    for setting in lost {
        if !unapplied.contains(&setting) {
            unapplied.push(setting);
        }
    }
    tokio::select! {
        r = ctx.http.send(Method::POST, path, Some(&plain)) => Ok(Some(r?)),
        () = cancel.cancelled() => Ok(None),
    }
}

/// What the stream told us so far.
#[derive(Default)]
struct Progress {
    text_chunks: usize,
    tokens: Vec<i32>,
    finish_reason: Option<String>,
    stopping_word: Option<String>,
    usage_prompt: Option<usize>,
    usage_completion: Option<usize>,
    done: bool,
}

impl Progress {
    fn generated(&self) -> usize {
        self.usage_completion.unwrap_or(if self.tokens.is_empty() {
            self.text_chunks
        } else {
            self.tokens.len()
        })
    }
}

async fn run(
    ctx: &Ctx,
    request: &GenerateRequest,
    events: &UnboundedSender<Event>,
    cancel: &mut Cancel,
    received: Instant,
) -> Result<(), EngineError> {
    let sampling = &request.sampling;
    sampler::validate(sampling)?;
    let fitted = fit(ctx, request).await?;
    let (body, mut unapplied) = body(
        ctx,
        &fitted.text,
        sampling,
        fitted.max_new,
        request.grammar.as_deref(),
        request.candidates,
    );
    let path = "/v1/completions";
    let prompt_start = Instant::now();
    let sent = send_completion(ctx, path, &body, sampling, &mut unapplied, cancel).await?;
    let Some(response) = sent else {
        let _ = events.send(Event::Finished(finished_early(ctx, request)));
        return Ok(());
    };
    if !unapplied.is_empty() {
        tracing::warn!(
            "{} did not apply {}; the reply is sampled without them",
            ctx.http.shown(path),
            unapplied.join(", ")
        );
    }
    let is_sse = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !is_sse {
        let text = response.text().await.unwrap_or_default();
        return Err(RemoteError::NotOpenAi {
            url: ctx.http.shown(path),
            found: format!(
                "a stream was asked for, {}",
                ctx.http.body_description(&text)
            ),
        }
        .into());
    }
    let prompt_tokens = fitted.tokens.as_ref().map_or(0, Vec::len);
    let _ = events.send(Event::Started(Started {
        prompt_tokens,
        reused_tokens: 0,
        evaluated_tokens: prompt_tokens,
        dropped_turns: fitted.skip,
        max_new_tokens: fitted.max_new,
    }));

    let mut stream = response.bytes_stream();
    let mut sse = SseParser::new();
    let mut stops = StopMatcher::new(&sampling.stop);
    let mut progress = Progress::default();
    let mut choices = ChoiceReader::default();
    // Bytes of reply handed on as text: the choices cover these only.
    let mut kept = 0;
    let mut first_token_at: Option<Instant> = None;
    let mut last_stats = Instant::now();
    let mut client_stop: Option<String> = None;
    let mut lost: Option<RemoteError> = None;
    let mut cancelled = false;
    'read: while !progress.done {
        let chunk = tokio::select! {
            c = stream.next() => c,
            () = cancel.cancelled() => { cancelled = true; break 'read; }
        };
        let events_in = match chunk {
            Some(Ok(bytes)) => sse.push(&bytes),
            Some(Err(err)) => {
                lost = Some(ctx.http.transport_error(path, &err));
                break 'read;
            }
            None => {
                let tail: Vec<_> = sse.finish().into_iter().collect();
                if tail.is_empty() {
                    break 'read;
                }
                tail
            }
        };
        for event in events_in {
            let chunk = parse_chunk(ctx, path, &event.event, &event.data)?;
            let Some(chunk) = chunk else {
                progress.done = true;
                break;
            };
            let text = absorb(&mut progress, &chunk);
            choices.push(&chunk);
            if !text.is_empty() {
                first_token_at.get_or_insert_with(Instant::now);
                progress.text_chunks += 1;
                let scan = stops.push(&text);
                if !scan.emit.is_empty() {
                    kept += scan.emit.len();
                    let _ = events.send(Event::Text(scan.emit));
                }
                if scan.stopped_on.is_some() {
                    // Dropping the response closes the connection: the server stops too.
                    client_stop = scan.stopped_on;
                    break 'read;
                }
            }
            if last_stats.elapsed() >= STATS_INTERVAL {
                last_stats = Instant::now();
                let _ = events.send(Event::Stats(LiveStats {
                    generated_tokens: progress.generated(),
                    tokens_per_second: crate::tokens_per_second(
                        progress.generated(),
                        first_token_at,
                    ),
                    context_used: prompt_tokens + progress.generated(),
                    n_ctx: ctx.server.info.n_ctx as usize,
                }));
            }
        }
    }
    drop(stream);
    if client_stop.is_none() {
        // Text held back for a stop string that never completed is the model's.
        let rest = stops.finish();
        if !rest.is_empty() {
            kept += rest.len();
            let _ = events.send(Event::Text(rest));
        }
    }
    let reason = if cancelled {
        FinishReason::Cancelled
    } else if client_stop.is_some() {
        FinishReason::StopString
    } else {
        match progress.finish_reason.as_deref() {
            Some("length")
                if prompt_tokens + progress.generated() >= ctx.server.info.n_ctx as usize
                    && ctx.server.info.n_ctx > 0 =>
            {
                FinishReason::ContextFull
            }
            Some("length") => FinishReason::MaxTokens,
            Some(_)
                if progress
                    .stopping_word
                    .as_deref()
                    .is_some_and(|w| !w.is_empty()) =>
            {
                FinishReason::StopString
            }
            Some(_) => FinishReason::EndOfGeneration,
            // The stream ended without saying how: the connection was cut.
            None => {
                return Err(lost
                    .unwrap_or_else(|| RemoteError::ConnectionLost {
                        url: ctx.http.shown(path),
                        reason: "the stream ended before the reply did".into(),
                    })
                    .into());
            }
        }
    };
    let stop_string = client_stop.or(match reason {
        FinishReason::StopString => progress.stopping_word.clone(),
        _ => None,
    });
    let generated = progress.generated();
    let prompt_total = prompt_tokens.max(progress.usage_prompt.unwrap_or(0));
    let _ = events.send(Event::Finished(Finished {
        choices: if reason == FinishReason::Cancelled {
            Vec::new()
        } else {
            choices.finish(kept)
        },
        reason,
        stop_string,
        tokens: progress.tokens.clone(),
        stats: GenerationStats {
            prompt_tokens: prompt_total,
            evaluated_prompt_tokens: prompt_total,
            generated_tokens: generated,
            time_to_first_token_ms: first_token_at
                .map_or(0.0, |t| (t - received).as_secs_f64() * 1e3),
            prompt_ms: first_token_at.map_or(0.0, |t| (t - prompt_start).as_secs_f64() * 1e3),
            generation_ms: first_token_at.map_or(0.0, |t| t.elapsed().as_secs_f64() * 1e3),
            tokens_per_second: crate::tokens_per_second(generated, first_token_at),
            context_used: prompt_total + generated,
            // The server does not say how its time splits.
            ..GenerationStats::default()
        },
        provenance: Provenance {
            prompt_sha256: her_core::hashing::sha256_hex(fitted.text.as_bytes()),
            prompt_tokens_sha256: fitted
                .tokens
                .as_ref()
                .map(|t| tokens_sha256(t.iter().copied()))
                .unwrap_or_default(),
            dropped_turns: fitted.skip,
            unapplied,
            ..ctx.provenance(sampling)
        },
    }));
    Ok(())
}

/// A chunk's JSON, `None` for the closing `[DONE]`, an error for an error event.
fn parse_chunk(
    ctx: &Ctx,
    path: &str,
    event: &str,
    data: &str,
) -> Result<Option<Value>, RemoteError> {
    if data.trim() == "[DONE]" {
        return Ok(None);
    }
    let json: Value = serde_json::from_str(data).map_err(|_| RemoteError::NotOpenAi {
        url: ctx.http.shown(path),
        found: format!("a stream event {}", ctx.http.body_description(data)),
    })?;
    if event == "error" || json.get("error").is_some() {
        return Err(RemoteError::Server {
            url: ctx.http.shown(path),
            status: json
                .pointer("/error/code")
                .and_then(Value::as_u64)
                .unwrap_or(500) as u16,
            message: ctx.http.body_message(data),
        });
    }
    Ok(Some(json))
}

/// Records what a chunk says and returns its text.
fn absorb(progress: &mut Progress, chunk: &Value) -> String {
    let choice = chunk.pointer("/choices/0");
    if let Some(reason) = choice
        .and_then(|c| c.get("finish_reason"))
        .and_then(Value::as_str)
    {
        progress.finish_reason = Some(reason.to_owned());
    }
    if let Some(usage) = chunk.get("usage") {
        let n = |k: &str| usage.get(k).and_then(Value::as_u64).map(|v| v as usize);
        progress.usage_prompt = n("prompt_tokens").or(progress.usage_prompt);
        progress.usage_completion = n("completion_tokens").or(progress.usage_completion);
    }
    if let Some(verbose) = chunk.get("__verbose") {
        if let Some(ids) = verbose.get("tokens").and_then(Value::as_array) {
            progress
                .tokens
                .extend(ids.iter().filter_map(Value::as_i64).map(|t| t as i32));
        }
        if let Some(word) = verbose.get("stopping_word").and_then(Value::as_str) {
            progress.stopping_word = Some(word.to_owned());
        }
    }
    choice
        .and_then(|c| c.get("text"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn finished_early(ctx: &Ctx, request: &GenerateRequest) -> Finished {
    Finished {
        choices: Vec::new(),
        reason: FinishReason::Cancelled,
        stop_string: None,
        tokens: Vec::new(),
        stats: GenerationStats::default(),
        provenance: ctx.provenance(&request.sampling),
    }
}
