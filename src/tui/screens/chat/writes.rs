//! Session-log writes as effects. A change is applied to the session in
//! memory and queued here; after each message `update` sends what is
//! queued to the runtime as one [`Effect::Append`], and only the answer
//! ([`Msg::Appended`](crate::tui::message::Msg::Appended) or
//! [`Msg::WriteFailed`](crate::tui::message::Msg::WriteFailed)) takes events
//! off the queue. One batch is in flight at a time and a failed batch
//! blocks the ones after it, so the file receives the events in the order
//! they happened, and an event that could not be written stays queued (and
//! is tried again) instead of being dropped.

use std::collections::VecDeque;

use crate::tui::app::App;
use crate::tui::effect::Effect;
use her_core::session::SessionEvent;

/// Ticks (250 ms each) between two tries of a write that failed.
const RETRY_TICKS: u32 = 20;

/// Events applied in memory and not yet confirmed on disk, oldest first.
#[derive(Debug, Default)]
pub struct PendingWrites {
    queue: VecDeque<SessionEvent>,
    /// How many events at the front of `queue` the runtime is writing.
    in_flight: usize,
    /// Why the last write failed; nothing is sent until it is retried.
    failure: Option<String>,
    /// Ticks since the failure.
    waited: u32,
}

impl PendingWrites {
    /// Queues an event; a new change also tries a failed write again.
    pub fn push(&mut self, event: SessionEvent) {
        self.queue.push_back(event);
        self.retry();
    }

    /// The events to send now: everything queued, unless a batch is in
    /// flight or a failure waits for its retry.
    pub fn next_batch(&mut self) -> Option<Vec<SessionEvent>> {
        if self.in_flight > 0 || self.failure.is_some() || self.queue.is_empty() {
            return None;
        }
        self.in_flight = self.queue.len();
        Some(self.queue.iter().cloned().collect())
    }

    /// The runtime wrote the first `count` events of the batch.
    pub fn written(&mut self, count: usize) {
        let count = count.min(self.in_flight);
        self.queue.drain(..count);
        self.in_flight -= count;
    }

    /// The rest of the batch could not be written; it stays queued.
    pub fn failed(&mut self, error: String) {
        self.in_flight = 0;
        self.failure = Some(error);
        self.waited = 0;
    }

    /// Sends the queue again on the next flush.
    pub fn retry(&mut self) {
        self.failure = None;
    }

    /// One clock tick; a failed write is tried again every few seconds.
    pub fn tick(&mut self) {
        if self.failure.is_some() {
            self.waited += 1;
            if self.waited >= RETRY_TICKS {
                self.retry();
            }
        }
    }

    /// Events not confirmed on disk yet.
    pub fn unsaved(&self) -> usize {
        self.queue.len()
    }

    /// Why the queued events are not on disk, when a write failed.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// Every queued event, oldest first: what the runtime writes next.
    pub fn queued(&self) -> impl Iterator<Item = &SessionEvent> {
        self.queue.iter()
    }
}

/// Puts the open session's queued events in front of the effects, so they
/// reach the file before anything the same message started.
pub fn flush(app: &mut App, effects: &mut Vec<Effect>) {
    let Some(chat) = &mut app.chat else {
        return;
    };
    if let Some(events) = chat.writes.next_batch() {
        let path = chat.path.clone();
        effects.insert(0, Effect::Append { path, events });
    }
}

/// The runtime wrote `count` events to `path`.
pub fn appended(app: &mut App, path: &std::path::Path, count: usize) {
    if let Some(chat) = app.chat.as_mut().filter(|c| c.path == path) {
        chat.writes.written(count);
        app.leave_unsaved = false;
        // The title stops saying "unsaved".
        crate::tui::screens::chat::update::refresh(app);
    }
}

/// A write to `path` failed after `written` events: the rest stays queued,
/// and the status bar says so until it is written.
pub fn write_failed(app: &mut App, path: &std::path::Path, written: usize, error: String) {
    let Some(chat) = app.chat.as_mut().filter(|c| c.path == path) else {
        app.notify(format!("{}: {error}", path.display()), true);
        return;
    };
    chat.writes.written(written);
    let unsaved = chat.writes.unsaved();
    chat.writes.failed(error.clone());
    app.notify(
        format!("{unsaved} change(s) could not be saved: {error}; they are kept and tried again"),
        true,
    );
    crate::tui::screens::chat::update::refresh(app);
}

/// Quitting with changes that could not be written asks once more (and
/// tries them again); the second quit leaves, and the exit reports them.
pub fn hold_quit(app: &mut App) {
    if !app.quit || app.leave_unsaved {
        return;
    }
    let Some(chat) = &mut app.chat else {
        return;
    };
    let Some(error) = chat.writes.failure().map(str::to_string) else {
        return;
    };
    let unsaved = chat.writes.unsaved();
    chat.writes.retry();
    app.quit = false;
    app.leave_unsaved = true;
    app.notify(
        format!(
            "{unsaved} change(s) are not saved yet ({error}); trying again — quit again to leave without them"
        ),
        true,
    );
}

/// What exiting now would lose, for the exit message.
pub fn lost_on_exit(app: &App) -> Option<String> {
    let chat = app.chat.as_ref()?;
    let unsaved = chat.writes.unsaved();
    (unsaved > 0).then(|| {
        format!(
            "{unsaved} change(s) to {} could not be saved: {}",
            chat.path.display(),
            chat.writes.failure().unwrap_or("the write did not finish")
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use her_core::session::Session;

    fn event(title: &str) -> SessionEvent {
        Session::new(her_core::session::SessionHeader::new("t")).rename_event(title)
    }

    #[test]
    fn one_batch_at_a_time_in_order_and_a_failure_keeps_the_rest() {
        let mut w = PendingWrites::default();
        w.push(event("a"));
        w.push(event("b"));
        assert_eq!(w.next_batch().map(|b| b.len()), Some(2));
        w.push(event("c"));
        assert!(w.next_batch().is_none(), "a batch is in flight");
        w.written(1);
        w.failed("disk full".into());
        assert_eq!(w.unsaved(), 2, "b and c are kept");
        assert!(w.next_batch().is_none(), "waits for the retry");
        for _ in 0..RETRY_TICKS {
            w.tick();
        }
        let batch = w.next_batch().unwrap();
        assert_eq!(batch, vec![event("b"), event("c")], "oldest first");
        w.written(2);
        assert_eq!(w.unsaved(), 0);
        assert!(w.failure().is_none());
    }
}
