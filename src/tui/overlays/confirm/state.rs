//! What a yes to the question does (the question lives in
//! `app::Overlay::Confirm`).

/// What a yes does.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfirmAction {
    DeleteMessage(String),
    DeleteSession(std::path::PathBuf),
}
