//! From the lorebook engine's output to HER's prompt: the transcript as the
//! engine scans it, and the activated entries (plus the author's note they
//! may sit around) laid out as [`Additions`].

use std::path::Path;

use crate::character::{AuthorNote, Character};
use crate::lore::placement::arrange;
use crate::lore::v3::from_card_lorebook;
use crate::lore::{
    Activation, Book, Budget, Library, Role, ScanContext, ScanInput, ScanMessage, ScanOutcome,
    ScanSettings, Scope, TimedState,
};

use super::additions::{Additions, Insert};
use super::{Line, PromptOptions, expand_macros};

/// A cheap token estimate for budgeting (about four characters per token in
/// English for the BPE vocabularies we run); exact counts are in `her prompt`.
/// The scan uses it everywhere so the TUI, `her prompt` and the exports
/// choose the same entries.
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4)
}

/// Context size assumed for a percentage budget when the caller has none.
pub const DEFAULT_MAX_CONTEXT: usize = 8192;

/// The transcript as the engine scans it: everyone but `character` is a user.
pub fn scan_messages<'a>(transcript: &'a [Line], character: &str) -> Vec<ScanMessage<'a>> {
    transcript
        .iter()
        .map(|l| ScanMessage {
            name: &l.speaker,
            text: &l.text,
            is_user: l.speaker != character,
        })
        .collect()
}

/// The character's card book on the engine's model (`None` when it has none
/// or it cannot be used; the card importer already reported why).
pub fn card_book(character: &Character) -> Option<Book> {
    let lorebook = character.lorebook.as_ref()?;
    let name = format!("{} (card)", character.name);
    match from_card_lorebook(lorebook, &name, Path::new(&character.name)) {
        Ok((book, _)) => Some(book),
        Err(err) => {
            tracing::warn!("lorebook of {}: {err}", character.name);
            None
        }
    }
}

/// The scan context a character offers entries that opt into it.
pub fn scan_context<'a>(character: &'a Character, persona: &'a str) -> ScanContext<'a> {
    ScanContext {
        persona_description: persona,
        character_description: &character.profile,
        character_personality: &character.personality,
        character_depth_prompt: "",
        scenario: &character.scenario,
        creator_notes: character
            .card
            .as_ref()
            .map_or("", |c| c.creator_notes.as_str()),
    }
}

/// A card book's own `token_budget` caps the budget (it is what the card's
/// author wrote the book for).
pub fn settings_for(mut settings: ScanSettings, books: &[(Book, Scope)]) -> ScanSettings {
    let card_cap = books
        .iter()
        .filter_map(|(b, _)| b.defaults.token_budget)
        .min();
    if let Some(cap) = card_cap {
        settings.budget_cap = match settings.budget_cap {
            0 => cap,
            c => c.min(cap),
        };
    }
    settings
}

/// Only the character's card book, with SillyTavern's default settings: what
/// `HerPrompt::build` adds when no session says more.
pub fn embedded_additions(
    character: &Character,
    options: &PromptOptions,
    transcript: &[Line],
) -> Additions {
    let Some(book) = card_book(character) else {
        return Additions::default();
    };
    let books = vec![(book, Scope::Character)];
    let settings = settings_for(ScanSettings::default(), &books);
    let library = Library::new(books, settings);
    let messages = scan_messages(transcript, &character.name);
    let timed = TimedState::default();
    let macros = |t: &str| expand_macros(t, &character.name, &options.user_name);
    let mut input = ScanInput::new(&messages, &timed);
    input.context = scan_context(character, "");
    input.character = Some(&character.name);
    input.character_tags = Some(&character.tags);
    input.max_context = DEFAULT_MAX_CONTEXT;
    input.macros = Some(&macros);
    let outcome = library.scan(&input, &estimate_tokens);
    lay_out(&outcome.activated, None)
}

/// The author's note for this prompt, when it is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteInsert {
    pub text: String,
    pub depth: u32,
    pub role: Role,
}

impl NoteInsert {
    /// The note as it goes into a prompt over `transcript` (`None`: not due
    /// on this turn, or empty).
    pub fn due(note: &AuthorNote, transcript: &[Line], character: &str) -> Option<NoteInsert> {
        let user_turns = transcript.iter().filter(|l| l.speaker != character).count();
        (note.is_due(user_turns) && !note.text.trim().is_empty()).then(|| NoteInsert {
            text: note.text.trim().to_string(),
            depth: note.depth,
            role: note.role,
        })
    }
}

/// Label of the author's note turn in prompt views.
pub const NOTE_LABEL: &str = "author's note";
/// Label of lore turns in prompt views.
pub const LORE_LABEL: &str = "lore";

/// Activated entries (and the note) in HER's layout. Entries placed around
/// the author's note go in with it, at its depth and role (SillyTavern's
/// default depth 4, system, when there is no note).
pub fn lay_out(activated: &[Activation], note: Option<&NoteInsert>) -> Additions {
    let arranged = arrange(activated);
    let mut out = Additions {
        background_top: arranged.before_char,
        background_bottom: [arranged.after_char, arranged.examples_top]
            .concat()
            .into_iter()
            .chain(arranged.examples_bottom)
            .collect(),
        scenario: arranged.scenario,
        ..Additions::default()
    };
    let note_parts: Vec<String> = arranged
        .author_note_top
        .into_iter()
        .chain(note.map(|n| n.text.clone()))
        .chain(arranged.author_note_bottom)
        .collect();
    if !note_parts.is_empty() {
        let default = NoteInsert {
            text: String::new(),
            depth: 4,
            role: Role::System,
        };
        let at = note.unwrap_or(&default);
        out.inserts.push(Insert {
            depth: at.depth,
            role: at.role,
            label: NOTE_LABEL.into(),
            text: note_parts.join("\n"),
        });
    }
    for d in arranged.at_depth {
        out.inserts.push(Insert {
            depth: d.depth,
            role: d.role,
            label: LORE_LABEL.into(),
            text: d.entries.join("\n"),
        });
    }
    out.outlets = arranged
        .outlets
        .into_iter()
        .map(|o| (o.name, o.entries.join("\n")))
        .collect();
    out
}

