//! Choosing who speaks next in a scene: round robin, or the model picks from
//! the cast with a grammar-constrained prompt.

use crate::format::strip_role_thinking;

use super::Line;

/// The speaker after `last` in `speakers`, wrapping around; the first one
/// when `last` is not a speaker (e.g. the user spoke).
pub fn round_robin(speakers: &[String], last: Option<&str>) -> Option<String> {
    let next = match last.and_then(|l| speakers.iter().position(|s| s == l)) {
        Some(i) => (i + 1) % speakers.len().max(1),
        None => 0,
    };
    speakers.get(next).cloned()
}

/// A prompt asking a model who should speak next; the answer is constrained
/// by [`speaker_grammar`].
pub fn next_speaker_prompt(
    book: &str,
    scenario: &str,
    speakers: &[String],
    transcript: &[Line],
    recent: usize,
) -> String {
    let names = speakers.join(", ");
    let mut lines = String::new();
    let start = transcript.len().saturating_sub(recent);
    for line in &transcript[start..] {
        // The director sees what happened, not what anyone privately thought.
        let heard = strip_role_thinking(&line.text);
        lines.push_str(&format!("{}: {}\n\n", line.speaker, heard.trim()));
    }
    let system = format!(
        "You direct a scene from {book}. Scenario: {scenario}\n\
Decide who speaks next so that the scene stays natural and keeps moving. \
Answer with exactly one name from this list and nothing else: {names}."
    );
    let user = format!("{lines}Who speaks next? One of: {names}.");
    crate::chatml::exchange(&system, &user)
}

/// GBNF that accepts exactly one of the names.
pub fn speaker_grammar(speakers: &[String]) -> String {
    let alternatives: Vec<String> = speakers
        .iter()
        .map(|name| {
            let escaped: String = name
                .chars()
                .flat_map(|c| match c {
                    '"' => vec!['\\', '"'],
                    '\\' => vec!['\\', '\\'],
                    c => vec![c],
                })
                .collect();
            format!("\"{escaped}\"")
        })
        .collect();
    format!("root ::= {}\n", alternatives.join(" | "))
}

/// Reads a speaker from a model's answer: an exact (case-insensitive) name,
/// else the name mentioned first.
pub fn parse_next_speaker(answer: &str, speakers: &[String]) -> Option<String> {
    let cleaned = answer.trim().trim_end_matches(['.', '!', ':', ',']).trim();
    if let Some(exact) = speakers.iter().find(|s| s.eq_ignore_ascii_case(cleaned)) {
        return Some(exact.clone());
    }
    let lower = answer.to_lowercase();
    speakers
        .iter()
        .filter_map(|s| lower.find(&s.to_lowercase()).map(|at| (at, s)))
        .min_by_key(|(at, s)| (*at, std::cmp::Reverse(s.len())))
        .map(|(_, s)| s.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["Elizabeth Bennet", "Mr. Darcy", "Environment"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn round_robin_wraps_and_starts_after_the_user() {
        let n = names();
        assert_eq!(
            round_robin(&n, Some("Mr. Darcy")).as_deref(),
            Some("Environment")
        );
        assert_eq!(
            round_robin(&n, Some("Environment")).as_deref(),
            Some("Elizabeth Bennet")
        );
        assert_eq!(
            round_robin(&n, Some("User")).as_deref(),
            Some("Elizabeth Bennet")
        );
        assert_eq!(round_robin(&[], None), None);
    }

    #[test]
    fn parsing_is_tolerant() {
        let n = names();
        assert_eq!(
            parse_next_speaker("Mr. Darcy", &n).as_deref(),
            Some("Mr. Darcy")
        );
        assert_eq!(
            parse_next_speaker(" mr. darcy.\n", &n).as_deref(),
            Some("Mr. Darcy")
        );
        assert_eq!(
            parse_next_speaker("I think Elizabeth Bennet, then Mr. Darcy", &n).as_deref(),
            Some("Elizabeth Bennet")
        );
        assert_eq!(parse_next_speaker("nobody", &n), None);
    }

    #[test]
    fn grammar_lists_every_name_escaped() {
        let g = speaker_grammar(&["A \"B\"".to_string(), "C".to_string()]);
        assert_eq!(g, "root ::= \"A \\\"B\\\"\" | \"C\"\n");
    }

    #[test]
    fn the_director_does_not_see_inner_thoughts() {
        let t = [Line::new(
            "Mr. Darcy",
            "<role_thinking>secret</role_thinking>Hello.",
        )];
        let p = next_speaker_prompt("Pride and Prejudice", "A ball.", &names(), &t, 8);
        assert!(p.contains("Mr. Darcy: Hello."));
        assert!(!p.contains("secret"));
    }
}
