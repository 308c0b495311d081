//! The scene judge: reads a simulated scene (plans removed, inner thoughts
//! kept) and lists its flaws per dimension with a severity from 1 to 5.
//!
//! A local judge answers under a GBNF grammar shaped like the answer's JSON
//! schema, with every list and string bounded, so that any model — even one
//! with random weights — finishes within [`max_answer_chars`] tokens with an
//! answer that parses. A remote judge without grammars may wrap the JSON in
//! prose; the parser then reads the outermost object.

use serde::{Deserialize, Serialize};

use super::score::Dimension;
use her_core::format::{strip_speaker_prefix, strip_system_thinking};

/// Flaws listed per dimension at most.
pub const MAX_FLAWS: usize = 5;
/// Characters in one flaw's description at most.
pub const FLAW_MAX_CHARS: usize = 80;
/// Profile characters shown to the judge per character.
const PROFILE_CHARS: usize = 500;
/// Characters of one transcript line shown to the judge.
const LINE_CHARS: usize = 1500;
/// Printable ASCII without `"`, `\` and `<`: no escapes to get wrong, no way
/// to spell a ChatML marker, and one character per token at least (so the
/// character bound is a token bound).
const TEXT_CLASS: &str = r"[\x20\x21\x23-\x3B\x3D-\x5B\x5D-\x7E]";
const EXCERPT_CHARS: usize = 80;

/// One flaw the judge found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flaw {
    pub flaw: String,
    /// 1 (minor) to 5 (severe).
    pub severity: u8,
}

/// The judge's answer: flaws per dimension, in [`Dimension::ALL`] order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JudgeAnswer {
    #[serde(default)]
    pub storyline_consistency: Vec<Flaw>,
    #[serde(default)]
    pub anthropomorphism: Vec<Flaw>,
    #[serde(default)]
    pub character_fidelity: Vec<Flaw>,
    #[serde(default)]
    pub storyline_quality: Vec<Flaw>,
}

impl JudgeAnswer {
    pub fn flaws(&self, dimension: Dimension) -> &[Flaw] {
        match dimension {
            Dimension::StorylineConsistency => &self.storyline_consistency,
            Dimension::Anthropomorphism => &self.anthropomorphism,
            Dimension::CharacterFidelity => &self.character_fidelity,
            Dimension::StorylineQuality => &self.storyline_quality,
        }
    }

    /// Σ severity per dimension, in [`Dimension::ALL`] order.
    /// Per dimension, the sum of its distinct flaws' severities. A flaw
    /// listed again in the same dimension (the same words, ignoring case and
    /// spacing) counts once, at its highest severity: a repeated line is the
    /// judge looping, not a second flaw.
    pub fn severity_sums(&self) -> [u32; 4] {
        Dimension::ALL.map(|d| {
            let mut distinct: std::collections::HashMap<String, u8> = Default::default();
            for f in self.flaws(d) {
                let key = f
                    .flaw
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .to_lowercase();
                let worst = distinct.entry(key).or_insert(0);
                *worst = (*worst).max(f.severity);
            }
            distinct.values().map(|&s| u32::from(s)).sum()
        })
    }
}

/// Why an answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("the judge's answer holds no JSON object: …{excerpt}")]
    NoObject { excerpt: String },
    #[error("the judge's answer is not the flaw list asked for ({reason}): {excerpt}…")]
    Shape { reason: String, excerpt: String },
    #[error("a flaw's severity is '{severity}', not 1 to 5")]
    Severity { severity: i64 },
}

/// What the judge is shown about the scene.
#[derive(Debug, Clone, Copy)]
pub struct JudgeCase<'a> {
    pub book: &'a str,
    pub scenario: &'a str,
    /// (name, profile) of each character played.
    pub characters: &'a [(String, String)],
    /// (speaker, raw text) in order, plans still in; the prompt removes them.
    pub transcript: &'a [(String, String)],
}

