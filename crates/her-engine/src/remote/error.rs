//! What can go wrong talking to an OpenAI-compatible server. Each message
//! names the URL (never the API key) and the setting to look at.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum RemoteError {
    #[error("backend.base_url '{url}' is not an http:// or https:// URL")]
    BadUrl { url: String },

    #[error("cannot reach the server at '{url}': {reason} (is it running? check backend.base_url)")]
    Unreachable { url: String, reason: String },

    #[error("the server at '{url}' sent nothing for {secs} s (backend.read_timeout_secs)")]
    Timeout { url: String, secs: u64 },

    #[error("the server at '{url}' refused the request (HTTP {status}): {message}; {hint}")]
    Unauthorized {
        url: String,
        status: u16,
        message: String,
        hint: String,
    },

    #[error(
        "'{url}' was not found on the server (HTTP 404): {message}; check backend.base_url (without /v1) and backend.model"
    )]
    NotFound { url: String, message: String },

    #[error("the server rejected the request to '{url}' (HTTP {status}): {message}")]
    Rejected {
        url: String,
        status: u16,
        message: String,
    },

    #[error("the server at '{url}' is busy (HTTP 429) after {attempts} attempts: {message}")]
    RateLimited {
        url: String,
        attempts: u32,
        message: String,
    },

    #[error("the server at '{url}' failed (HTTP {status}): {message}")]
    Server {
        url: String,
        status: u16,
        message: String,
    },

    #[error(
        "'{url}' does not answer like an OpenAI-compatible server ({found}); point backend.base_url at vLLM, llama-server or another server with /v1/completions"
    )]
    NotOpenAi { url: String, found: String },

    #[error(
        "the server does not serve the model '{model}' (backend.model); it serves: {available}"
    )]
    ModelNotServed { model: String, available: String },

    #[error(
        "the connection to '{url}' was lost mid-reply: {reason}; the text so far is kept, marked incomplete"
    )]
    ConnectionLost { url: String, reason: String },

    #[error("{what} is not offered by this server: {reason}")]
    Unsupported { what: &'static str, reason: String },
}
