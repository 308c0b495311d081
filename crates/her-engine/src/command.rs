//! What a backend handle asks its engine thread to do. The local and the
//! remote backend serve the same commands, each on its own thread.

use std::path::PathBuf;
use std::time::Instant;

use tokio::sync::{mpsc::UnboundedSender, oneshot};

use super::{
    AdapterInfo, Backend, EngineError, Event, EventStream, GenerateRequest, GroupReply,
    GroupRequest, ModelInfo, Pending, TokenLogprob,
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

/// A handle whose engine runs on its own thread and is reached by queueing
/// [`Command`]s: the local and the remote backend. Implementing these four
/// gives the whole [`Backend`], so the two handles cannot drift apart.
pub(crate) trait CommandQueue: Send + Sync {
    /// Queues `command`; fails when the engine thread has stopped.
    fn send(&self, command: Command) -> Result<(), EngineError>;
    /// The current cancel epoch: a request remembers it, and a later
    /// [`CommandQueue::bump_epoch`] stops it.
    fn epoch(&self) -> u64;
    fn bump_epoch(&self);
    fn info(&self) -> ModelInfo;

    /// Sends the command `make` builds around a fresh reply channel.
    fn request<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Pending<T> {
        let (tx, pending) = Pending::channel();
        if let Err(err) = self.send(make(tx)) {
            return Pending::ready(Err(err));
        }
        pending
    }
}

impl<Q: CommandQueue> Backend for Q {
    fn generate(&self, request: GenerateRequest) -> EventStream {
        let (events, stream) = EventStream::channel();
        let command = Command::Generate {
            request,
            events,
            epoch: self.epoch(),
            received: Instant::now(),
        };
        match self.send(command) {
            Ok(()) => stream,
            Err(err) => EventStream::failed(err),
        }
    }

    fn cancel(&self) {
        self.bump_epoch();
    }

    fn score(&self, prompt: String, completion: String) -> Pending<Vec<TokenLogprob>> {
        self.request(|reply| Command::Score {
            prompt,
            completion,
            reply,
        })
    }

    fn tokenize(&self, text: String) -> Pending<Vec<i32>> {
        self.request(|reply| Command::Tokenize { text, reply })
    }

    fn load_adapter(&self, path: PathBuf, scale: f32) -> Pending<AdapterInfo> {
        self.request(|reply| Command::LoadAdapter { path, scale, reply })
    }

    fn clear_adapter(&self) -> Pending<()> {
        self.request(|reply| Command::ClearAdapter { reply })
    }

    fn model_info(&self) -> ModelInfo {
        self.info()
    }
}
