//! `her chat --headless`: user lines on stdin, streamed replies on stdout.
//!
//! Each input line is one user turn; each reply ends with a newline, so the
//! output can be read line by line by another program (newlines inside a
//! reply are kept as they are). Without --headless a prompt and the greeting
//! are shown for people typing at a terminal.

use std::io::Write;

use tokio::io::{AsyncBufReadExt, BufReader};

use super::Conversation;
use crate::engine::{Backend, EngineError};

#[derive(Debug, Clone, Copy, Default)]
pub struct HeadlessOptions {
    /// Show the greeting and a `>` prompt (interactive use).
    pub interactive: bool,
    /// Print statistics to stderr after each reply.
    pub stats: bool,
}

pub async fn run_headless(
    backend: &dyn Backend,
    conversation: &mut Conversation,
    options: HeadlessOptions,
) -> Result<(), EngineError> {
    let mut stdout = std::io::stdout();
    if options.interactive {
        if let Some(first) = conversation.transcript.first() {
            println!("{}\n", first.text);
        }
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        if options.interactive {
            print!("{}> ", conversation.user_name);
            let _ = stdout.flush();
        }
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!("stdin: {e}");
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let outcome = conversation
            .send(backend, &line, |piece| {
                print!("{piece}");
                let _ = std::io::stdout().flush();
            })
            .await?;
        println!();
        if options.stats {
            let s = &outcome.finished.stats;
            let dropped = outcome.started.map_or(0, |st| st.dropped_turns);
            eprintln!(
                "[{} tokens, {:.1} tok/s, prompt {} ({} evaluated), ttft {:.0} ms, context {}/{}, dropped turns {}, {}]",
                s.generated_tokens,
                s.tokens_per_second,
                s.prompt_tokens,
                s.evaluated_prompt_tokens,
                s.time_to_first_token_ms,
                s.context_used,
                backend.model_info().n_ctx,
                dropped,
                outcome.finished.reason,
            );
        }
    }
    Ok(())
}
