//! Frame render time of the chat screen for sessions of 10, 1,000 and 10,000
//! messages (targets: <= 2 ms at 1,000; 10,000 / 10 <= 1.5, since a frame
//! must cost what is visible), and key-to-frame latency while a reply
//! streams. Run: `cargo bench --bench tui`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use her_core::format::{PREFILL, StreamedReply};
use her_studio::tui::action::Action;
use her_studio::tui::app::{App, ReplyTarget, Screen, Streaming};
use her_studio::tui::keymap::Keymap;
use her_studio::tui::model::{PaneModes, ShownMessage, Speaker};
use her_studio::tui::theme::Theme;
use her_studio::tui::update::{on_engine, update};
use her_studio::tui::view;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const REPLY: &str = "<system_thinking>Elizabeth is amused and wary; she should answer with wit and keep him guessing.</system_thinking>Elizabeth Bennet: <role_thinking>He listens more than he speaks.</role_thinking><role_action>sets down her cup</role_action>You ask as though the answer mattered to you, sir. Does it? I confess I find your silence more instructive than most men's conversation.";

fn app_with(n: usize) -> App {
    let mut app = App::new(Keymap::default(), Theme::dark(), PaneModes::default());
    app.screen = Screen::Chat;
    app.character_name = "Elizabeth Bennet".into();
    app.messages = (0..n)
        .map(|i| {
            if i % 2 == 0 {
                ShownMessage::new(
                    format!("k{i}"),
                    "Mr. Darcy".into(),
                    Speaker::User,
                    format!("Line {i}: will you dance?"),
                    (0, 1),
                )
            } else {
                ShownMessage::new(
                    format!("k{i}"),
                    "Elizabeth Bennet".into(),
                    Speaker::Character,
                    REPLY.into(),
                    (0, 2),
                )
            }
        })
        .collect();
    app
}

/// Median time of one full frame (draw + flush to the test backend).
fn frame_time(app: &mut App, terminal: &mut Terminal<TestBackend>, frames: usize) -> Duration {
    let mut times: Vec<Duration> = (0..frames)
        .map(|_| {
            let t = Instant::now();
            terminal.draw(|f| view::draw(f, black_box(&*app))).ok();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let mut terminal = match Terminal::new(TestBackend::new(160, 48)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot create the test terminal: {e}");
            return;
        }
    };
    let mut results = Vec::new();
    for n in [10usize, 1_000, 10_000] {
        let mut app = app_with(n);
        let t = frame_time(&mut app, &mut terminal, 200);
        println!("frame, {n:>6} messages: {:>8.3} ms", t.as_secs_f64() * 1e3);
        results.push(t.as_secs_f64());
    }
    println!(
        "ratio 10,000 / 10 messages: {:.2} (target <= 1.5); 1,000 messages: {:.3} ms (target <= 2 ms)",
        results[2] / results[0],
        results[1] * 1e3
    );

    // Key-to-frame while streaming: a key's update plus the next frame, with
    // text arriving between keys as the engine sends it.
    let mut app = app_with(1_000);
    let mut reply = StreamedReply::default();
    reply.push(PREFILL);
    app.streaming = Some(Streaming {
        target: ReplyTarget::After(None),
        speaker: "Elizabeth Bennet".into(),
        reply,
        prefix_len: PREFILL.len(),
        started: Instant::now(),
    });
    let mut times = Vec::new();
    for i in 0..300 {
        on_engine(&mut app, her_engine::Event::Text(format!("word{i} ")));
        let t = Instant::now();
        let _ = update(&mut app, Action::Insert('x'));
        terminal.draw(|f| view::draw(f, &app)).ok();
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "key-to-frame while streaming (1,000 messages): median {:.3} ms, p99 {:.3} ms",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() * 99 / 100].as_secs_f64() * 1e3
    );
}
