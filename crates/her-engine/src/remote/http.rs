//! The HTTP side: one client with timeouts, the API key header, retries with
//! backoff for transient failures, and HTTP statuses turned into clear errors.

use std::fmt;
use std::time::Duration;

use reqwest::{Method, Response, StatusCode};
use serde_json::Value;

use super::error::RemoteError;

/// An API key: kept out of `Debug` output, logs and files.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<hidden>)")
    }
}

/// How to reach the server.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub base_url: String,
    pub api_key: Option<ApiKey>,
    /// The variable the key came from, for error hints.
    pub api_key_env: String,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub retries: u32,
}

pub struct Http {
    client: reqwest::Client,
    base: String,
    options: HttpOptions,
    redactor: Redactor,
}

/// Longest wait between two attempts, whatever a Retry-After asks.
const MAX_BACKOFF: Duration = Duration::from_secs(8);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

impl Http {
    pub fn new(options: HttpOptions) -> Result<Self, RemoteError> {
        let base = options.base_url.trim().trim_end_matches('/').to_owned();
        let redactor = Redactor::new(options.api_key.as_ref(), &base);
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(RemoteError::BadUrl {
                url: redactor.scrub(&redact(&options.base_url)),
            });
        }
        let client = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.read_timeout)
            .build()
            .map_err(|e| RemoteError::Unreachable {
                url: redact(&base),
                reason: redactor.scrub(&e.to_string()),
            })?;
        Ok(Self {
            client,
            base,
            options,
            redactor,
        })
    }

    /// The URL of `path` as it may be shown: without any user:password part.
    pub fn shown(&self, path: &str) -> String {
        redact(&format!("{}{path}", self.base))
    }

    pub fn base_shown(&self) -> String {
        redact(&self.base)
    }

    /// `text` from the server (or about it) with the key and the URL's
    /// credentials masked: some servers echo the request headers in errors.
    pub fn scrub(&self, text: &str) -> String {
        self.redactor.scrub(text)
    }

    /// The message of an error body, masked; see [`error_message`].
    pub fn body_message(&self, body: &str) -> String {
        error_message(&self.scrub(body))
    }

    /// A short description of an unexpected body, masked; see [`describe_body`].
    pub fn body_description(&self, body: &str) -> String {
        describe_body(&self.scrub(body))
    }

    /// Sends a request and returns a 2xx response, retrying refused
    /// connections and 429/502/503/504 with exponential backoff. Callers
    /// cancel by dropping the future (waits between attempts included).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response, RemoteError> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self.client.request(method.clone(), &url);
            if let Some(key) = &self.options.api_key {
                request = request.bearer_auth(&key.0);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let (wait, error) = match request.send().await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => {
                    let status = response.status();
                    let retry_after = retry_after(&response);
                    let text = response.text().await.unwrap_or_default();
                    let error = self.status_error(path, status, &text, attempt);
                    if !is_transient(status) {
                        return Err(error);
                    }
                    (retry_after, error)
                }
                Err(err) => {
                    let error = self.transport_error(path, &err);
                    // A pooled keep-alive connection that the server closed
                    // just as it was reused fails before any response arrives
                    // ("connection closed before message completed"): one
                    // fresh attempt is safe, whatever `retries` says.
                    let stale = attempt == 1 && !err.is_connect() && !err.is_timeout();
                    if stale {
                        tracing::info!("{}: {error}; trying once more", self.shown(path));
                        continue;
                    }
                    if !err.is_connect() {
                        return Err(error);
                    }
                    (None, error)
                }
            };
            if attempt > self.options.retries {
                return Err(error);
            }
            let backoff = wait
                .unwrap_or(FIRST_BACKOFF * 2u32.saturating_pow(attempt - 1))
                .min(MAX_BACKOFF);
            tracing::info!(
                "{}: {error}; retrying in {} ms (attempt {attempt} of {})",
                self.shown(path),
                backoff.as_millis(),
                self.options.retries + 1
            );
            tokio::time::sleep(backoff).await;
        }
    }

    /// GET or POST returning a JSON body.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, RemoteError> {
        let response = self.send(method, path, body).await?;
        let text = response
            .text()
            .await
            .map_err(|e| self.transport_error(path, &e))?;
        serde_json::from_str(&text).map_err(|_| RemoteError::NotOpenAi {
            url: self.shown(path),
            found: self.body_description(&text),
        })
    }

    pub fn transport_error(&self, path: &str, err: &reqwest::Error) -> RemoteError {
        let url = self.shown(path);
        if err.is_timeout() {
            RemoteError::Timeout {
                url,
                secs: self.options.read_timeout.as_secs(),
            }
        } else if err.is_connect() {
            RemoteError::Unreachable {
                url,
                reason: self.scrub(&root_cause(err)),
            }
        } else {
            RemoteError::ConnectionLost {
                url,
                reason: self.scrub(&root_cause(err)),
            }
        }
    }

    fn status_error(
        &self,
        path: &str,
        status: StatusCode,
        body: &str,
        attempts: u32,
    ) -> RemoteError {
        let url = self.shown(path);
        let message = self.body_message(body);
        match status.as_u16() {
            401 | 403 => RemoteError::Unauthorized {
                url,
                status: status.as_u16(),
                message,
                hint: self.key_hint(),
            },
            404 => RemoteError::NotFound { url, message },
            429 => RemoteError::RateLimited {
                url,
                attempts,
                message,
            },
            400..=499 => RemoteError::Rejected {
                url,
                status: status.as_u16(),
                message,
            },
            _ => RemoteError::Server {
                url,
                status: status.as_u16(),
                message,
            },
        }
    }

    fn key_hint(&self) -> String {
        let env = &self.options.api_key_env;
        match (&self.options.api_key, env.is_empty()) {
            (Some(_), _) => format!("check the API key in the environment variable '{env}'"),
            (None, true) => {
                "no API key is sent: name the variable that holds it in backend.api_key_env".into()
            }
            (None, false) => {
                format!("the environment variable '{env}' (backend.api_key_env) is not set")
            }
        }
    }
}

