//! A pairwise judge in HER-RM's manner (her-format.md §4): the prompt, a GBNF
//! grammar that keeps a local model's verdict short and parseable, the parser
//! (also for unconstrained remote judges), order debiasing and agreement with
//! human annotators.

use serde::{Deserialize, Serialize};

use crate::format::strip_system_thinking;
use crate::prefs::{ContextMessage, PRINCIPLE_DIMENSIONS, Verdict, her_rm_context};

/// One comparison: the character being played, the dialogue so far, and two
/// raw replies (plans included; the judge never sees them).
#[derive(Debug, Clone, Copy)]
pub struct JudgeCase<'a> {
    pub character: &'a str,
    pub context: &'a [ContextMessage],
    pub cand_1: &'a str,
    pub cand_2: &'a str,
}

/// One case-specific principle and the candidate it favours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principle {
    pub dimension: String,
    pub principle: String,
    /// "cand_1", "cand_2", "both" or "neither".
    pub favours: String,
}

/// What the judge decided, in the order the candidates were shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Judgement {
    /// Empty when only the verdict could be read from free prose.
    #[serde(default)]
    pub principles: Vec<Principle>,
    #[serde(
        rename = "better_response",
        serialize_with = "serialize_better",
        deserialize_with = "deserialize_better"
    )]
    pub better: Verdict,
}

/// Why a judge's output has no usable verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JudgeParseError {
    #[error("the judge's output has no \"better_response\" field: …{excerpt}")]
    NoVerdict { excerpt: String },
    #[error("\"better_response\" is not \"cand_1\", \"cand_2\" or \"tie\": {excerpt}…")]
    UnknownVerdict { excerpt: String },
}

const FAVOURS: [&str; 4] = ["cand_1", "cand_2", "both", "neither"];
const BETTER: [&str; 3] = ["cand_1", "cand_2", "tie"];
const MAX_PRINCIPLES: usize = 5;
const PRINCIPLE_MAX_CHARS: usize = 160;
/// Printable ASCII without `"` and `\` (no escapes to get wrong) and without
/// `<`, so a special token whose text is `<|im_start|>` (which llama.cpp
/// matches by its text) cannot slip in and trip a stop string. ASCII only,
/// because a byte-fallback token can be a third of a character: this way each
/// token adds at least one character and the character budget is a token budget.
const PRINCIPLE_CLASS: &str = r"[\x20\x21\x23-\x3B\x3D-\x5B\x5D-\x7E]";
const EXCERPT_CHARS: usize = 80;

