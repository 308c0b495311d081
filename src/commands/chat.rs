//! `her chat --headless`: user lines on stdin, streamed replies on stdout.
//!
//! Each input line is one user turn; each reply ends with a newline, so the
//! output can be read line by line by another program (newlines inside a
//! reply are kept as they are). Without --headless a prompt and the greeting
//! are shown for people typing at a terminal.
//!
//! Every turn is saved to a session file (the TUI's format) as it happens,
//! unless saving is off: the user's line before the reply is asked for, the
//! reply when it ends. The file's path goes to stderr once, when it is created.

use std::io::Write;
use std::path::PathBuf;

use tokio::io::{AsyncBufReadExt, BufReader};

use her_core::character::Character;
use her_core::prompt::Line;
use her_core::session::{Message, Role, SessionError, SessionHeader};
use her_core::story::events::{REPLY_CONTEXT, ReplyContextEvent};
use her_core::story::{Prepared, Shelf, StoryConfig, StoryInput, StoryLog, prepare, session_seed};
use her_engine::dialogue::{
    Conversation, Recorder, SceneConversation, reply_message, role_of_speaker, start_session,
};
use her_engine::{Backend, EngineError};

/// What stops a line chat.
#[derive(Debug, thiserror::Error)]
pub enum HeadlessError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(
        "the chat cannot be saved (make the sessions folder writable, set paths.sessions, or chat with --no-save)"
    )]
    Save(#[from] SessionError),
}

/// Where a line chat keeps its turns.
pub enum Saving {
    /// Nothing is written (`--no-save`).
    Off,
    /// A new session, created in `dir` at the first user line; `greeter`'s
    /// greetings open it (None for a scene).
    New {
        dir: PathBuf,
        header: Box<SessionHeader>,
        greeter: Option<Box<Character>>,
    },
    /// A session being appended to (`--session FILE`, or one created here).
    Open(Box<Recorder>),
}

impl Saving {
    /// Logs what the prompt of the reply just recorded added, when it added
    /// anything (as the TUI does).
    fn record_context(&mut self, prepared: &Prepared) -> Result<(), SessionError> {
        let Self::Open(recorder) = self else {
            return Ok(());
        };
        let timed = prepared.timed_events();
        if prepared.additions.is_empty() && timed.is_empty() {
            return Ok(());
        }
        let Some(key) = recorder.active_keys().pop() else {
            return Ok(());
        };
        recorder.append_other(&ReplyContextEvent {
            kind: REPLY_CONTEXT.into(),
            key,
            additions: prepared.additions.clone(),
            timed,
        })
    }

    /// Appends one message, creating the session file first if needed.
    fn record(&mut self, message: Message) -> Result<(), SessionError> {
        if let Self::New {
            dir,
            header,
            greeter,
        } = self
        {
            let (file, session) =
                start_session(dir, SessionHeader::clone(header), greeter.as_deref())?;
            eprintln!("session: {}", file.path().display());
            *self = Self::Open(Box::new(Recorder::new(file, session)));
        }
        match self {
            Self::Open(recorder) => recorder.append(message),
            _ => Ok(()),
        }
    }
}

/// Lore, memory and the author's note of a line chat: each prompt gets
/// them as the TUI adds them (read from the session's log when the chat is
/// saved), and each reply is logged with what its prompt added, so a
/// resumed chat, the TUI and `her prompt` see the same timed effects.
pub struct LineStory {
    pub story: StoryConfig,
    pub books: Shelf,
}

