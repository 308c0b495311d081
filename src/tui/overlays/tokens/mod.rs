//! The token probability view of a reply (`f6`): its tokens coloured by how
//! likely the model found them, a cursor moving token by token, the likely
//! alternatives at the cursor, and `enter` on one writes a new alternative
//! of the reply from there: the text up to that token, the chosen token,
//! then the model's continuation.

pub mod update;
pub mod view;

/// The view's state: which reply, which token, which alternative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenView {
    pub key: String,
    pub cursor: usize,
    pub pick: usize,
}
