//! The remote backend against a real llama-server (built by
//! scripts/llama-server.sh into target/llama-server/) serving the tiny Qwen3
//! and its LoRA on 127.0.0.1: streaming, stop strings, seeds, cancellation,
//! log-probs against the local engine, adapter switches, and the error paths.
//! Assertions are about structure, determinism and parity, never the text.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{CHATML_PROMPT, sampling, tiny};
use her_engine::remote::ApiKey;
use her_engine::{
    Backend, EngineError, Event, EventStream, FinishReason, Finished, GenerateRequest, LocalEngine,
    RemoteEngine, RemoteError, RemoteOptions,
};
use her_studio::config::SamplingConfig;

/// The llama-server binary; scripts/test builds it before the tests run.
fn llama_server_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("LLAMA_SERVER_BIN") {
        return PathBuf::from(path);
    }
    let bin = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("llama-server/bin/llama-server");
    assert!(
        bin.is_file(),
        "'{}' is missing: run scripts/test (it builds llama-server with scripts/llama-server.sh)",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A llama-server child process, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    /// The tiny Qwen3 with its LoRA (loaded, not applied).
    fn start(api_key: Option<&str>) -> Self {
        let t = tiny();
        Self::serve(&t.model, Some(&t.lora), api_key)
    }

    fn serve(model: &Path, lora: Option<&Path>, api_key: Option<&str>) -> Self {
        let port = free_port();
        let log = std::fs::File::create(
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("llama-server-{port}.log")),
        )
        .unwrap();
        let mut cmd = Command::new(llama_server_bin());
        cmd.arg("-m").arg(model);
        if let Some(lora) = lora {
            cmd.arg("--lora").arg(lora).arg("--lora-init-without-apply");
        }
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["-c", "4096", "-np", "1", "-t", "1", "--no-webui"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(key) = api_key {
            cmd.args(["--api-key", key]);
        }
        let child = cmd.spawn().unwrap();
        let server = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        server.wait_healthy(port);
        server
    }

    /// Polls /health until the model is loaded (bounded: the tiny model loads in well under a second).
    fn wait_healthy(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                let _ =
                    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut reply = String::new();
                let _ = s.read_to_string(&mut reply);
                if reply.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("llama-server on port {port} did not become healthy");
    }

    fn options(&self) -> RemoteOptions {
        let mut o = RemoteOptions::new(&self.url);
        o.retries = 1;
        o
    }

    fn connect(&self) -> RemoteEngine {
        RemoteEngine::start(self.options()).unwrap()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn run(engine: &dyn Backend, sampling: SamplingConfig) -> (String, Finished, Vec<&'static str>) {
    let mut events = engine.generate(GenerateRequest::new(CHATML_PROMPT.to_string(), sampling));
    let mut text = String::new();
    let mut kinds = Vec::new();
    loop {
        match events
            .blocking_next()
            .expect("the stream ended without Finished")
        {
            Event::Started(_) => kinds.push("started"),
            Event::Text(t) => {
                kinds.push("text");
                text.push_str(&t);
            }
            Event::Stats(_) => {}
            Event::Finished(f) => return (text, f, kinds),
            Event::Failed(e) => panic!("{e}"),
        }
    }
}

/// Waits for the first text, so a cancellation lands mid-reply.
fn until_text(events: &mut EventStream) -> String {
    loop {
        match events.blocking_next().unwrap() {
            Event::Text(t) => return t,
            Event::Finished(f) => panic!("finished before any text: {:?}", f.reason),
            Event::Failed(e) => panic!("{e}"),
            _ => {}
        }
    }
}

#[test]
fn streams_started_text_finished_with_token_ids_and_provenance() {
    let server = Server::start(None);
    let engine = server.connect();
    let info = engine.model_info();
    assert_eq!(info.n_ctx, 4096);
    assert_eq!(info.file_type, "llama-server");
    let (text, done, kinds) = run(&engine, sampling(3, 24));
    assert_eq!(kinds.first(), Some(&"started"));
    assert!(kinds[1..].iter().all(|k| *k == "text"));
    assert!(!text.is_empty());
    assert!(matches!(
        done.reason,
        FinishReason::MaxTokens | FinishReason::EndOfGeneration
    ));
    assert_eq!(done.stats.generated_tokens, done.tokens.len());
    assert!(done.tokens.len() <= 24);
    // The prompt is hashed exactly as the local engine hashes it.
    let local = LocalEngine::start(common::options(&tiny().model)).unwrap();
    let ids = local.tokenize(CHATML_PROMPT.to_string()).wait().unwrap();
    let remote_ids = engine.tokenize(CHATML_PROMPT.to_string()).wait().unwrap();
    assert_eq!(ids, remote_ids);
    assert_eq!(done.provenance.seed, 3);
    assert_eq!(done.provenance.model, info.name);
    assert_eq!(
        done.provenance.prompt_tokens_sha256,
        her_engine::local::tokens_sha256(ids.iter().copied())
    );
}

#[test]
fn the_same_seed_writes_the_same_reply() {
    let server = Server::start(None);
    let engine = server.connect();
    let mut s = sampling(11, 32);
    s.temperature = 1.0;
    let (a, fa, _) = run(&engine, s.clone());
    let (b, fb, _) = run(&engine, s.clone());
    assert_eq!(a, b);
    assert_eq!(fa.tokens, fb.tokens);
    // The seed reaches the server: another seed gives other tokens.
    s.seed = 12;
    let (_, fc, _) = run(&engine, s);
    assert_ne!(fa.tokens, fc.tokens);
}

#[test]
fn a_stop_string_ends_the_reply_before_it() {
    let server = Server::start(None);
    let engine = server.connect();
    let (full, _, _) = run(&engine, sampling(5, 48));
    // A stop string taken from the middle of the reply this seed writes.
    let chars: Vec<(usize, char)> = full.char_indices().collect();
    assert!(
        chars.len() >= 8,
        "reply too short to pick a stop string: {full:?}"
    );
    let (from, _) = chars[chars.len() / 2];
    let to = chars
        .get(chars.len() / 2 + 2)
        .map_or(full.len(), |(i, _)| *i);
    let stop = full[from..to].to_string();
    let expected = &full[..full.find(&stop).unwrap()];
    let mut s = sampling(5, 48);
    s.stop = vec![stop.clone()];
    let (text, done, _) = run(&engine, s);
    assert_eq!(text, expected);
    assert_eq!(done.reason, FinishReason::StopString);
    assert_eq!(done.stop_string.as_deref(), Some(stop.as_str()));
}

#[test]
fn cancel_and_drop_stop_a_reply_and_the_next_one_runs() {
    let server = Server::start(None);
    let engine = server.connect();
    let mut events = engine.generate(GenerateRequest::new(
        CHATML_PROMPT.to_string(),
        sampling(5, 100_000),
    ));
    until_text(&mut events);
    engine.cancel();
    let done = loop {
        match events.blocking_next().unwrap() {
            Event::Finished(f) => break f,
            Event::Failed(e) => panic!("{e}"),
            _ => {}
        }
    };
    assert_eq!(done.reason, FinishReason::Cancelled);
    // Dropping a stream cancels too; the server's single slot is free again,
    // or this request would wait behind thousands of tokens.
    let mut dropped = engine.generate(GenerateRequest::new(
        CHATML_PROMPT.to_string(),
        sampling(5, 100_000),
    ));
    until_text(&mut dropped);
    drop(dropped);
    let (_, next, _) = run(&engine, sampling(5, 4));
    assert_ne!(next.reason, FinishReason::Cancelled);
}

const COMPLETION: &str = "She smiled at him. Elizabeth Bennet: (curtsies) Good evening, sir.";

fn assert_close(remote: &[her_engine::TokenLogprob], local: &[her_engine::TokenLogprob]) -> f64 {
    assert_eq!(remote.len(), local.len());
    let mut max = 0.0f64;
    for (r, l) in remote.iter().zip(local) {
        assert_eq!(r.token, l.token);
        max = max.max((r.logprob - l.logprob).abs());
    }
    assert!(max < 2e-3, "remote and local log-probs differ by {max}");
    max
}

#[test]
fn scores_match_the_local_engine_with_and_without_the_adapter() {
    let t = tiny();
    let server = Server::start(None);
    let remote = server.connect();
    let local = LocalEngine::start(common::options(&t.model)).unwrap();
    let score = |e: &dyn Backend| {
        e.score(CHATML_PROMPT.into(), COMPLETION.into())
            .wait()
            .unwrap()
    };

    let base = score(&remote);
    assert!(!base.is_empty());
    let diff = assert_close(&base, &score(&local));
    eprintln!(
        "base: {} tokens, max |remote - local| = {diff:.2e}",
        base.len()
    );

    // The tiny LoRA changes the log-probs on the server as it does locally.
    let info = remote.load_adapter(t.lora.clone(), 1.0).wait().unwrap();
    assert_eq!(info.scale, 1.0);
    assert_eq!(info.sha256.len(), 64);
    local.load_adapter(t.lora.clone(), 1.0).wait().unwrap();
    let adapted = score(&remote);
    let moved = base
        .iter()
        .zip(&adapted)
        .map(|(a, b)| (a.logprob - b.logprob).abs())
        .fold(0.0, f64::max);
    assert!(
        moved > 1e-3,
        "the adapter did not change the log-probs ({moved})"
    );
    let diff = assert_close(&adapted, &score(&local));
    eprintln!("adapter: max |remote - local| = {diff:.2e}, moved by up to {moved:.3}");
    // Generation carries the adapter in its provenance.
    let (_, done, _) = run(&remote, sampling(1, 4));
    assert_eq!(done.provenance.adapter.as_ref().map(|a| a.scale), Some(1.0));

    // Clearing restores the base model.
    remote.clear_adapter().wait().unwrap();
    assert_close(&score(&remote), &base);

    // An adapter the server was not started with: a clear error.
    let err = remote
        .load_adapter(PathBuf::from("/nowhere/other.gguf"), 1.0)
        .wait()
        .unwrap_err();
    assert!(matches!(err, EngineError::Adapter { .. }), "{err}");
    assert!(err.to_string().contains("--lora"), "{err}");
}

#[test]
fn a_server_killed_mid_reply_keeps_the_partial_text_marked_incomplete() {
    use her_core::session::load_session;
    use her_studio::tui::action::Action;
    use her_studio::tui::effect::Effect;
    use her_studio::tui::message::Msg;
    use her_studio::tui::update::{on_engine, update};

    let mut server = Server::start(None);
    let engine = server.connect();
    let dir = tempfile::tempdir().unwrap();
    let (mut app, mut file) = chat_app(dir.path());
    for c in "Will you dance?".chars() {
        update(&mut app, Action::Insert(c));
    }
    let effects = update(&mut app, Action::Submit);
    let [Effect::Append { .. }, Effect::Generate(request)] = effects.as_slice() else {
        panic!("expected the line saved and one generation, got {effects:?}");
    };
    let mut request = request.clone();
    request.sampling = sampling(5, 100_000);
    let mut events = engine.generate(request);
    // Play the TUI loop's part with the real events.
    let mut partial = String::new();
    loop {
        let event = events.blocking_next().unwrap();
        let first_text = matches!(&event, Event::Text(_));
        if let Event::Text(t) = &event {
            partial.push_str(t);
        }
        on_engine(&mut app, event);
        if first_text {
            break;
        }
    }
    server.kill();
    let failure = loop {
        let event = events.blocking_next().unwrap();
        match &event {
            Event::Text(t) => partial.push_str(t),
            Event::Failed(e) => break (e.clone(), event),
            Event::Finished(f) => panic!("finished although the server was killed: {:?}", f.reason),
            _ => {}
        }
        on_engine(&mut app, event);
    };
    assert!(
        matches!(
            failure.0,
            EngineError::Remote(RemoteError::ConnectionLost { .. })
        ),
        "{}",
        failure.0
    );
    on_engine(&mut app, failure.1);
    assert!(app.streaming.is_none());
    // The runtime's part: what the chat queued goes to the session file.
    let chat = app.chat.as_ref().unwrap();
    let queued: Vec<_> = chat.writes.queued().cloned().collect();
    let written =
        her_studio::tui::runtime::append::append(Some(&mut file), chat.path.clone(), &queued);
    assert!(matches!(written, Msg::Appended { .. }), "{written:?}");
    let (session, issues) = load_session(&app.chat.as_ref().unwrap().path).unwrap();
    assert!(issues.is_empty(), "{issues:?}");
    let tree = session.tree();
    let last = tree.node(*tree.active_path().last().unwrap()).unwrap();
    let message = &last.message;
    assert!(message.meta.incomplete);
    assert_eq!(
        message.text,
        format!("{}{partial}", her_core::format::PREFILL)
    );
}

/// The chat screen on a new session file, and the file (the runtime's
/// part, which the test plays).
fn chat_app(dir: &Path) -> (her_studio::tui::app::App, her_core::session::SessionFile) {
    use her_core::character::load_character;
    use her_core::session::SessionHeader;
    use her_studio::config::{Config, PromptVariant};
    use her_studio::tui::keymap::Keymap;
    use her_studio::tui::model::PaneModes;
    use her_studio::tui::screens::chat::session::{ChatSession, Players};
    use her_studio::tui::theme::Theme;
    let root = common::repo_root();
    let character = load_character(&root.join("characters/elizabeth-bennet.toml")).unwrap();
    let mut header = SessionHeader::new("Elizabeth Bennet — remote test");
    header.character = Some(character.name.clone());
    let players = Players {
        character: character.clone(),
        cast: vec![character],
        scene: None,
        user_name: "Mr. Darcy".into(),
        variant: PromptVariant::Training,
        sampling: Config::default().sampling,
    };
    let (file, session) =
        her_engine::dialogue::start_session(dir, header, Some(&players.character)).unwrap();
    let chat = ChatSession::new(file.path().to_path_buf(), session, players);
    let mut app =
        her_studio::tui::app::App::new(Keymap::default(), Theme::dark(), PaneModes::default());
    app.chat = Some(chat);
    app.screen = her_studio::tui::app::Screen::Chat;
    app.character_name = "Elizabeth Bennet".into();
    her_studio::tui::screens::chat::update::refresh(&mut app);
    (app, file)
}

#[test]
fn a_wrong_api_key_is_refused_with_a_clear_error() {
    let server = Server::start(Some("right-key"));
    let mut options = server.options();
    options.api_key = Some(ApiKey::new("wrong-key"));
    options.api_key_env = "MY_TEST_KEY".into();
    let err = RemoteEngine::start(options).err().unwrap();
    let EngineError::Remote(RemoteError::Unauthorized { status, .. }) = &err else {
        panic!("expected Unauthorized, got {err}");
    };
    assert_eq!(*status, 401);
    let message = err.to_string();
    assert!(message.contains("MY_TEST_KEY"), "{message}");
    assert!(
        !message.contains("wrong-key") && !message.contains("right-key"),
        "{message}"
    );
    // The right key works.
    let mut options = server.options();
    options.api_key = Some(ApiKey::new("right-key"));
    let engine = RemoteEngine::start(options).unwrap();
    let (_, done, _) = run(&engine, sampling(2, 4));
    let provenance = serde_json::to_string(&done.provenance).unwrap();
    assert!(!provenance.contains("right-key"));
}

#[test]
fn a_wrong_model_name_or_path_is_a_clear_error() {
    let server = Server::start(None);
    let mut options = server.options();
    options.model = "no-such-model".into();
    let err = RemoteEngine::start(options).err().unwrap();
    assert!(
        matches!(&err, EngineError::Remote(RemoteError::ModelNotServed { model, .. }) if model == "no-such-model"),
        "{err}"
    );
    // A base URL with a wrong path: HTTP 404.
    let options = RemoteOptions::new(format!("{}/nope", server.url));
    let err = RemoteEngine::start(options).err().unwrap();
    assert!(
        matches!(&err, EngineError::Remote(RemoteError::NotFound { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("backend.base_url"), "{err}");
}

#[test]
fn nothing_listening_and_a_non_openai_server_are_clear_errors() {
    // Nothing listening: connection refused after the retries.
    let mut options = RemoteOptions::new(format!("http://127.0.0.1:{}", free_port()));
    options.retries = 2;
    let err = RemoteEngine::start(options).err().unwrap();
    assert!(
        matches!(&err, EngineError::Remote(RemoteError::Unreachable { .. })),
        "{err}"
    );

    // A web server that answers every request with an HTML page.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let body = "<!DOCTYPE html><html><body><h1>Welcome to nginx!</h1></body></html>";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let err = RemoteEngine::start(RemoteOptions::new(format!("http://127.0.0.1:{port}")))
        .err()
        .unwrap();
    assert!(
        matches!(&err, EngineError::Remote(RemoteError::NotOpenAi { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("HTML page"), "{err}");
}

/// A stand-in server (for this one path only): HTTP 503 for the first
/// `busy` requests, then a one-model list; anything else is 404.
fn flaky_server(busy: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().take(busy + 8).enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let len = stream.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..len]);
            let (status, body) = if n < busy {
                (
                    "503 Service Unavailable",
                    r#"{"error":{"message":"loading model"}}"#,
                )
            } else if request.starts_with("GET /v1/models ") {
                ("200 OK", r#"{"object":"list","data":[{"id":"m"}]}"#)
            } else {
                ("404 Not Found", r#"{"detail":"Not Found"}"#)
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nRetry-After: 0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://127.0.0.1:{port}")
}

#[test]
fn a_busy_server_is_retried_then_reported() {
    let mut options = RemoteOptions::new(flaky_server(2));
    options.retries = 3;
    let engine = RemoteEngine::start(options).unwrap();
    assert_eq!(engine.model_info().name, "m");
    assert_eq!(engine.model_info().file_type, "openai-compatible");
    // No /tokenize here: a clear "not offered", not a crash.
    let err = engine.tokenize("a".into()).wait().unwrap_err();
    assert!(
        matches!(&err, EngineError::Remote(RemoteError::Unsupported { .. })),
        "{err}"
    );

    let mut options = RemoteOptions::new(flaky_server(5));
    options.retries = 1;
    let err = RemoteEngine::start(options).err().unwrap();
    assert!(
        matches!(
            &err,
            EngineError::Remote(RemoteError::Server { status: 503, .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("loading model"), "{err}");
}

/// Reads one HTTP request: its head and a body of Content-Length bytes.
fn read_request(stream: &mut TcpStream) -> String {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = stream.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                break;
            }
        }
    }
    String::from_utf8_lossy(&data).into_owned()
}

/// A stand-in for a strict OpenAI-compatible server: one model, and
/// completions that refuse any field OpenAI's API lacks (as OpenAI itself
/// does: "Unrecognized request argument supplied: top_k"). Returns its URL
/// and the completion bodies it was sent.
fn strict_server() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let bodies = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut stream) = stream else { continue };
            let request = read_request(&mut stream);
            let body = request.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            let (status, kind, reply) = if request.starts_with("GET /v1/models ") {
                (
                    "200 OK",
                    "application/json",
                    r#"{"object":"list","data":[{"id":"m"}]}"#.to_string(),
                )
            } else if request.starts_with("POST /v1/completions ") {
                bodies.lock().unwrap().push(body.to_string());
                if body.contains("\"top_k\"") {
                    (
                        "400 Bad Request",
                        "application/json",
                        r#"{"error":{"message":"Unrecognized request argument supplied: top_k"}}"#
                            .to_string(),
                    )
                } else {
                    let chunk = |text: &str, finish: &str| {
                        format!(
                            "data: {}\n\n",
                            serde_json::json!({"choices": [{"index": 0, "text": text, "finish_reason": if finish.is_empty() { serde_json::Value::Null } else { finish.into() }}]})
                        )
                    };
                    (
                        "200 OK",
                        "text/event-stream",
                        format!(
                            "{}{}data: [DONE]\n\n",
                            chunk("Hello", ""),
                            chunk("!", "stop")
                        ),
                    )
                }
            } else {
                (
                    "404 Not Found",
                    "application/json",
                    r#"{"detail":"Not Found"}"#.to_string(),
                )
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    (format!("http://127.0.0.1:{port}"), seen)
}

/// A server that refuses a sampler field still gives the reply: the request
/// goes again with OpenAI's fields only, and the reply's provenance names
/// every setting that was not applied (the TUI's status bar shows them).
#[test]
fn a_server_that_refuses_a_sampler_field_still_replies_and_says_what_was_not_applied() {
    let (url, bodies) = strict_server();
    let engine = RemoteEngine::start(RemoteOptions::new(url)).unwrap();
    let tuned = SamplingConfig {
        top_k: 20,
        dry_multiplier: 0.8,
        banned_phrases: vec!["shivers".into()],
        ..sampling(1, 8)
    };
    let (text, finished, _) = run(&engine, tuned);
    assert_eq!(text, "Hello!");
    let unapplied = &finished.provenance.unapplied;
    for setting in [
        "sampling.banned_phrases",
        "sampling.dry_multiplier",
        "sampling.top_k",
    ] {
        assert!(unapplied.iter().any(|u| u == setting), "{unapplied:?}");
    }
    let bodies = bodies.lock().unwrap();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert!(bodies[0].contains("\"top_k\""));
    let plain: serde_json::Value = serde_json::from_str(&bodies[1]).unwrap();
    let mut keys: Vec<&str> = plain
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "max_tokens",
            "model",
            "prompt",
            "seed",
            "stop",
            "stream",
            "temperature",
            "top_p"
        ]
    );
}

/// The sampler chain reaches llama-server under its field names and takes
/// effect there: a `-inf` logit bias on the token greedy decoding picks first
/// bans it; DRY, XTC, top-nσ, typical-p and an order are accepted (only the
/// banned phrases, which no server has, are reported as not applied); and
/// the same chain and seed write the same reply twice.
#[test]
fn the_sampler_chain_takes_effect_on_llama_server() {
    let server = Server::start(None);
    let engine = server.connect();
    let mut greedy = sampling(4, 6);
    greedy.temperature = 0.0;
    let (_, plain, _) = run(&engine, greedy.clone());
    let first = plain.tokens[0];
    let mut banned = greedy.clone();
    banned.logit_bias = vec![her_core::generation::LogitBias {
        token: Some(u32::try_from(first).unwrap()),
        text: None,
        bias: f32::NEG_INFINITY,
    }];
    let (_, without, _) = run(&engine, banned);
    assert_ne!(without.tokens[0], first, "{:?}", without.tokens);
    assert!(without.provenance.unapplied.is_empty());

    let mut chain = sampling(9, 16);
    chain.temperature = 1.0;
    chain.dry_multiplier = 0.8;
    chain.xtc_probability = 0.5;
    chain.top_n_sigma = 1.5;
    chain.typical_p = 0.9;
    chain.order = ["dry", "top_n_sigma", "typical_p", "xtc", "temperature"]
        .map(str::to_owned)
        .to_vec();
    chain.banned_phrases = vec!["never written".into()];
    let (a, done, _) = run(&engine, chain.clone());
    assert_eq!(done.provenance.unapplied, ["sampling.banned_phrases"]);
    let (b, _, _) = run(&engine, chain);
    assert_eq!(a, b);
}

fn greedy_with_candidates(engine: &dyn Backend, stop: Vec<String>) -> (String, Finished) {
    let mut s = sampling(1, 32);
    s.temperature = 0.0;
    s.stop = stop;
    let mut request = GenerateRequest::new(CHATML_PROMPT.to_string(), s);
    request.candidates = 5;
    engine.generate(request).collect_blocking().unwrap()
}

fn reply_bytes(done: &Finished) -> Vec<u8> {
    done.choices.iter().flat_map(|c| c.bytes.clone()).collect()
}

/// llama-server's token probabilities (`n_probs`) come back as the local
/// engine's do: one choice per token whose bytes add up to the reply, the
/// drawn token most likely under greedy decoding, and the same tokens,
/// pieces and probabilities as the local engine computes on SmolLM2 (within
/// the cross-build tolerance of the score test). Text the server held back
/// while it could have become a stop string, then sent with a later token,
/// is given back to the tokens it came from: a stop string that starts like
/// the reply changes nothing.
#[test]
fn token_probabilities_from_llama_server_agree_with_the_local_engine() {
    let model = common::smollm2();
    let server = Server::serve(&model, None, None);
    let remote = server.connect();
    let (text, done) = greedy_with_candidates(&remote, Vec::new());
    assert!(done.choices.len() >= 8, "{} choices", done.choices.len());
    assert_eq!(reply_bytes(&done), text.as_bytes());
    for choice in &done.choices {
        assert_eq!(choice.candidates.len(), 5, "{choice:?}");
        assert_eq!(choice.candidates[0].token, choice.token, "{choice:?}");
        assert!((choice.candidates[0].probability - choice.probability).abs() < 1e-6);
    }

    let local = LocalEngine::start(common::options(&model)).unwrap();
    let (_, here) = greedy_with_candidates(&local, Vec::new());
    let mut compared = 0;
    for (r, l) in done.choices.iter().zip(&here.choices) {
        if r.token != l.token {
            // Two builds may only part ways where the top two are a near tie.
            let gap = l.candidates[0].probability - l.candidates[1].probability;
            assert!(
                gap < 2e-3,
                "greedy parted at a gap of {gap}: {r:?} vs {l:?}"
            );
            break;
        }
        assert_eq!(r.bytes, l.bytes);
        assert_same_candidates(r, l, 2e-3);
        compared += 1;
    }
    assert!(compared >= 8, "only {compared} tokens compared");
    eprintln!("{compared} tokens agree with the local engine");

    // A stop string that starts with a token of the reply (and never
    // completes) makes the server hold that token's text back and send it
    // with the next one; the choices come out the same.
    let j = (2..done.choices.len())
        .find(|&j| std::str::from_utf8(&done.choices[j].bytes).is_ok_and(|p| !p.is_empty()))
        .unwrap();
    let stop = format!(
        "{}\u{1}",
        std::str::from_utf8(&done.choices[j].bytes).unwrap()
    );
    let (held_text, held) = greedy_with_candidates(&remote, vec![stop]);
    assert_eq!(held_text, text);
    assert_eq!(held.choices.len(), done.choices.len());
    for (h, d) in held.choices.iter().zip(&done.choices) {
        assert_eq!((h.token, &h.bytes), (d.token, &d.bytes));
        // The prompt comes from the server's cache this time: rounding only.
        assert_same_candidates(h, d, 1e-4);
    }
}

/// Rank by rank, the same probabilities within `tolerance` (two tokens
/// may swap ranks only inside it), and the same piece for the same token
/// (llama-server, started without `--special`, writes a control token such
/// as `<|im_end|>` as nothing; the local engine spells it).
fn assert_same_candidates(
    a: &her_engine::TokenChoice,
    b: &her_engine::TokenChoice,
    tolerance: f64,
) {
    assert!(
        (a.probability - b.probability).abs() < tolerance,
        "{a:?} vs {b:?}"
    );
    assert_eq!(a.candidates.len(), b.candidates.len());
    for (x, y) in a.candidates.iter().zip(&b.candidates) {
        assert!(
            (x.probability - y.probability).abs() < tolerance,
            "{x:?} vs {y:?}"
        );
        if x.token == y.token {
            let control = x.bytes.is_empty() || y.bytes.is_empty();
            assert!(x.bytes == y.bytes || control, "{x:?} vs {y:?}");
        }
    }
}
