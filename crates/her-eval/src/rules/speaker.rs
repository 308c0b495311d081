//! Who a turn speaks as and for: the `Name: ` a turn opens with must name
//! the character whose turn it is, later `Name: ` lines are lines written
//! for someone else, and a character introducing themself by another cast
//! member's name contradicts who they are.

use super::Rule;
use her_core::format::{lines_for_others, looks_like_name, names_match};

/// Flaws of one turn: (rule, description, severity). `plain` is the turn
/// without plan or tags (see [`super::turn_content`]).
pub fn check(speaker: &str, plain: &str, cast: &[String]) -> Vec<(Rule, String, u8)> {
    let mut flaws = Vec::new();
    if let Some(name) = leading_name(plain)
        && !names_match(name, speaker)
    {
        flaws.push((
            Rule::WrongSpeaker,
            format!("speaks as '{name}' in {speaker}'s turn"),
            4,
        ));
    }
    let others = lines_for_others(plain, speaker);
    if !others.is_empty() {
        let known = others
            .iter()
            .any(|(_, name)| is_cast_member(name, speaker, cast));
        // An unknown `Word: ` may be a label, not a character.
        let severity = if known { 3 } else { 2 } + u8::from(others.len() > 1);
        let mut names: Vec<&str> = others.iter().map(|(_, n)| n.as_str()).collect();
        names.dedup();
        flaws.push((
            Rule::LineForOther,
            format!(
                "writes {} line(s) for {} in {speaker}'s turn",
                others.len(),
                names.join(", ")
            ),
            severity,
        ));
    }
    if let Some(name) = self_naming(plain, speaker, cast) {
        flaws.push((
            Rule::SelfNaming,
            format!("{speaker} calls themself '{name}'"),
            3,
        ));
    }
    flaws
}

/// The `Name: ` a turn opens with, if its first line has one.
pub fn leading_name(plain: &str) -> Option<&str> {
    let first = plain.trim_start().lines().next()?;
    let (name, _) = first.split_once(": ")?;
    looks_like_name(name).then_some(name.trim())
}

/// Whether `name` is someone in the scene other than `speaker`.
fn is_cast_member(name: &str, speaker: &str, cast: &[String]) -> bool {
    cast.iter()
        .any(|member| !names_match(member, speaker) && names_match(name, member))
}

/// Phrases after which a name follows. "I am" and "I'm" only count with a
/// cast member's name ("I am English" is not a name); the others with any
/// capitalised word.
const NAMING: &[(&str, bool)] = &[
    ("my name is ", false),
    ("call me ", false),
    ("i am ", true),
    ("i'm ", true),
    ("i’m ", true),
];

/// A name other than the speaker's that the speaker gives as their own.
fn self_naming(plain: &str, speaker: &str, cast: &[String]) -> Option<String> {
    let lower = plain.to_lowercase();
    // Lower-casing can change byte lengths outside ASCII: read the original
    // only where the two line up.
    if lower.len() != plain.len() {
        return None;
    }
    for (phrase, cast_only) in NAMING {
        for (at, _) in lower.match_indices(phrase) {
            let starts_word = at == 0
                || !lower[..at]
                    .chars()
                    .next_back()
                    .is_some_and(char::is_alphanumeric);
            if !starts_word {
                continue;
            }
            let rest = &plain[at + phrase.len()..];
            let word: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || matches!(c, '\'' | '’'))
                .collect();
            let possessive = word.ends_with("'s") || word.ends_with("’s");
            if possessive || !word.chars().next().is_some_and(char::is_uppercase) {
                continue;
            }
            if names_match(&word, speaker) {
                continue;
            }
            let member = is_cast_member(&word, speaker, cast);
            if member || !cast_only {
                return Some(word);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cast() -> Vec<String> {
        ["Jay Gatsby", "Nick Carraway", "Environment"]
            .map(String::from)
            .to_vec()
    }

    fn rules(speaker: &str, plain: &str) -> Vec<(Rule, u8)> {
        check(speaker, plain, &cast())
            .into_iter()
            .map(|(r, _, s)| (r, s))
            .collect()
    }

    #[test]
    fn the_prefix_must_name_the_speaker() {
        assert_eq!(
            rules("Jay Gatsby", "Ada: Only on Mondays."),
            [(Rule::WrongSpeaker, 4)]
        );
        assert_eq!(
            rules("Jay Gatsby", "Nick: I see."),
            [(Rule::WrongSpeaker, 4)]
        );
        assert!(rules("Jay Gatsby", "Gatsby: Old sport!").is_empty());
        assert!(rules("Jay Gatsby", "Mr. Gatsby: Old sport!").is_empty());
        assert!(rules("Jay Gatsby", "I see, old sport.").is_empty());
    }

    #[test]
    fn lines_for_others_by_who_they_are_for() {
        // A cast member: 3; two lines: one more.
        assert_eq!(
            rules("Jay Gatsby", "Gatsby: Well.\nNick: Indeed."),
            [(Rule::LineForOther, 3)]
        );
        assert_eq!(
            rules("Jay Gatsby", "Well.\nNick: Indeed.\nEnvironment: Rain."),
            [(Rule::LineForOther, 4)]
        );
        // An unknown label-like word: 2.
        assert_eq!(
            rules("Jay Gatsby", "Well.\nNote: the house is vast."),
            [(Rule::LineForOther, 2)]
        );
        // A line of one's own is not for someone else.
        assert!(rules("Jay Gatsby", "Well.\nGatsby: Indeed.").is_empty());
    }

    #[test]
    fn naming_oneself_after_someone_else() {
        assert_eq!(
            rules("Jay Gatsby", "Good evening. I am Nick, your neighbour."),
            [(Rule::SelfNaming, 3)]
        );
        assert_eq!(
            rules("Jay Gatsby", "They call me Ada, you know. My name is Ada."),
            [(Rule::SelfNaming, 3)]
        );
        // Not names, or the speaker's own.
        assert!(rules("Jay Gatsby", "I am English by education.").is_empty());
        assert!(rules("Jay Gatsby", "I'm Gatsby, old sport.").is_empty());
        assert!(rules("Jay Gatsby", "I'm Nick's neighbour.").is_empty());
        assert!(rules("Jay Gatsby", "Mail came. Call me tomorrow.").is_empty());
        assert!(rules("Jay Gatsby", "Siam Nick").is_empty());
    }
}