/// The full ChatML prompt, ending where the judge's answer starts.
pub fn judge_prompt(case: &JudgeCase) -> String {
    let mut characters = String::new();
    for (name, profile) in case.characters {
        characters.push_str(&format!(
            "**{name}**: {}\n",
            clip(profile.trim(), PROFILE_CHARS)
        ));
    }
    let mut lines = String::new();
    for (speaker, text) in case.transcript {
        let shown = transcript_text(text);
        let shown = strip_speaker_prefix(&shown, speaker);
        lines.push_str(&format!(
            "{speaker}: {}\n\n",
            clip(shown.trim(), LINE_CHARS)
        ));
    }
    if lines.is_empty() {
        lines.push_str("(nobody spoke)\n\n");
    }
    let system = format!(
        "You are a strict critic of role-play. An AI played every character of \
a scene from {book}. List the flaws of its performance in four dimensions:\n\
- storyline_consistency: contradicts the scenario, earlier lines or established facts.\n\
- anthropomorphism: unlike a real person: robotic, repetitive, over-explaining, flat emotion, \
no initiative.\n\
- character_fidelity: speaks, acts or thinks unlike the character's profile or time; knows \
what the character could not.\n\
- storyline_quality: the plot stalls, loops or makes no sense; lines for other characters.\n\
Text in <role_thinking> is a character's unspoken thought; <role_action> is a visible action. \
Give each flaw one sentence (at most {FLAW_MAX_CHARS} characters; no double quotes, \
backslashes or <) and a severity from 1 (minor) to 5 (severe); at most {MAX_FLAWS} flaws per \
dimension, [] when there are none. Answer only with JSON:\n\
{{\"storyline_consistency\": [{{\"flaw\": \"...\", \"severity\": 1}}], \"anthropomorphism\": [], \
\"character_fidelity\": [], \"storyline_quality\": []}}",
        book = case.book.trim(),
    );
    let user = format!(
        "## Scenario\n\n{scenario}\n\n## Characters\n\n{characters}\n\
## Simulated scene\n\n{lines}",
        scenario = case.scenario.trim(),
    );
    her_core::chatml::exchange(&system, &user)
}

/// What the judge sees of one line: the plan removed, inner thoughts kept
/// (they show how well the character is understood), as CoSER's judge does.
pub fn transcript_text(raw: &str) -> String {
    strip_system_thinking(raw)
}

fn clip(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// The grammar's pieces; the GBNF text and the length bound both come from
/// them so they cannot drift apart.
#[derive(Debug, Clone, Copy)]
enum Piece {
    Lit(&'static str),
    /// An optional space or newline.
    Ws,
    /// A flaw list: 0 to `MAX_FLAWS` items.
    List,
    /// The flaw text without its quotes.
    Text,
    /// One digit 1-5.
    Severity,
}

use Piece::{List, Lit, Severity, Text, Ws};

#[rustfmt::skip]
const ROOT: &[Piece] = &[
    Lit("{"), Ws, Lit("\"storyline_consistency\":"), Ws, List, Lit(","),
    Ws, Lit("\"anthropomorphism\":"), Ws, List, Lit(","),
    Ws, Lit("\"character_fidelity\":"), Ws, List, Lit(","),
    Ws, Lit("\"storyline_quality\":"), Ws, List, Ws, Lit("}"),
];
#[rustfmt::skip]
const ITEM: &[Piece] = &[
    Lit("{"), Ws, Lit("\"flaw\":"), Ws, Lit("\""), Text, Lit("\","), Ws,
    Lit("\"severity\":"), Ws, Severity, Ws, Lit("}"),
];
const SEPARATOR: &[Piece] = &[Lit(","), Ws];

fn literal(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', r"\\").replace('"', "\\\""))
}

