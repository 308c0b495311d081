//! What a backend handle asks its engine thread to do. The local and the
//! remote backend serve the same commands, each on its own thread.

use std::path::PathBuf;
use std::time::Instant;

use tokio::sync::{mpsc::UnboundedSender, oneshot};

use super::{
    AdapterInfo, EngineError, Event, GenerateRequest, GroupReply, GroupRequest, TokenLogprob,
};

/// Where a command's one result goes.
pub type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

pub enum Command {
    Generate {
        request: GenerateRequest,
        events: UnboundedSender<Event>,
        /// The cancel epoch when the request was made: a later cancel stops it.
        epoch: u64,
        received: Instant,
    },
    /// Only the local backend serves it (RL rollouts); the remote one refuses.
    GenerateGroup {
        request: GroupRequest,
        /// As for `Generate`: a later cancel stops the group.
        epoch: u64,
        received: Instant,
        reply: Reply<Vec<GroupReply>>,
    },
    Score {
        prompt: String,
        completion: String,
        reply: Reply<Vec<TokenLogprob>>,
    },
    Tokenize {
        text: String,
        reply: Reply<Vec<i32>>,
    },
    LoadAdapter {
        path: PathBuf,
        scale: f32,
        reply: Reply<AdapterInfo>,
    },
    ClearAdapter {
        reply: Reply<()>,
    },
}
