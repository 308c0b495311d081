//! The annotation screen (`her annotate QUEUE.jsonl`): the queue being
//! answered, its keys, and its view.

pub mod state;
pub mod update;
pub mod view;

pub use state::{AnnotateScreen, Step};
