//! The system prompt, in the section layout of HER's training data.

use super::{Additions, PromptOptions, PromptVariant, expand_macros};
use crate::character::Character;

/// One titled part of the system prompt (the title is `None` for the opening
/// line and for a paragraph that continues the section before it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub title: Option<String>,
    pub body: String,
    /// The label in token tables when the title does not say it.
    pub label: Option<String>,
}

impl Section {
    fn new(title: Option<String>, body: String) -> Self {
        Self {
            title,
            body,
            label: None,
        }
    }

    pub fn render(&self) -> String {
        match &self.title {
            Some(title) => format!("==={title}===\n{}", self.body),
            None => self.body.clone(),
        }
    }

    /// A short label for token-count tables.
    pub fn label(&self) -> String {
        self.label
            .clone()
            .or_else(|| self.title.clone())
            .unwrap_or_else(|| "Opening".to_string())
    }
}

/// The sections in order, empty ones left out. `additions` (lore, memory,
/// already chosen for this transcript) extend the background and the
/// scenario (see `additions` for the mapping).
pub fn system_sections(
    character: &Character,
    options: &PromptOptions,
    additions: &Additions,
) -> Vec<Section> {
    let name = &character.name;
    let expand =
        |t: &str| additions.fill_outlets(&expand_macros(t.trim(), name, &options.user_name));
    let mut sections = vec![Section::new(
        None,
        format!("You are {name} from {}.", character.book),
    )];
    let mut add = |title: String, body: String| {
        if !body.trim().is_empty() {
            sections.push(Section::new(Some(title), body));
        }
    };
    let mut profile = expand(&character.profile);
    if !character.personality.trim().is_empty() {
        profile = format!("{profile}\n\n{}", expand(&character.personality));
    }
    add(format!("{name}'s Profile"), profile);
    let background = paragraphs(
        additions
            .background_top
            .iter()
            .map(|t| expand(t))
            .chain([expand(&character.background)])
            .chain(additions.background_bottom.iter().map(|t| expand(t))),
    );
    let memory = additions.memory.trim().to_string();
    match (background.is_empty(), memory.is_empty()) {
        (_, true) => add("Background".into(), background),
        (true, false) => {
            let mut section = Section::new(Some("Background".into()), memory);
            section.label = Some(MEMORY_LABEL.into());
            sections.push(section);
        }
        (false, false) => {
            add("Background".into(), background);
            // A paragraph of the background, counted on its own.
            let mut section = Section::new(None, memory);
            section.label = Some(MEMORY_LABEL.into());
            sections.push(section);
        }
    }
    let scenario = paragraphs(
        [expand(&character.scenario)]
            .into_iter()
            .chain(additions.scenario.iter().map(|t| expand(t))),
    );
    let mut add = |title: String, body: String| {
        if !body.trim().is_empty() {
            sections.push(Section::new(Some(title), body));
        }
    };
    add("Current Scenario".into(), scenario);
    let (others_title, separator) = match options.variant {
        PromptVariant::Training => ("Information about other Characters", ("**", "**: ")),
        PromptVariant::Evaluation => ("Information about the other Characters", ("", ": ")),
    };
    let others: Vec<String> = character
        .others
        .iter()
        .map(|o| {
            format!(
                "{}{}{}{}",
                separator.0,
                o.name,
                separator.1,
                expand(&o.profile)
            )
        })
        .collect();
    add(others_title.into(), others.join("\n\n"));
    add("Your Inner Thoughts".into(), expand(&character.motivation));
    add("Requirements".into(), requirements(name, options.variant));
    sections
}

/// The token-table label of the memory paragraph.
pub const MEMORY_LABEL: &str = "Background: memory";

/// Non-empty texts, blank-line separated.
fn paragraphs(texts: impl Iterator<Item = String>) -> String {
    texts
        .filter(|t| !t.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Joins sections into the system prompt: a blank line between sections.
pub fn join_sections(sections: &[Section]) -> String {
    sections
        .iter()
        .map(Section::render)
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The whole system prompt, without lorebook entries.
pub fn system_prompt(character: &Character, options: &PromptOptions) -> String {
    join_sections(&system_sections(character, options, &Additions::default()))
}

/// Output-format instructions, written for her-studio in HER's manner.
fn requirements(name: &str, variant: PromptVariant) -> String {
    let mut text = format!(
        "Open every reply with one <system_thinking>…</system_thinking> block: a third-person \
analysis, as the author, of what {name} notices, feels and wants at this moment and how to \
portray that in the next turn. Nobody in the story can see it.\n\
Then write {name}'s turn, beginning with \"{name}: \". Mix, in any order and never nested: \
<role_thinking>…</role_thinking> for {name}'s inner thoughts, which the other characters \
cannot hear; <role_action>…</role_action> for visible actions, written without a subject; \
and plain text for what {name} says aloud."
    );
    if variant == PromptVariant::Evaluation {
        text.push_str(&format!(
            "\nPlay only {name}: never write speech, actions or thoughts for anyone else. \
Write a single turn, keep it concise, and stop when {name} has finished."
        ));
    }
    text
}
