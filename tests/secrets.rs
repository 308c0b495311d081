//! Secrets never leave the process: a planted API key and URL password,
//! against a stand-in server that echoes the request headers back in its
//! error bodies, are searched for in every channel `her` writes to: stdout,
//! stderr, the log file (at trace level) and `her doctor`'s report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const KEY: &str = "planted-key-7d1e9c0b5a";
const PASSWORD: &str = "planted-pw-4f2a";

/// How the stand-in server answers every request: (status line, content
/// type, body with `{headers}` replaced by the request's headers).
struct Echo {
    status: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// A server answering each request with its own headers in the body.
fn echo_server(echo: Echo) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(32) {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 8192];
            let len = stream.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..len]);
            let head = request.split("\r\n\r\n").next().unwrap_or_default();
            // The credentials first (a shortened body still has them), as
            // one JSON-safe line.
            let mut lines: Vec<&str> = head.lines().skip(1).collect();
            lines.sort_by_key(|l| !l.to_ascii_lowercase().starts_with("authorization"));
            let headers = lines.join(" | ").replace('\\', "/").replace('"', "'");
            let body = echo.body.replace("{headers}", &headers);
            let _ = write!(
                stream,
                "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                echo.status,
                echo.content_type,
                body.len()
            );
        }
    });
    port
}

/// `her` pointed at the server with the planted secrets, logging everything.
fn her(studio: &Path, port: u16, args: &[&str]) -> Output {
    Command::new(common::her_bin())
        .env("HOME", studio)
        .env("HER_LOG", "trace")
        .env("PLANTED_KEY", KEY)
        .arg("--studio")
        .arg(common::repo_root())
        .arg("--set")
        .arg(format!("log.file={}", studio.join("her.log").display()))
        .args(["--set", "backend.kind=openai", "--set", "backend.retries=0"])
        .args(["--set", "backend.api_key_env=PLANTED_KEY"])
        .arg("--set")
        .arg(format!(
            "backend.base_url=http://alice:{PASSWORD}@127.0.0.1:{port}"
        ))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Every form of the secrets that could leak.
fn leaks(text: &str) -> Vec<&'static str> {
    use base64::Engine as _;
    let basic: &'static str = Box::leak(
        base64::engine::general_purpose::STANDARD
            .encode(format!("alice:{PASSWORD}"))
            .into_boxed_str(),
    );
    [KEY, PASSWORD, basic]
        .into_iter()
        .filter(|s| text.contains(s))
        .collect()
}

fn assert_clean(what: &str, text: &str) {
    let found = leaks(text);
    assert!(found.is_empty(), "{what} shows {found:?}:\n{text}");
}

fn check_every_channel(echo: Echo, expect_in_error: &str) {
    let port = echo_server(echo);
    let home = tempfile::tempdir().unwrap();
    let chat = her(home.path(), port, &["chat", "--headless", "--no-save"]);
    let err = String::from_utf8_lossy(&chat.stderr).into_owned();
    assert!(!chat.status.success(), "{err}");
    // The server's body is shown (trimmed, masked), not swallowed.
    assert!(err.contains(expect_in_error), "{err}");
    assert!(err.contains("***"), "the echoed credentials, masked: {err}");
    assert_clean("chat stdout", &String::from_utf8_lossy(&chat.stdout));
    assert_clean("chat stderr", &err);
    let doctor = her(home.path(), port, &["doctor"]);
    let report = String::from_utf8_lossy(&doctor.stdout).into_owned();
    assert!(report.contains("backend.base_url = "), "{report}");
    assert!(report.contains("PROBLEM"), "{report}");
    assert_clean("doctor stdout", &report);
    assert_clean("doctor stderr", &String::from_utf8_lossy(&doctor.stderr));
    let log = std::fs::read_to_string(home.path().join("her.log")).unwrap();
    assert!(log.contains("TRACE") || log.contains("DEBUG") || log.contains("INFO"));
    assert_clean("the log file", &log);
}

#[test]
fn an_error_body_echoing_the_headers_is_masked_everywhere() {
    check_every_channel(
        Echo {
            status: "401 Unauthorized",
            content_type: "application/json",
            body: r#"{"error":{"message":"bad credentials in {headers}","type":"auth"}}"#,
        },
        "HTTP 401",
    );
}

#[test]
fn a_server_failure_or_a_web_page_echoing_the_headers_is_masked_everywhere() {
    check_every_channel(
        Echo {
            status: "500 Internal Server Error",
            content_type: "text/plain",
            body: "{headers} made it crash",
        },
        "HTTP 500",
    );
    check_every_channel(
        Echo {
            status: "200 OK",
            content_type: "text/plain",
            body: "{headers} hello",
        },
        "does not answer like an OpenAI-compatible server",
    );
}

#[test]
fn the_echo_server_does_echo_the_secrets() {
    // Guards the tests above: the secrets really reach the server's body.
    let port = echo_server(Echo {
        status: "200 OK",
        content_type: "text/plain",
        body: "{headers}",
    });
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    assert_eq!(leaks(&reply), [KEY]);
}
