//! Everything a key, a mouse event or a command can make the app do.

/// One user intent. `update` is the only place that acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Quit,
    ToggleHelp,
    CloseOverlay,
    // The composer.
    Insert(char),
    Newline,
    Backspace,
    DeleteForward,
    CursorLeft,
    CursorRight,
    CursorUp,
    CursorDown,
    CursorHome,
    CursorEnd,
    Paste(String),
    Submit,
    HistoryPrev,
    HistoryNext,
    OpenEditor,
    // The transcript.
    FocusInput,
    FocusTranscript,
    SelectPrev,
    SelectNext,
    ScrollUp,
    ScrollDown,
    PageUp,
    PageDown,
    ScrollToBottom,
    StopGeneration,
    Regenerate,
    SwipePrev,
    SwipeNext,
    Continue,
    EditSelected,
    DeleteSelected,
    /// Pin the selected message as a long-term memory.
    PinSelected,
    RateUp,
    RateDown,
    RateStars(u8),
    /// Open the detailed rating dialog for the selected reply.
    Rate,
    /// Start a blind A/B round for the next reply.
    Arena,
    TogglePlan,
    ToggleThoughts,
    ToggleRaw,
    ToggleTree,
    ShowTokens,
    // Lists (pickers, tree view).
    ListUp,
    ListDown,
    ListChoose,
    Confirm,
    Cancel,
    /// Dialogs: move to the next field.
    NextField,
    // The annotation screen.
    /// The left candidate is better.
    PickLeft,
    /// The right candidate is better.
    PickRight,
    Tie,
    BothBad,
    /// Leave the item for the end of the queue.
    Skip,
    /// Take back the last answer (or skip) of this sitting.
    Undo,
}

impl Action {
    /// Stable names for `[keys]` in config.toml and the help overlay.
    pub const NAMED: &'static [(&'static str, Action, &'static str)] = &[
        ("quit", Action::Quit, "quit"),
        ("help", Action::ToggleHelp, "show or hide this help"),
        (
            "submit",
            Action::Submit,
            "send the message (or run a /command)",
        ),
        ("newline", Action::Newline, "new line in the message"),
        ("editor", Action::OpenEditor, "write the message in $EDITOR"),
        ("history_prev", Action::HistoryPrev, "previous sent message"),
        ("history_next", Action::HistoryNext, "next sent message"),
        ("focus_input", Action::FocusInput, "type a message"),
        (
            "focus_transcript",
            Action::FocusTranscript,
            "move through the transcript",
        ),
        (
            "select_prev",
            Action::SelectPrev,
            "select the previous message",
        ),
        ("select_next", Action::SelectNext, "select the next message"),
        ("page_up", Action::PageUp, "scroll up a page"),
        ("page_down", Action::PageDown, "scroll down a page"),
        (
            "bottom",
            Action::ScrollToBottom,
            "jump to the newest message",
        ),
        (
            "stop",
            Action::StopGeneration,
            "stop the reply being written",
        ),
        (
            "regenerate",
            Action::Regenerate,
            "write a new alternative of the selected reply",
        ),
        ("swipe_prev", Action::SwipePrev, "previous alternative"),
        ("swipe_next", Action::SwipeNext, "next alternative"),
        ("continue", Action::Continue, "continue the selected reply"),
        (
            "edit",
            Action::EditSelected,
            "edit the selected message (a new version)",
        ),
        (
            "delete",
            Action::DeleteSelected,
            "delete the selected message (kept in the log)",
        ),
        (
            "pin",
            Action::PinSelected,
            "pin the selected message as a memory (/memory lists pins)",
        ),
        (
            "rate_up",
            Action::RateUp,
            "rate the selected reply: thumbs up",
        ),
        (
            "rate_down",
            Action::RateDown,
            "rate the selected reply: thumbs down",
        ),
        (
            "rate_1",
            Action::RateStars(1),
            "rate the selected reply: 1 star",
        ),
        (
            "rate_2",
            Action::RateStars(2),
            "rate the selected reply: 2 stars",
        ),
        (
            "rate_3",
            Action::RateStars(3),
            "rate the selected reply: 3 stars",
        ),
        (
            "rate_4",
            Action::RateStars(4),
            "rate the selected reply: 4 stars",
        ),
        (
            "rate_5",
            Action::RateStars(5),
            "rate the selected reply: 5 stars",
        ),
        (
            "rate",
            Action::Rate,
            "rate the selected reply in detail: layer, tags, rationale",
        ),
        (
            "arena",
            Action::Arena,
            "blind A/B round: two candidates for the newest reply",
        ),
        (
            "toggle_plan",
            Action::TogglePlan,
            "LLM thinking: pane / inline / hidden",
        ),
        (
            "toggle_thoughts",
            Action::ToggleThoughts,
            "character thinking: pane / inline / hidden",
        ),
        (
            "toggle_raw",
            Action::ToggleRaw,
            "raw view of the selected reply",
        ),
        ("toggle_tree", Action::ToggleTree, "branch tree"),
        (
            "token_probabilities",
            Action::ShowTokens,
            "token probabilities of the selected reply; enter on an alternative branches from it",
        ),
        ("close", Action::CloseOverlay, "close the overlay"),
        (
            "pick_left",
            Action::PickLeft,
            "annotate: the left reply is better",
        ),
        (
            "pick_right",
            Action::PickRight,
            "annotate: the right reply is better",
        ),
        ("tie", Action::Tie, "annotate: both replies are as good"),
        (
            "both_bad",
            Action::BothBad,
            "annotate: both replies are bad",
        ),
        ("skip", Action::Skip, "annotate: leave the item for the end"),
        ("undo", Action::Undo, "annotate: take back the last answer"),
    ];

    pub fn from_name(name: &str) -> Option<Action> {
        Self::NAMED
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, a, _)| a.clone())
    }

    pub fn name(&self) -> Option<&'static str> {
        Self::NAMED
            .iter()
            .find(|(_, a, _)| a == self)
            .map(|(n, _, _)| *n)
    }

    pub fn description(&self) -> &'static str {
        Self::NAMED
            .iter()
            .find(|(_, a, _)| a == self)
            .map_or("", |(_, _, d)| *d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keys_section_names_exactly_these_actions() {
        let ours: Vec<&str> = Action::NAMED.iter().map(|(n, _, _)| *n).collect();
        assert_eq!(ours, crate::config::KEY_ACTIONS);
    }
}