fn is_transient(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
    let secs: u64 = value.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

/// The innermost cause, which names what actually happened ("Connection refused").
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The message of an OpenAI-style error body (`{"error": {"message"}}`,
/// `{"error": "…"}`, FastAPI's `{"detail"}`), else a short description of it.
pub fn error_message(body: &str) -> String {
    let Ok(json) = serde_json::from_str::<Value>(body) else {
        return describe_body(body);
    };
    let pick = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    };
    json.pointer("/error/message")
        .and_then(pick)
        .or_else(|| json.get("error").and_then(pick))
        .or_else(|| json.get("detail").and_then(pick))
        .or_else(|| json.get("message").and_then(pick))
        .map(|m| shorten(&m, 300))
        .unwrap_or_else(|| describe_body(body))
}

/// What a body that is not the expected JSON looks like, in a few words.
pub fn describe_body(body: &str) -> String {
    let trimmed = body.trim_start();
    let lower = trimmed.get(..15).unwrap_or(trimmed).to_ascii_lowercase();
    if lower.starts_with("<!doctype html") || lower.starts_with("<html") {
        return "it sent an HTML page".into();
    }
    if trimmed.is_empty() {
        return "it sent an empty body".into();
    }
    format!("it sent '{}'", shorten(trimmed, 80))
}

fn shorten(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &flat[..at]),
        None => flat,
    }
}

/// Drops a `user:password@` part of a URL, and masks the values of query
/// parameters that look like credentials (`?api_key=…`), so they never reach
/// a message, a report or a log.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let rest = match rest[..host_end].rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    let Some((before, query)) = rest.split_once('?') else {
        return format!("{scheme}://{rest}");
    };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) if is_secret_name(name) && !value.is_empty() => {
                format!("{name}={MASK}")
            }
            _ => pair.to_owned(),
        })
        .collect();
    let mut out = format!("{scheme}://{before}?{}", masked.join("&"));
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// What a masked secret is shown as.
pub const MASK: &str = "***";

fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "key", "token", "secret", "password", "passwd", "auth", "sig",
    ]
    .iter()
    .any(|w| name.contains(w))
}

