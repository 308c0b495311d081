//! The event loop: terminal input, the engine's streams, finished jobs and
//! ticks become messages in one queue; `update` decides, [`jobs`] carries
//! out the effects it returns, and the screen is drawn after each batch.
//! Nothing here writes the app state.

pub mod append;
pub mod books;
mod editor;
mod jobs;
pub mod open;

use std::time::Duration;

use futures::StreamExt;
use ratatui::crossterm::event::{
    Event as TermEvent, EventStream, KeyCode, KeyEventKind, KeyModifiers, MouseEventKind,
};
use ratatui::layout::Rect;

use crate::app::AppContext;
use crate::tui::action::Action;
use crate::tui::app::{App, Screen};
use crate::tui::effect::Effect;
use crate::tui::keymap::Layer;
use crate::tui::message::Msg;
use crate::tui::terminal::TerminalGuard;
use crate::tui::update::update;
use crate::tui::view;
use her_engine::{EngineError, Event, EventStream as EngineStream};

pub use jobs::{EngineSlot, Runtime, Starter};

/// Waits for the next engine event, or forever when nothing is generating.
/// A stream that ends without its last event reports a stopped engine.
async fn next_engine(stream: &mut Option<EngineStream>) -> Event {
    let event = match stream {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    };
    let event = event.unwrap_or(Event::Failed(EngineError::EngineStopped));
    if matches!(event, Event::Finished(_) | Event::Failed(_)) {
        *stream = None;
    }
    event
}

/// Runs until the user quits. `first` are the effects of the start (list
/// the characters, open a session).
pub async fn run(
    app: &mut App,
    guard: &mut TerminalGuard,
    cx: &AppContext,
    engine: EngineSlot<'_>,
    first: Vec<Effect>,
) -> std::io::Result<()> {
    let mut rt = Runtime::new(cx, engine);
    let mut input = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    if let Some(info) = rt.model.clone() {
        rt.inbox.push_back(Msg::ModelLoaded {
            info,
            switched: false,
        });
    }
    rt.start_all(guard, first);
    let mut dirty = true;
    loop {
        while let Some(msg) = rt.inbox.pop_front() {
            // The clock alone changes nothing on screen unless text streams in.
            dirty |= !matches!(msg, Msg::Tick(_)) || app.streaming.is_some() || app.arena.is_some();
            let effects = update(app, msg);
            rt.start_all(guard, effects);
        }
        if app.quit {
            rt.stop();
            return Ok(());
        }
        if dirty {
            // The transcript's height decides what a page is: measured
            // here, told to `update`, never written by the view.
            let size = guard.terminal.size()?;
            let area = Rect::new(0, 0, size.width, size.height);
            let rows = crate::tui::screens::chat::view::transcript_rows(area, app);
            if app.screen == Screen::Chat && rows != app.page {
                rt.inbox.push_back(Msg::Layout {
                    transcript_rows: rows,
                });
                continue;
            }
            guard.terminal.draw(|frame| view::draw(frame, app))?;
            dirty = false;
        }
        rt.start_lazy_engine(guard)?;
        tokio::select! {
            event = input.next() => {
                let Some(event) = event else { return Ok(()) };
                rt.inbox.extend(messages_for(app, &event?));
            }
            event = next_engine(&mut rt.generation) => rt.inbox.push_back(Msg::Engine(event)),
            event = next_engine(&mut rt.summary) => rt.inbox.push_back(Msg::Summary(event)),
            Some(msg) = rt.jobs.next(), if !rt.jobs.is_empty() => rt.inbox.push_back(msg),
            loaded = jobs::wait_loading(&mut rt.loading) => rt.engine_back(loaded)?,
            started = jobs::wait_summarizer(&mut rt.summarizer_loading) => rt.summarizer_back(started),
            at = tick.tick() => rt.inbox.push_back(Msg::Tick(at.into_std())),
        }
    }
}

/// Terminal events to messages, through the keymap of the current layer.
fn messages_for(app: &App, event: &TermEvent) -> Vec<Msg> {
    let actions = match event {
        TermEvent::Key(key) if key.kind != KeyEventKind::Release => {
            let picker_screen = matches!(app.screen, Screen::Characters | Screen::Sessions)
                && app.overlay.is_none();
            if picker_screen {
                match key.code {
                    KeyCode::Char(c)
                        if !key
                            .modifiers
                            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) =>
                    {
                        return vec![Msg::Typed(c)];
                    }
                    KeyCode::Backspace => return vec![Msg::Action(Action::Backspace)],
                    KeyCode::Delete => return vec![Msg::Action(Action::DeleteSelected)],
                    _ => {}
                }
            }
            app.keymap.action(app.layer(), key).into_iter().collect()
        }
        TermEvent::Paste(text) => match app.layer() {
            Layer::Input => vec![Action::Paste(text.clone())],
            _ => Vec::new(),
        },
        TermEvent::Mouse(mouse) => match mouse.kind {
            MouseEventKind::ScrollUp => vec![Action::ScrollUp, Action::ScrollUp, Action::ScrollUp],
            MouseEventKind::ScrollDown => {
                vec![Action::ScrollDown, Action::ScrollDown, Action::ScrollDown]
            }
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    actions.into_iter().map(Msg::Action).collect()
}

#[cfg(test)]
mod tests;