fn sequence(pieces: &[Piece]) -> String {
    pieces
        .iter()
        .map(|p| match *p {
            Lit(text) => literal(text),
            Ws => "ws".to_string(),
            List => "list".to_string(),
            Text => "text".to_string(),
            Severity => "[1-5]".to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// llama.cpp GBNF (root rule `root`) for exactly the answers
/// `{"storyline_consistency": [...], "anthropomorphism": [...],
/// "character_fidelity": [...], "storyline_quality": [...]}` whose items are
/// `{"flaw": TEXT, "severity": 1-5}`, every length bounded.
pub fn answer_grammar() -> String {
    [
        format!("root ::= {}\n", sequence(ROOT)),
        format!(
            "list ::= \"[\" ws (item ({} item){{0,{}}} ws)? \"]\"\n",
            sequence(SEPARATOR),
            MAX_FLAWS - 1
        ),
        format!("item ::= {}\n", sequence(ITEM)),
        format!("text ::= {TEXT_CLASS}{{1,{FLAW_MAX_CHARS}}}\n"),
        "ws ::= [ \\n]?\n".to_string(),
    ]
    .concat()
}

fn max_len(pieces: &[Piece]) -> usize {
    pieces
        .iter()
        .map(|p| match *p {
            Lit(text) => text.len(),
            Ws | Severity => 1,
            Text => FLAW_MAX_CHARS,
            List => {
                let items = MAX_FLAWS * max_len(ITEM) + (MAX_FLAWS - 1) * max_len(SEPARATOR);
                2 + 1 + items + 1
            }
        })
        .sum()
}

/// The longest answer the grammar accepts, in characters (all ASCII). Each
/// token the grammar lets through adds at least one character, so this is a
/// safe `max_new_tokens`.
pub fn max_answer_chars() -> usize {
    max_len(ROOT)
}

/// Reads a judge's answer: the whole text as the JSON object, or else the
/// outermost `{…}` in it (a judge that wrote prose around its JSON).
pub fn parse_answer(text: &str) -> Result<JudgeAnswer, AnswerError> {
    let trimmed = text.trim();
    let object = match serde_json::from_str::<serde_json::Value>(trimmed) {
        Ok(value) => value,
        Err(_) => {
            let (Some(start), Some(end)) = (trimmed.find('{'), trimmed.rfind('}')) else {
                let skip = trimmed.chars().count().saturating_sub(EXCERPT_CHARS);
                return Err(AnswerError::NoObject {
                    excerpt: trimmed.chars().skip(skip).collect(),
                });
            };
            let inner = trimmed.get(start..=end).unwrap_or_default();
            serde_json::from_str(inner).map_err(|e| AnswerError::Shape {
                reason: e.to_string(),
                excerpt: inner.chars().take(EXCERPT_CHARS).collect(),
            })?
        }
    };
    let excerpt = || object.to_string().chars().take(EXCERPT_CHARS).collect();
    if !object.is_object() {
        return Err(AnswerError::Shape {
            reason: "not an object".into(),
            excerpt: excerpt(),
        });
    }
    // Severities are read wide first, so 0 or 9 is reported as such.
    let wide: WideAnswer =
        serde_json::from_value(object.clone()).map_err(|e| AnswerError::Shape {
            reason: e.to_string(),
            excerpt: excerpt(),
        })?;
    Ok(JudgeAnswer {
        storyline_consistency: narrow(wide.storyline_consistency)?,
        anthropomorphism: narrow(wide.anthropomorphism)?,
        character_fidelity: narrow(wide.character_fidelity)?,
        storyline_quality: narrow(wide.storyline_quality)?,
    })
}

#[derive(Deserialize)]
struct WideFlaw {
    flaw: String,
    severity: i64,
}

#[derive(Deserialize)]
struct WideAnswer {
    #[serde(default)]
    storyline_consistency: Vec<WideFlaw>,
    #[serde(default)]
    anthropomorphism: Vec<WideFlaw>,
    #[serde(default)]
    character_fidelity: Vec<WideFlaw>,
    #[serde(default)]
    storyline_quality: Vec<WideFlaw>,
}

fn narrow(flaws: Vec<WideFlaw>) -> Result<Vec<Flaw>, AnswerError> {
    flaws
        .into_iter()
        .map(|f| match u8::try_from(f.severity) {
            Ok(severity @ 1..=5) => Ok(Flaw {
                flaw: f.flaw,
                severity,
            }),
            _ => Err(AnswerError::Severity {
                severity: f.severity,
            }),
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAFE_TEXT: &str = "[ !#-;=-\\[\\]-~]{1,80}";

    #[test]
    fn grammar_text() {
        let g = answer_grammar();
        assert!(g.starts_with("root ::= \"{\" ws \"\\\"storyline_consistency\\\":\" ws list"));
        assert!(g.contains("list ::= \"[\" ws (item (\",\" ws item){0,4} ws)? \"]\"\n"));
        assert!(g.contains("\"\\\"severity\\\":\" ws [1-5] ws \"}\"\n"));
        assert!(g.contains("]{1,80}\n"));
        // llama.cpp rule names: letters, digits and '-' only.
        for line in g.lines() {
            let name = line.split(" ::= ").next().unwrap();
            assert!(name.chars().all(|c| c.is_ascii_lowercase()), "{name}");
        }
    }

    /// The longest answer, by hand: every optional space taken, five
    /// flaws of the longest text everywhere.
    #[test]
    fn longest_answer_matches_the_bound() {
        let text = "x".repeat(FLAW_MAX_CHARS);
        let item = format!("{{\n\"flaw\":\n\"{text}\",\n\"severity\":\n5\n}}");
        let list = format!("[\n{}\n]", vec![item; MAX_FLAWS].join(",\n"));
        let body: Vec<String> = Dimension::ALL
            .iter()
            .map(|d| format!("\n\"{}\":\n{list}", d.key()))
            .collect();
        let longest = format!("{{{}\n}}", body.join(","));
        assert_eq!(longest.len(), max_answer_chars());
        let answer = parse_answer(&longest).unwrap();
        assert_eq!(answer.flaws(Dimension::Anthropomorphism).len(), MAX_FLAWS);
        // Five copies of one flaw are one flaw.
        assert_eq!(answer.severity_sums(), [5; 4]);
    }

    #[test]
    fn a_repeated_flaw_counts_once_at_its_highest_severity() {
        let flaw = |text: &str, severity| Flaw {
            flaw: text.into(),
            severity,
        };
        let answer = JudgeAnswer {
            storyline_consistency: vec![
                flaw("The date changes.", 2),
                flaw("the  date changes. ", 4),
                flaw("Bob forgets the letter.", 1),
            ],
            anthropomorphism: vec![flaw("Flat.", 3), flaw("Flat.", 3)],
            ..JudgeAnswer::default()
        };
        assert_eq!(answer.severity_sums(), [5, 3, 0, 0]);
    }

    /// Walks the grammar, each choice made by `pick(n)` in `0..n`.
    fn walk(pieces: &[Piece], pick: &mut dyn FnMut(usize) -> usize, text: &str) -> String {
        let mut out = String::new();
        for piece in pieces {
            match *piece {
                Lit(s) => out.push_str(s),
                Ws => out.push_str(["", " ", "\n"][pick(3)]),
                Text => out.push_str(text),
                Severity => out.push_str(&(1 + pick(5)).to_string()),
                List => {
                    out.push('[');
                    out.push_str(&walk(&[Ws], pick, text));
                    let n = pick(MAX_FLAWS + 1);
                    for i in 0..n {
                        if i > 0 {
                            out.push_str(&walk(SEPARATOR, pick, text));
                        }
                        out.push_str(&walk(ITEM, pick, text));
                    }
                    if n > 0 {
                        out.push_str(&walk(&[Ws], pick, text));
                    }
                    out.push(']');
                }
            }
        }
        out
    }

    fn answer() -> impl Strategy<Value = JudgeAnswer> {
        let flaw = (SAFE_TEXT, 1..=5u8).prop_map(|(flaw, severity)| Flaw { flaw, severity });
        let list = prop::collection::vec(flaw, 0..=MAX_FLAWS);
        (list.clone(), list.clone(), list.clone(), list).prop_map(|(a, b, c, d)| JudgeAnswer {
            storyline_consistency: a,
            anthropomorphism: b,
            character_fidelity: c,
            storyline_quality: d,
        })
    }

    proptest! {
        #[test]
        fn grammar_outputs_parse_within_the_bound(
            seeds in prop::collection::vec(any::<u8>(), 1..64), text in SAFE_TEXT,
        ) {
            let mut i = 0;
            let mut pick = |n: usize| { i += 1; usize::from(seeds[i % seeds.len()]) % n };
            let out = walk(ROOT, &mut pick, &text);
            prop_assert!(out.len() <= max_answer_chars());
            let answer = parse_answer(&out).unwrap();
            for d in Dimension::ALL {
                prop_assert!(answer.flaws(d).len() <= MAX_FLAWS);
                prop_assert!(answer.flaws(d).iter().all(|f| f.flaw == text));
            }
        }

        #[test]
        fn serialised_answers_parse_back(a in answer()) {
            prop_assert_eq!(parse_answer(&serde_json::to_string(&a).unwrap()).unwrap(), a);
        }

        #[test]
        fn parse_never_panics(text in ".{0,300}") {
            let _ = parse_answer(&text);
            let _ = parse_answer(&format!("{{{text}}}"));
        }
    }

    #[test]
    fn prose_around_the_json_and_bad_answers() {
        let prose = "Here is my review.\n```json\n{\"storyline_consistency\": [{\"flaw\": \"The \
                     date changes.\", \"severity\": 3}], \"anthropomorphism\": []}\n```\nDone.";
        let a = parse_answer(prose).unwrap();
        assert_eq!(a.severity_sums(), [3, 0, 0, 0]);
        assert!(matches!(
            parse_answer("no json here"),
            Err(AnswerError::NoObject { .. })
        ));
        let zero = "{\"anthropomorphism\": [{\"flaw\": \"x\", \"severity\": 0}]}";
        assert_eq!(
            parse_answer(zero),
            Err(AnswerError::Severity { severity: 0 })
        );
        assert!(matches!(
            parse_answer("[1, 2]"),
            Err(AnswerError::Shape { .. })
        ));
        assert!(matches!(
            parse_answer("{\"anthropomorphism\": \"none\"}"),
            Err(AnswerError::Shape { .. })
        ));
    }

    #[test]
    fn the_judge_sees_thoughts_but_no_plans() {
        let transcript = vec![
            (
                "Mr. Darcy".to_string(),
                "<system_thinking>PLAN-D</system_thinking>Mr. Darcy: <role_thinking>THOUGHT-D\
                 </role_thinking><role_action>bows</role_action>Madam."
                    .to_string(),
            ),
            ("Environment".to_string(), "Rain falls.".to_string()),
        ];
        let characters = vec![("Mr. Darcy".to_string(), "Proud.".to_string())];
        let case = JudgeCase {
            book: "Pride and Prejudice",
            scenario: "A ball.",
            characters: &characters,
            transcript: &transcript,
        };
        let p = judge_prompt(&case);
        assert!(!p.contains("PLAN-D") && !p.contains("system_thinking"));
        assert!(p.contains("THOUGHT-D") && p.contains("<role_action>bows</role_action>Madam."));
        assert!(p.contains("Environment: Rain falls.\n\n"));
        assert!(p.contains("**Mr. Darcy**: Proud.\n"));
        assert!(p.ends_with("<|im_start|>assistant\n"));
        for d in Dimension::ALL {
            assert!(p.contains(d.key()));
        }
    }

    #[test]
    fn clipping_counts_characters() {
        assert_eq!(clip("äöü", 2), "äö…");
        assert_eq!(clip("ab", 2), "ab");
    }
}