impl LineStory {
    /// What the story adds to the reply to `line`, which `saving` has
    /// recorded already.
    fn prepare(&self, conversation: &Conversation, saving: &Saving, line: &str) -> Prepared {
        let mut transcript = conversation.transcript.clone();
        transcript.push(Line::new(conversation.user_name.clone(), line));
        let (log, keys, seed) = match saving {
            Saving::Open(recorder) => (
                StoryLog::read(recorder.session()).0,
                recorder.active_keys(),
                session_seed(recorder.session().id()),
            ),
            _ => (StoryLog::default(), Vec::new(), 0),
        };
        // Unsaved (or out of step): keys of this run only.
        let path = if keys.len() == transcript.len() {
            keys
        } else {
            (0..transcript.len()).map(|i| format!("line-{i}")).collect()
        };
        prepare(
            &self.story,
            &log,
            &self.books,
            &StoryInput {
                character: &conversation.character,
                scene_lore: &[],
                user_name: &conversation.user_name,
                transcript: &transcript,
                path: &path,
                seed,
            },
        )
    }
}

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
    story: Option<&LineStory>,
    options: HeadlessOptions,
    saving: &mut Saving,
) -> Result<(), HeadlessError> {
    let mut warned = std::collections::BTreeSet::new();
    let mut stdout = std::io::stdout();
    if options.interactive {
        // The greeting, or where a resumed story left off.
        if let Some(last) = conversation.transcript.last() {
            println!("{}\n", last.text);
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
        let user = Message::new(conversation.user_name.clone(), Role::User, line.as_str());
        saving.record(user)?;
        let prepared = story.map(|story| story.prepare(conversation, saving, &line));
        if let Some(prepared) = &prepared {
            for warning in &prepared.warnings {
                if warned.insert(warning.clone()) {
                    eprintln!("warning: {warning}");
                }
            }
        }
        conversation.additions = prepared.as_ref().map(|p| p.additions.clone());
        let outcome = conversation.send(backend, &line, print_piece).await?;
        end_turn(backend, &outcome, options);
        let unapplied = &outcome.finished.provenance.unapplied;
        if !unapplied.is_empty() && warned.insert(unapplied.join(", ")) {
            eprintln!(
                "warning: the server did not apply {}: replies are sampled without them",
                unapplied.join(", ")
            );
        }
        let speaker = conversation.character.name.clone();
        saving.record(reply_message(
            &speaker,
            Role::Character,
            &outcome.raw(),
            Some(&outcome.finished),
        ))?;
        if let Some(prepared) = &prepared {
            saving.record_context(prepared)?;
        }
    }
    Ok(())
}

/// Headless scene play. Each input line is one of:
/// - `@Name` — that character (or `@Environment`) speaks next;
/// - `/next` — the scene's policy picks who speaks;
/// - anything else — a line from the user's persona, after which the policy
///   picks who answers.
///
/// Every AI turn is printed as `Name: reply` on its own line.
pub async fn run_headless_scene(
    backend: &dyn Backend,
    scene: &mut SceneConversation,
    options: HeadlessOptions,
    saving: &mut Saving,
) -> Result<(), HeadlessError> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = std::io::stdout();
    if options.interactive {
        println!(
            "{} — speakers: {}. Type a line, @Name to pick a speaker, /next to let the scene run.\n",
            scene.scene.title,
            scene.speakers().join(", ")
        );
    }
    loop {
        if options.interactive {
            print!("> ");
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
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let speaker = if let Some(name) = line.strip_prefix('@') {
            let wanted = name.trim().to_lowercase();
            match scene
                .speakers()
                .into_iter()
                .find(|s| s.to_lowercase().starts_with(&wanted))
            {
                Some(s) => s,
                None => {
                    eprintln!(
                        "no speaker '{}' in this scene; speakers: {}",
                        name.trim(),
                        scene.speakers().join(", ")
                    );
                    continue;
                }
            }
        } else {
            if line != "/next" {
                scene.add_user_line(line);
                if let Some(added) = scene.transcript.last() {
                    saving.record(Message::new(added.speaker.clone(), Role::User, line))?;
                }
            }
            scene.choose_next(backend).await?
        };
        print!("{speaker}: ");
        let outcome = scene.speak(backend, &speaker, print_piece).await?;
        end_turn(backend, &outcome, options);
        saving.record(reply_message(
            &speaker,
            role_of_speaker(&speaker),
            &outcome.raw(),
            Some(&outcome.finished),
        ))?;
    }
    Ok(())
}

/// Streams a piece to stdout at once, so a pipe sees the reply as it is written.
fn print_piece(piece: &str) {
    print!("{piece}");
    let _ = std::io::stdout().flush();
}

/// Ends a reply's line and, when asked, reports its statistics on stderr.
fn end_turn(
    backend: &dyn Backend,
    outcome: &her_engine::dialogue::TurnOutcome,
    options: HeadlessOptions,
) {
    println!();
    if options.stats {
        print_stats(backend, outcome);
    }
}

fn print_stats(backend: &dyn Backend, outcome: &her_engine::dialogue::TurnOutcome) {
    let s = &outcome.finished.stats;
    let dropped = outcome.started.map_or(0, |st| st.dropped_turns);
    let info = backend.model_info();
    let per_token = |ms: f64| ms / s.generated_tokens.max(1) as f64;
    eprintln!(
        "[{} tokens, {:.1} tok/s, prompt {} ({} evaluated), ttft {:.0} ms, context {}/{}, dropped turns {}, {}, flash attention {}, per token: decode {:.2} ms, sample {:.2} ms]",
        s.generated_tokens,
        s.tokens_per_second,
        s.prompt_tokens,
        s.evaluated_prompt_tokens,
        s.time_to_first_token_ms,
        s.context_used,
        info.n_ctx,
        dropped,
        outcome.finished.reason,
        if info.flash_attention { "on" } else { "off" },
        per_token(s.decode_ms),
        per_token(s.sample_ms),
    );
}