/// Masks the secrets of one connection wherever they appear in a text: the
/// API key, the URL's password (as written and percent-decoded) and the
/// Basic credentials made of it, plus anything shaped like a credential
/// (`Bearer …`, `Basic …`, `sk-…`), so a key this client does not know
/// about is hidden too.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    pub fn new(api_key: Option<&ApiKey>, url: &str) -> Self {
        use base64::Engine as _;
        let mut secrets = Vec::new();
        if let Some(key) = api_key {
            secrets.push(key.0.clone());
        }
        if let Some((_, rest)) = url.split_once("://") {
            let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            if let Some(at) = rest[..host_end].rfind('@') {
                let userinfo = &rest[..at];
                let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                let decoded = percent_decode(password);
                secrets.push(password.to_owned());
                secrets.push(decoded.clone());
                let basic = format!("{}:{decoded}", percent_decode(user));
                secrets.push(base64::engine::general_purpose::STANDARD.encode(basic));
            }
        }
        secrets.retain(|s| !s.is_empty());
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self { secrets }
    }

    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
        mask_credential_shapes(&out)
    }
}

/// `Bearer x`, `Basic x` (any case) and `sk-…` keys with their token masked.
fn mask_credential_shapes(text: &str) -> String {
    let is_token = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while at < text.len() {
        let rest = &lower[at..];
        let prefix = ["bearer ", "basic "]
            .iter()
            .find(|p| rest.starts_with(**p))
            .map(|p| p.len())
            .or_else(|| {
                let starts_word = at == 0 || !text[..at].ends_with(is_token);
                (starts_word && rest.starts_with("sk-")).then_some(3)
            });
        let Some(prefix) = prefix else {
            let next = text[at..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&text[at..at + next]);
            at += next;
            continue;
        };
        let token_start = at + prefix;
        let token_len = text[token_start..]
            .find(|c: char| !is_token(c))
            .unwrap_or(text.len() - token_start);
        out.push_str(&text[at..token_start]);
        // "Basic auth" in prose is not a credential: only mask token-like runs.
        if token_len >= 8 {
            out.push_str(MASK);
        } else {
            out.push_str(&text[token_start..token_start + token_len]);
        }
        at = token_start + token_len;
    }
    out
}

/// `%XX` escapes decoded (as reqwest does for URL credentials); anything
/// else, including a malformed escape, is kept as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_of_common_servers() {
        assert_eq!(
            error_message(
                r#"{"error":{"code":401,"message":"Invalid API Key","type":"authentication_error"}}"#
            ),
            "Invalid API Key"
        );
        assert_eq!(error_message(r#"{"detail":"Not Found"}"#), "Not Found");
        assert_eq!(
            error_message("<!DOCTYPE html><html><body>hi</body></html>"),
            "it sent an HTML page"
        );
        assert_eq!(error_message("  "), "it sent an empty body");
    }

    #[test]
    fn credentials_never_show_in_urls() {
        assert_eq!(
            redact("https://u:secret@host:8000/v1"),
            "https://host:8000/v1"
        );
        assert_eq!(redact("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(format!("{:?}", ApiKey::new("sk-123")), "ApiKey(<hidden>)");
        assert_eq!(
            redact("http://u:p@host?x=1&api_key=abc&token=t#frag"),
            "http://host?x=1&api_key=***&token=***#frag"
        );
        assert_eq!(redact("http://h:1/v1@x"), "http://h:1/v1@x");
    }

    #[test]
    fn echoed_keys_and_credentials_are_masked() {
        let key = ApiKey::new("my-planted-key-0123");
        let r = Redactor::new(Some(&key), "http://alice:p%40ss-word@host:8000");
        let basic = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode("alice:p@ss-word")
        };
        let echoed = format!(
            "x-api-key: my-planted-key-0123\nauthorization: Basic {basic}\npw p%40ss-word p@ss-word"
        );
        let out = r.scrub(&echoed);
        for leak in [
            "my-planted-key-0123",
            basic.as_str(),
            "p%40ss-word",
            "p@ss-word",
        ] {
            assert!(!out.contains(leak), "{leak} in {out}");
        }
        // Credential shapes are masked even when the client does not know them.
        let other = Redactor::default().scrub(
            "Authorization: Bearer abcdefgh12345678, key sk-proj-ABCDEFGHIJKLMNOP; Basic auth",
        );
        assert_eq!(other, "Authorization: Bearer ***, key sk-***; Basic auth");
        assert_eq!(Redactor::default().scrub("né désk-x"), "né désk-x");
    }
}
