//! Work that `update` asks the runtime to do: anything that touches the
//! engine, the terminal or another program.

use std::path::PathBuf;

use crate::engine::GenerateRequest;

/// How a session is opened.
#[derive(Debug, Clone, PartialEq)]
pub enum Opening {
    /// A new session for the chosen character or scene.
    New,
    /// An existing session, to write to; if another window writes to it,
    /// the user chooses between the two below.
    Resume(PathBuf),
    /// An existing session, to read: nothing is written.
    ReadOnly(PathBuf),
    /// A copy of an existing session in a new file, to write to.
    Fork(PathBuf),
}

#[derive(Debug)]
// One effect at a time goes through the runtime; boxing the request buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum Effect {
    Generate(GenerateRequest),
    /// Ask the model who speaks next in a scene, then start that reply after `parent`.
    ChooseSpeaker {
        parent: Option<String>,
    },
    Cancel,
    /// Suspend the TUI and edit the composer text in $EDITOR.
    OpenEditor,
    LoadAdapter {
        path: PathBuf,
        scale: f32,
    },
    ClearAdapter,
    /// Load the adapter of a training run (its final adapter, or its newest
    /// checkpoint exported for llama.cpp).
    LoadRun(PathBuf),
    /// Set the adapter for one arena candidate (`None`: the base model),
    /// without touching what the status bar shows.
    ArenaAdapter(Option<(PathBuf, f32)>),
    /// Compute the prompt view (token counts need the engine).
    ShowPrompt,
    /// Open the chosen character's sessions, or a new session.
    OpenCharacter(String),
    OpenSession(Opening),
    DeleteSession(PathBuf),
}