/// The grammar's building blocks; both the GBNF text and the length bound are
/// derived from them so the two cannot drift apart.
#[derive(Debug, Clone, Copy)]
enum Part {
    Lit(&'static str),
    /// An optional single space or newline.
    Ws,
    /// A JSON string holding one of the words; a rule of its own.
    Word(&'static str, &'static [&'static str]),
    /// The principle text, without its quotes.
    Text,
    /// 1 to `MAX_PRINCIPLES` items separated by `SEPARATOR`.
    Items,
}

use Part::{Items, Lit, Text, Word, Ws};

#[rustfmt::skip]
const ROOT: &[Part] = &[
    Lit("{"), Ws, Lit("\"principles\":"), Ws, Lit("["), Ws, Items, Ws, Lit("],"), Ws,
    Lit("\"better_response\":"), Ws, Word("verdict", &BETTER), Ws, Lit("}"),
];
#[rustfmt::skip]
const ITEM: &[Part] = &[
    Lit("{"), Ws, Lit("\"dimension\":"), Ws, Word("dimension", &PRINCIPLE_DIMENSIONS), Lit(","),
    Ws, Lit("\"principle\":"), Ws, Lit("\""), Text, Lit("\","), Ws, Lit("\"favours\":"), Ws,
    Word("favours", &FAVOURS), Ws, Lit("}"),
];
const SEPARATOR: &[Part] = &[Lit(","), Ws];

/// A GBNF literal: the text in double quotes, with `"` and `\` escaped.
fn gbnf_literal(text: &str) -> String {
    let escaped = text.replace('\\', r"\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

fn gbnf_sequence(parts: &[Part]) -> String {
    let symbol = |part: &Part| match *part {
        Lit(text) => gbnf_literal(text),
        Ws => "ws".into(),
        Word(rule, _) => rule.into(),
        Text => "text".into(),
        Items => format!(
            "item ({} item){{0,{}}}",
            gbnf_sequence(SEPARATOR),
            MAX_PRINCIPLES - 1
        ),
    };
    parts.iter().map(symbol).collect::<Vec<_>>().join(" ")
}

/// The longest text `parts` can produce (all of it ASCII: chars = bytes).
fn max_len(parts: &[Part]) -> usize {
    parts
        .iter()
        .map(|part| match *part {
            Lit(text) => text.chars().count(),
            Ws => 1,
            Word(_, words) => 2 + words.iter().map(|w| w.chars().count()).max().unwrap_or(0),
            Text => PRINCIPLE_MAX_CHARS,
            Items => MAX_PRINCIPLES * max_len(ITEM) + (MAX_PRINCIPLES - 1) * max_len(SEPARATOR),
        })
        .sum()
}

/// llama.cpp GBNF (root rule `root`) for exactly the verdict objects
/// `{"principles": [1 to 5 × {"dimension", "principle", "favours"}],
/// "better_response": …}`, with whitespace and text bounded so that even a
/// random model finishes within [`max_verdict_chars`] tokens.
pub fn verdict_grammar() -> String {
    let words = |rule: &str, words: &[&str]| {
        let alternatives: Vec<String> = words
            .iter()
            .map(|w| gbnf_literal(&format!("\"{w}\"")))
            .collect();
        format!("{rule} ::= {}\n", alternatives.join(" | "))
    };
    [
        format!("root ::= {}\n", gbnf_sequence(ROOT)),
        format!("item ::= {}\n", gbnf_sequence(ITEM)),
        words("dimension", &PRINCIPLE_DIMENSIONS),
        words("favours", &FAVOURS),
        words("verdict", &BETTER),
        format!("text ::= {PRINCIPLE_CLASS}{{1,{PRINCIPLE_MAX_CHARS}}}\n"),
        "ws ::= [ \\n]?\n".into(),
    ]
    .concat()
}

/// The longest string [`verdict_grammar`] accepts. Each token the grammar
/// lets through adds at least one (ASCII) character, so this is a safe
/// `max_new_tokens`; the end-of-generation token that follows is not counted.
pub fn max_verdict_chars() -> usize {
    max_len(ROOT)
}

/// The full ChatML prompt, ending where the assistant's answer starts.
pub fn judge_prompt(case: &JudgeCase) -> String {
    let who = case.character;
    let dimensions = PRINCIPLE_DIMENSIONS.join(", ");
    let context = match her_rm_context(case.context) {
        c if c.trim().is_empty() => "(none)".to_string(),
        c => c,
    };
    // The judge compares what the character shows, not how it was planned.
    let cand_1 = strip_system_thinking(case.cand_1);
    let cand_2 = strip_system_thinking(case.cand_2);
    let system = format!(
        "You judge role-play: which candidate reply better plays {who}, \
continuing the dialogue?\n\
1. Write 3-5 principles for this case, each tagged with one dimension: {dimensions}. \
Negative principles first: a candidate violating one loses.\n\
2. For each, say which candidate it favours: cand_1, cand_2, both or neither.\n\
3. Decide: cand_1, cand_2 or tie. role_thinking counts; candidate order does not.\n\
Answer only with JSON, each principle one sentence (at most {PRINCIPLE_MAX_CHARS} \
characters; no double quotes, backslashes or <):\n\
{{\"principles\": [{{\"dimension\": \"...\", \"principle\": \"...\", \"favours\": \"...\"}}], \
\"better_response\": \"cand_1|cand_2|tie\"}}"
    );
    let user = format!(
        "## Dialogue context\n\n{context}\n\n## Response Candidate 1\n\n{}\n\n\
## Response Candidate 2\n\n{}",
        cand_1.trim_end(),
        cand_2.trim_end(),
    );
    crate::chatml::exchange(&system, &user)
}

/// Reads a judge's answer: the grammar's JSON object, or failing that (a
/// remote judge writing prose around it) the last `"better_response"`.
pub fn parse_judgement(text: &str) -> Result<Judgement, JudgeParseError> {
    if let Ok(judgement) = serde_json::from_str::<Judgement>(text.trim()) {
        return Ok(judgement);
    }
    let mut last_key = None;
    let mut last_verdict = None;
    let mut from = 0;
    while let Some(at) = text[from..].find(KEY) {
        let after = from + at + KEY.len();
        last_key = Some(from + at);
        if let Some(verdict) = verdict_after_key(&text[after..]) {
            last_verdict = Some(verdict);
        }
        from = after;
    }
    match (last_verdict, last_key) {
        (Some(better), _) => Ok(Judgement {
            principles: Vec::new(),
            better,
        }),
        (None, Some(at)) => Err(JudgeParseError::UnknownVerdict {
            excerpt: text[at..].chars().take(EXCERPT_CHARS).collect(),
        }),
        (None, None) => {
            let skip = text.chars().count().saturating_sub(EXCERPT_CHARS);
            Err(JudgeParseError::NoVerdict {
                excerpt: text.chars().skip(skip).collect(),
            })
        }
    }
}

const KEY: &str = "\"better_response\"";

/// `\s*:\s*"(cand_1|cand_2|tie)"` at the start of `rest`.
fn verdict_after_key(rest: &str) -> Option<Verdict> {
    let value = rest
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    BETTER.iter().find_map(|word| {
        value.strip_prefix(word)?.strip_prefix('"')?;
        from_better_word(word)
    })
}

/// HER-RM's spelling of a verdict ("cand_1"), which is not `Verdict`'s.
fn better_word(verdict: Verdict) -> Option<&'static str> {
    match verdict {
        Verdict::Cand1 => Some("cand_1"),
        Verdict::Cand2 => Some("cand_2"),
        Verdict::Tie => Some("tie"),
        Verdict::BothBad => None,
    }
}

fn from_better_word(word: &str) -> Option<Verdict> {
    [Verdict::Cand1, Verdict::Cand2, Verdict::Tie]
        .into_iter()
        .find(|v| better_word(*v) == Some(word))
}

fn serialize_better<S: serde::Serializer>(verdict: &Verdict, s: S) -> Result<S::Ok, S::Error> {
    let word = better_word(*verdict)
        .ok_or_else(|| serde::ser::Error::custom("a judge has no \"both bad\" verdict"))?;
    s.serialize_str(word)
}

fn deserialize_better<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Verdict, D::Error> {
    let word = String::deserialize(d)?;
    from_better_word(&word).ok_or_else(|| serde::de::Error::unknown_variant(&word, &BETTER))
}

/// The judge's three labels; "both bad" is a human-only label and counts as a tie.
fn judge_label(verdict: Verdict) -> Verdict {
    match verdict {
        Verdict::BothBad => Verdict::Tie,
        other => other,
    }
}

/// Combines a verdict on (cand_1, cand_2) with one on the swapped pair (in
/// the swapped pair's terms): position bias shows up as disagreement, a tie.
pub fn combine_orders(forward: Verdict, reverse: Verdict) -> Verdict {
    let forward = judge_label(forward);
    let reverse = judge_label(reverse.swapped());
    if forward == reverse {
        forward
    } else {
        Verdict::Tie
    }
}

/// How often a judge agrees with people, raw and chance-corrected.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HumanAgreement {
    pub n: usize,
    pub agreements: usize,
    /// agreements / n; 0 when n is 0.
    pub rate: f64,
    /// Cohen's κ over cand_1 / cand_2 / tie; `None` when chance agreement is
    /// certain (or there is no data), where κ is undefined.
    pub kappa: Option<f64>,
}

/// Agreement over (human, judge) verdicts on the same pairs.
pub fn agreement_with_humans(pairs: &[(Verdict, Verdict)]) -> HumanAgreement {
    let index = |v: Verdict| match judge_label(v) {
        Verdict::Cand1 => 0,
        Verdict::Cand2 => 1,
        _ => 2,
    };
    let mut human = [0usize; 3];
    let mut judge = [0usize; 3];
    let mut agreements = 0;
    for &(h, j) in pairs {
        human[index(h)] += 1;
        judge[index(j)] += 1;
        agreements += usize::from(index(h) == index(j));
    }
    let n = pairs.len();
    // Counts stay integers until the end so "chance agreement is 1" is exact.
    let chance: usize = human.iter().zip(&judge).map(|(h, j)| h * j).sum();
    let n2 = n * n;
    let kappa = (n2 > chance).then(|| {
        let observed = agreements as f64 / n as f64;
        let expected = chance as f64 / n2 as f64;
        (observed - expected) / (1.0 - expected)
    });
    HumanAgreement {
        n,
        agreements,
        rate: agreements as f64 / n.max(1) as f64,
        kappa,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::prefs::Role;
    use Verdict::{BothBad, Cand1, Cand2, Tie};
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    const SAFE_TEXT: &str = "[ !#-;=-\\[\\]-~]{1,160}";

    /// The rules defined (in order) and referenced, skipping literals, classes
    /// and `{m,n}`; panics if one of those or a paren is left open.
    fn rules(gbnf: &str) -> (Vec<String>, BTreeSet<String>) {
        let (mut defined, mut used) = (Vec::new(), BTreeSet::new());
        for line in gbnf.lines() {
            let (name, body) = line.split_once(" ::= ").expect("one rule a line");
            defined.push(name.to_string());
            let (mut chars, mut depth, mut word) = (body.chars(), 0, String::new());
            while let Some(c) = chars.next() {
                let open = ['"', '[', '{'].iter().position(|&o| o == c);
                while let Some(close) = open.map(|i| ['"', ']', '}'][i]) {
                    match chars.next().expect("left open") {
                        '\\' => assert!(chars.next().is_some()),
                        d if d == close => break,
                        _ => {}
                    }
                }
                depth += i32::from(c == '(') - i32::from(c == ')');
                assert!(depth >= 0, "{line}");
                if c.is_ascii_alphanumeric() || "-_".contains(c) {
                    word.push(c);
                } else if !word.is_empty() {
                    used.insert(std::mem::take(&mut word));
                }
            }
            used.extend(Some(word).filter(|w| !w.is_empty()));
            assert_eq!(depth, 0, "{line}");
        }
        (defined, used)
    }

    #[test]
    fn grammar_is_well_formed() {
        let gbnf = verdict_grammar();
        let (defined, used) = rules(&gbnf);
        let unique: BTreeSet<_> = defined.iter().cloned().collect();
        assert_eq!((defined[0].as_str(), unique.len()), ("root", defined.len()));
        assert!(used.is_subset(&unique), "{:?}", used.difference(&unique));
        // llama.cpp's parser (as in llama-cpp-sys 0.1.161) has no `_` in names.
        assert!(unique.iter().all(|r| !r.contains('_')));
        for d in PRINCIPLE_DIMENSIONS {
            assert!(gbnf.contains(&format!("\"\\\"{d}\\\"\"")), "{d}");
        }
        assert!(gbnf.contains("]{1,160}\n") && gbnf.contains("){0,4} "));
    }

    /// The longest output, by hand: every whitespace taken, the longest words.
    #[test]
    fn longest_verdict_parses_and_matches_the_bound() {
        let dim = PRINCIPLE_DIMENSIONS.iter().max_by_key(|d| d.len()).unwrap();
        let text = "x".repeat(PRINCIPLE_MAX_CHARS);
        let item = format!("{{\n\"dimension\":\n\"{dim}\",\n\"principle\":\n\"{text}\",\n");
        let item = item + "\"favours\":\n\"neither\"\n}";
        let items = vec![item; MAX_PRINCIPLES].join(",\n");
        let longest = format!("{{\n\"principles\":\n[\n{items}\n],\n");
        let longest = longest + "\"better_response\":\n\"cand_2\"\n}";
        assert_eq!((longest.len(), max_verdict_chars()), (1269, 1269));
        let j = parse_judgement(&longest).unwrap();
        assert_eq!((j.principles.len(), j.better), (MAX_PRINCIPLES, Cand2));
    }

    /// Walks the grammar's parts, each choice made by `pick(n)` in 0..n.
    fn sample(parts: &[Part], pick: &mut dyn FnMut(usize) -> usize, text: &str) -> String {
        let mut out = String::new();
        for part in parts {
            match *part {
                Lit(s) => out.push_str(s),
                Ws => out.push_str(["", " ", "\n"][pick(3)]),
                Word(_, words) => out.push_str(&format!("\"{}\"", words[pick(words.len())])),
                Text => out.push_str(text),
                Items => {
                    out.push_str(&sample(ITEM, pick, text));
                    for _ in 0..pick(MAX_PRINCIPLES) {
                        out.push_str(&(sample(SEPARATOR, pick, text) + &sample(ITEM, pick, text)));
                    }
                }
            }
        }
        out
    }

    fn judgement() -> impl Strategy<Value = Judgement> {
        let principle = (0..12usize, SAFE_TEXT, 0..4usize);
        let principle = principle.prop_map(|(d, principle, f)| Principle {
            dimension: PRINCIPLE_DIMENSIONS[d].into(),
            principle,
            favours: FAVOURS[f].into(),
        });
        let better = prop_oneof![Just(Cand1), Just(Cand2), Just(Tie)];
        (prop::collection::vec(principle, 1..=5), better)
            .prop_map(|(principles, better)| Judgement { principles, better })
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in ".{0,300}", noise in "[\"a-z_: ]{0,60}") {
            let _ = parse_judgement(&text);
            let _ = parse_judgement(&format!("{text}\"better_response\"{noise}"));
        }

        #[test]
        fn serialised_judgements_parse_back(j in judgement()) {
            prop_assert_eq!(parse_judgement(&serde_json::to_string(&j).unwrap()).unwrap(), j);
        }

        #[test]
        fn grammar_outputs_parse_within_the_bound(
            seeds in prop::collection::vec(any::<u8>(), 1..64), text in SAFE_TEXT,
        ) {
            let mut i = 0;
            let mut pick = |n: usize| { i += 1; usize::from(seeds[i % seeds.len()]) % n };
            let out = sample(ROOT, &mut pick, &text);
            prop_assert!(out.len() <= max_verdict_chars());
            let j = parse_judgement(&out).unwrap();
            prop_assert!((1..=MAX_PRINCIPLES).contains(&j.principles.len()));
            prop_assert!(j.principles.iter().all(|p| p.principle == text));
        }
    }

    #[test]
    fn strict_and_fallback_parses() {
        let strict = " \n{\"principles\": [{\"dimension\": \"Overall Quality\", \"principle\": \
                      \"In voice.\", \"favours\": \"both\"}], \"better_response\": \"tie\"}\n";
        let j = parse_judgement(strict).unwrap();
        assert_eq!((j.better, j.principles[0].favours.as_str()), (Tie, "both"));
        // A quoted format, the real answer, then a stray non-verdict: the last
        // well-formed match wins.
        let prose = "Format: \"better_response\": \"cand_1\".\n```json\n{\"analysis\": [1, 2], \
                     \"better_response\" :\n \"cand_2\"}\n```\nnot \"better_response\": \"maybe\"";
        let j = parse_judgement(prose).unwrap();
        assert_eq!((j.better, j.principles.len()), (Cand2, 0));
        let bare = parse_judgement("{\"better_response\":\"cand_1\"}").unwrap();
        assert_eq!(bare.better, Cand1);
    }

    #[test]
    fn missing_or_unknown_verdicts_are_errors() {
        let empty = parse_judgement("");
        assert!(matches!(empty, Err(JudgeParseError::NoVerdict { .. })));
        let Err(JudgeParseError::NoVerdict { excerpt }) = parse_judgement(&"ä".repeat(500)) else {
            panic!("expected NoVerdict");
        };
        assert_eq!(excerpt.chars().count(), EXCERPT_CHARS);
        let err = parse_judgement("{\"better_response\": \"cand_3\"}").unwrap_err();
        assert!(err.to_string().contains("\"cand_3\""), "{err}");
        assert!(parse_judgement("{\"principles\": [], \"better_response\": \"ca").is_err());
        let principles = vec![];
        assert!(
            serde_json::to_string(&Judgement {
                principles,
                better: BothBad
            })
            .is_err()
        );
    }

    #[test]
    fn orders_combine() {
        // (forward, reverse in the swapped pair's terms, combined)
        #[rustfmt::skip]
        let table = [
            (Cand1, Cand2, Cand1), (Cand2, Cand1, Cand2), (Tie, Tie, Tie),
            (Cand1, Cand1, Tie), (Cand2, Cand2, Tie), // always the first shown
            (Cand1, Tie, Tie), (Tie, Cand1, Tie), (BothBad, BothBad, Tie), (BothBad, Tie, Tie),
        ];
        for (forward, reverse, want) in table {
            let got = combine_orders(forward, reverse);
            assert_eq!(got, want, "{forward:?} {reverse:?}");
        }
    }

    #[test]
    fn agreement_on_a_hand_example() {
        let mut pairs = vec![(Cand1, Cand1); 4];
        pairs.extend([(Cand2, Cand2); 3]);
        pairs.extend([(BothBad, Tie), (Cand1, Cand2), (Cand2, Tie)]);
        // n = 10, 8 agree (both bad = tie): p_o = 0.8. Human: cand_1 5, cand_2 4,
        // tie 1; judge: 4, 4, 2. p_e = (5·4 + 4·4 + 1·2)/100 = 0.38;
        // κ = (0.8 − 0.38)/(1 − 0.38) = 0.42/0.62 = 21/31 ≈ 0.677.
        let a = agreement_with_humans(&pairs);
        assert_eq!((a.n, a.agreements), (10, 8));
        assert!((a.rate - 0.8).abs() < 1e-12 && (a.kappa.unwrap() - 21.0 / 31.0).abs() < 1e-12);
        let none = agreement_with_humans(&[]);
        assert_eq!((none.n, none.rate, none.kappa), (0, 0.0, None));
        // Everyone always says cand_1: chance agreement is 1, κ undefined.
        assert_eq!(agreement_with_humans(&[(Cand1, Cand1); 3]).kappa, None);
        let opposed = agreement_with_humans(&[(Cand1, Cand2), (Cand2, Cand1)]);
        assert!(opposed.kappa.unwrap() < 0.0);
    }

    #[test]
    fn prompt_holds_the_case_without_plans() {
        let plan = |text: &str| format!("<system_thinking>plan</system_thinking>{text}");
        let context = [
            ContextMessage::new(Role::System, "You are Elizabeth."),
            ContextMessage::new(Role::User, "Darcy: Dance?"),
            ContextMessage::new(Role::Assistant, plan("Elizabeth: No.")),
        ];
        let (cand_1, cand_2) = (
            plan("Elizabeth: <role_thinking>Ha.</role_thinking>No."),
            plan("Go.\n"),
        );
        let case = JudgeCase {
            character: "Elizabeth",
            context: &context,
            cand_1: &cand_1,
            cand_2: &cand_2,
        };
        let prompt = judge_prompt(&case);
        assert!(prompt.starts_with("<|im_start|>system\nYou judge role-play: which candidate"));
        assert!(prompt.contains("reply better plays Elizabeth, continuing the dialogue?\n1. "));
        assert!(prompt.ends_with("\n\nGo.<|im_end|>\n<|im_start|>assistant\n"));
        assert!(!prompt.contains("system_thinking") && !prompt.contains("plan"));
        let user = "<|im_start|>user\n## Dialogue context\n\nSystem: You are Elizabeth.\n\nUser: \
                    Darcy: Dance?\n\nAssistant: Elizabeth: No.\n\n## Response Candidate 1\n\n\
                    Elizabeth: <role_thinking>Ha.</role_thinking>No.\n\n## Response Candidate 2\n\n";
        assert!(prompt.contains(user));
        assert!(PRINCIPLE_DIMENSIONS.iter().all(|d| prompt.contains(d)));
        // Compact: the tiny test model's BPE made 718 tokens of a 1323-byte
        // prompt like this; 718 + max_verdict_chars() = 1987 fits in 2048.
        assert!(prompt.len() < 1200, "{}", prompt.len());
        let no_context = JudgeCase {
            context: &[],
            ..case
        };
        assert!(judge_prompt(&no_context).contains("## Dialogue context\n\n(none)\n\n"));
    }
}