/// One line per activated and left-out entry: what `/lore` and `her prompt`
/// show.
pub fn explain(outcome: &ScanOutcome) -> Vec<String> {
    let mut lines = Vec::new();
    lines.extend(outcome.activated.iter().map(ToString::to_string));
    lines.extend(outcome.left_out.iter().map(ToString::to_string));
    lines.push(format!(
        "lore budget: {} of {} tokens{}",
        outcome.used_tokens,
        outcome.budget,
        if outcome.overflowed {
            " (overflowed)"
        } else {
            ""
        }
    ));
    lines
}

/// A budget from config: a percentage (1–100) or, above 100, tokens.
pub fn budget_from(value: u32) -> Budget {
    if value <= 100 {
        Budget::PercentOfContext(value.max(1))
    } else {
        Budget::Tokens(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::character::{LoreEntry, Lorebook};
    use crate::prompt::{HerPrompt, PromptVariant};

    fn entry(keys: &[&str], content: &str, order: i64) -> LoreEntry {
        LoreEntry {
            keys: keys.iter().map(|k| k.to_string()).collect(),
            content: content.into(),
            enabled: true,
            insertion_order: order,
            ..LoreEntry::default()
        }
    }

    fn background(book: Lorebook, lines: &[Line]) -> String {
        let c = Character {
            name: "Elizabeth".into(),
            lorebook: Some(book),
            ..Character::default()
        };
        let options = PromptOptions::new(PromptVariant::Training, "Darcy");
        HerPrompt::build(&c, &options, lines)
            .sections
            .iter()
            .find(|s| s.title.as_deref() == Some("Background"))
            .map(|s| s.body.clone())
            .unwrap_or_default()
    }

    #[test]
    fn entries_fire_on_their_keys_in_recent_lines() {
        let book = Lorebook {
            entries: vec![
                entry(&["Pemberley"], "Darcy's estate in Derbyshire.", 2),
                entry(&["Rosings"], "Lady Catherine's house.", 1),
                LoreEntry {
                    constant: true,
                    ..entry(&[], "It is 1811.", 0)
                },
            ],
            ..Lorebook::default()
        };
        let lines = [Line::new("Mr. Darcy", "Have you seen PEMBERLEY?")];
        assert_eq!(
            background(book.clone(), &lines),
            "It is 1811.\n\nDarcy's estate in Derbyshire."
        );
        // Out of scan depth: only the constant entry.
        let mut many = vec![Line::new("A", "Pemberley")];
        many.extend((0..4).map(|i| Line::new("B", format!("line {i}"))));
        assert_eq!(background(book, &many), "It is 1811.");
    }

    #[test]
    fn a_card_budget_keeps_what_fits_in_order() {
        // The old plain-key code spent the budget by `priority`; SillyTavern
        // (and now the engine) spends it by insertion order, highest first,
        // and stops at the first entry that does not fit.
        let book = Lorebook {
            token_budget: Some(10),
            entries: vec![
                entry(&["ball"], "A long note about the ball at Netherfield.", 0),
                entry(&["ball"], "Short note.", 1),
            ],
            ..Lorebook::default()
        };
        assert_eq!(
            background(book, &[Line::new("A", "the ball")]),
            "Short note."
        );
    }

    /// The plain-key code read regex keys as text and never recursed: a
    /// card book now gets the whole engine.
    #[test]
    fn card_books_get_regex_keys_and_recursion() {
        let book = Lorebook {
            recursive_scanning: true,
            entries: vec![
                entry(&["/pember\\w+/i"], "Pemberley lies near Lambton.", 1),
                entry(&["Lambton"], "Lambton is a market town.", 2),
            ],
            ..Lorebook::default()
        };
        assert_eq!(
            background(book, &[Line::new("Mr. Darcy", "Welcome to PEMBERLEY.")]),
            "Pemberley lies near Lambton.\n\nLambton is a market town."
        );
    }

    #[test]
    fn the_note_carries_the_entries_placed_around_it() {
        let note = NoteInsert {
            text: "Keep it light.".into(),
            depth: 2,
            role: Role::User,
        };
        let a = lay_out(&[], Some(&note));
        assert_eq!(a.inserts.len(), 1);
        assert_eq!(a.inserts[0].depth, 2);
        assert_eq!(a.inserts[0].text, "Keep it light.");
        assert!(lay_out(&[], None).is_empty());
    }

    #[test]
    fn a_note_is_due_every_m_user_turns() {
        let mut note = AuthorNote::new("Rain.");
        note.every = 2;
        let one = [Line::new("Darcy", "a")];
        let two = [Line::new("Darcy", "a"), Line::new("Darcy", "b")];
        assert!(NoteInsert::due(&note, &one, "Elizabeth").is_none());
        assert!(NoteInsert::due(&note, &two, "Elizabeth").is_some());
        note.every = 0;
        assert!(NoteInsert::due(&note, &two, "Elizabeth").is_none());
    }
}
