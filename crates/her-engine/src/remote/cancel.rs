//! When a generation must stop: `cancel()` was called after it was queued,
//! or the caller dropped its event stream.

use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;

use crate::Event;

pub struct Cancel {
    epochs: watch::Receiver<u64>,
    /// The epoch when the request was made; a later one means cancelled.
    epoch: u64,
    events: UnboundedSender<Event>,
}

impl Cancel {
    pub fn new(epochs: watch::Receiver<u64>, epoch: u64, events: UnboundedSender<Event>) -> Self {
        Self {
            epochs,
            epoch,
            events,
        }
    }

    pub fn is_cancelled(&self) -> bool {
        *self.epochs.borrow() != self.epoch || self.events.is_closed()
    }

    /// Resolves once cancelled.
    pub async fn cancelled(&mut self) {
        while !self.is_cancelled() {
            let Self { epochs, events, .. } = self;
            tokio::select! {
                changed = epochs.changed() => {
                    // The engine is gone: only a dropped stream can cancel now.
                    if changed.is_err() {
                        events.closed().await;
                    }
                }
                () = events.closed() => {}
            }
        }
    }
}
