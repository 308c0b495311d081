//! The locked-session choice: its cursor and path live in
//! `app::Overlay::Locked`; these are its choices.

/// The choices of [`Overlay::Locked`](crate::tui::app::Overlay::Locked): (key, label).
pub const LOCKED_CHOICES: [(char, &str); 3] = [
    ('r', "open it read-only: see everything, change nothing"),
    (
        'f',
        "fork it: copy it into a new session file and continue there",
    ),
    ('b', "back to the list"),
];
