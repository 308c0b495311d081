//! Channels that carry results from the engine thread to async or sync callers.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::{mpsc, oneshot};

use super::{EngineError, Event, Finished};

/// A result that the engine will deliver later. Await it, or call
/// [`Pending::wait`] from synchronous code (never from inside a runtime).
pub struct Pending<T> {
    rx: oneshot::Receiver<Result<T, EngineError>>,
}

impl<T> Pending<T> {
    /// A pending result and the sender that completes it (for backends
    /// written outside this crate, such as scripted test backends).
    pub fn channel() -> (oneshot::Sender<Result<T, EngineError>>, Self) {
        let (tx, rx) = oneshot::channel();
        (tx, Self { rx })
    }

    /// A result that is already known (an error before reaching the engine).
    pub fn ready(value: Result<T, EngineError>) -> Self {
        let (tx, pending) = Self::channel();
        let _ = tx.send(value);
        pending
    }

    /// Blocks the current thread until the result arrives.
    pub fn wait(self) -> Result<T, EngineError> {
        self.rx
            .blocking_recv()
            .unwrap_or(Err(EngineError::EngineStopped))
    }
}

impl<T> Future for Pending<T> {
    type Output = Result<T, EngineError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(EngineError::EngineStopped)))
    }
}

/// The events of one generation, ending with `Finished` or `Failed`.
/// Dropping the stream cancels the generation.
pub struct EventStream {
    rx: mpsc::UnboundedReceiver<Event>,
}

impl EventStream {
    /// A stream and the sender that feeds it (for backends written outside
    /// this crate).
    pub fn channel() -> (mpsc::UnboundedSender<Event>, Self) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, Self { rx })
    }

    /// A stream that fails at once.
    pub fn failed(error: EngineError) -> Self {
        let (tx, stream) = Self::channel();
        let _ = tx.send(Event::Failed(error));
        stream
    }

    /// The next event, or `None` after the last one.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event, blocking the current thread.
    pub fn blocking_next(&mut self) -> Option<Event> {
        self.rx.blocking_recv()
    }

    /// Non-blocking poll, for UI loops that drain events every frame.
    pub fn try_next(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// Collects the whole reply (blocking): the text and the final event.
    pub fn collect_blocking(mut self) -> Result<(String, Finished), EngineError> {
        let mut text = String::new();
        while let Some(event) = self.blocking_next() {
            match event {
                Event::Text(piece) => text.push_str(&piece),
                Event::Finished(done) => return Ok((text, done)),
                Event::Failed(err) => return Err(err),
                Event::Started(_) | Event::Stats(_) => {}
            }
        }
        Err(EngineError::EngineStopped)
    }
}
