//! The system prompt, in the section layout of HER's training data.

use super::PromptVariant;
use crate::character::Character;

/// One titled part of the system prompt (the title is `None` for the opening line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub title: Option<String>,
    pub body: String,
}

impl Section {
    fn new(title: Option<String>, body: String) -> Self {
        Self { title, body }
    }

    pub fn render(&self) -> String {
        match &self.title {
            Some(title) => format!("==={title}===\n{}", self.body),
            None => self.body.clone(),
        }
    }
}

/// The sections in order, empty ones already left out.
pub fn system_sections(character: &Character, variant: PromptVariant) -> Vec<Section> {
    let name = &character.name;
    let mut sections = vec![Section::new(
        None,
        format!("You are {name} from {}.", character.book),
    )];
    let mut add = |title: String, body: &str| {
        let body = body.trim();
        if !body.is_empty() {
            sections.push(Section::new(Some(title), body.to_string()));
        }
    };
    add(format!("{name}'s Profile"), &character.profile);
    add("Background".into(), &character.background);
    add("Current Scenario".into(), &character.scenario);
    let (others_title, others) = match variant {
        PromptVariant::Training => (
            "Information about other Characters",
            character
                .others
                .iter()
                .map(|o| format!("**{}**: {}", o.name, o.profile.trim()))
                .collect::<Vec<_>>(),
        ),
        PromptVariant::Evaluation => (
            "Information about the other Characters",
            character
                .others
                .iter()
                .map(|o| format!("{}: {}", o.name, o.profile.trim()))
                .collect::<Vec<_>>(),
        ),
    };
    add(others_title.into(), &others.join("\n\n"));
    add("Your Inner Thoughts".into(), &character.motivation);
    add("Requirements".into(), &requirements(name, variant));
    sections
}

/// The whole system prompt: sections separated by a blank line.
pub fn system_prompt(character: &Character, variant: PromptVariant) -> String {
    system_sections(character, variant)
        .iter()
        .map(Section::render)
        .collect::<Vec<_>>()
        .join("\n\n")
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
