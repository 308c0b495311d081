//! Repetition: a turn that says again what an earlier turn said (its own
//! speaker's or anyone's), measured as the share of its word trigrams found
//! in that turn, and a turn that loops on itself (most of its trigrams are
//! repeats of its own).

use std::collections::HashSet;

use super::{Rule, RuleOptions, RuleTurn};

/// Words per n-gram.
pub const NGRAM: usize = 3;
/// Turns shorter than this (in words) are not compared: "Yes, sir." twice
/// is conversation, not a loop.
pub const MIN_WORDS: usize = 4;
/// A turn shorter than this is too short to loop.
pub const LOOP_MIN_WORDS: usize = 12;
/// Share of a turn's trigrams that repeat its own from which it loops.
pub const LOOP_SHARE: f64 = 0.5;

/// Lower-case words: runs of letters and digits.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The distinct word n-grams of `words`.
pub fn ngrams(words: &[String], n: usize) -> HashSet<&[String]> {
    words.windows(n.max(1)).collect()
}

/// Share of `turn`'s distinct n-grams that also occur in `earlier`
/// (0 when `turn` has none).
pub fn overlap(turn: &HashSet<&[String]>, earlier: &HashSet<&[String]>) -> f64 {
    if turn.is_empty() {
        return 0.0;
    }
    let shared = turn.iter().filter(|g| earlier.contains(*g)).count();
    shared as f64 / turn.len() as f64
}

/// Share of `words`' n-grams that repeat an earlier n-gram of the same
/// text: 0 for text that never repeats itself, near 1 for a loop.
pub fn loop_share(words: &[String], n: usize) -> f64 {
    let total = words.windows(n.max(1)).count();
    if total == 0 {
        return 0.0;
    }
    let distinct = ngrams(words, n).len();
    1.0 - distinct as f64 / total as f64
}

/// Severity of a repeat by its overlap: most of it (2), nearly all (3),
/// all but a word or two (4).
fn repeat_severity(overlap: f64) -> u8 {
    if overlap >= 0.9 {
        4
    } else if overlap >= 0.7 {
        3
    } else {
        2
    }
}

/// Flaws of turn `index` given every turn's plain text.
pub fn check(
    index: usize,
    texts: &[&str],
    turns: &[RuleTurn],
    options: &RuleOptions,
) -> Vec<(Rule, String, u8)> {
    let mut flaws = Vec::new();
    let Some(text) = texts.get(index) else {
        return flaws;
    };
    let own = words(text);
    if own.len() >= MIN_WORDS {
        let grams = ngrams(&own, NGRAM);
        let best = texts[..index]
            .iter()
            .enumerate()
            .map(|(i, earlier)| {
                let earlier_words = words(earlier);
                (i, overlap(&grams, &ngrams(&earlier_words, NGRAM)))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)));
        if let Some((i, share)) = best
            && share >= options.repetition_overlap
            && share > 0.0
        {
            let whose = turns.get(i).map_or("", |t| t.speaker);
            flaws.push((
                Rule::RepeatedTurn,
                format!(
                    "repeats turn {} ({whose}): {:.0}% of its word trigrams",
                    i + 1,
                    share * 100.0
                ),
                repeat_severity(share),
            ));
        }
    }
    if own.len() >= LOOP_MIN_WORDS {
        let share = loop_share(&own, NGRAM);
        if share >= LOOP_SHARE {
            flaws.push((
                Rule::Loop,
                format!(
                    "loops: {:.0}% of its word trigrams repeat its own",
                    share * 100.0
                ),
                if share >= 0.75 { 4 } else { 3 },
            ));
        }
    }
    flaws
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use her_engine::FinishReason;
    use proptest::prelude::*;

    fn w(text: &str) -> Vec<String> {
        words(text)
    }

    #[test]
    fn overlap_by_hand() {
        // "a b c d" has trigrams abc, bcd; "x a b c" has abc: 1 of 2.
        let a = w("A b, c d.");
        let b = w("x a b c");
        assert!((overlap(&ngrams(&a, 3), &ngrams(&b, 3)) - 0.5).abs() < 1e-12);
        assert_eq!(overlap(&ngrams(&a, 3), &ngrams(&a, 3)), 1.0);
        assert_eq!(overlap(&ngrams(&w("a b"), 3), &ngrams(&a, 3)), 0.0);
        // "x y x y x y": 4 trigrams, 2 distinct: half repeat.
        assert!((loop_share(&w("x y x y x y"), 3) - 0.5).abs() < 1e-12);
        assert_eq!(loop_share(&w("one two three four"), 3), 0.0);
        assert_eq!(loop_share(&[], 3), 0.0);
    }

    fn turns<'a>(texts: &[&'a str]) -> Vec<RuleTurn<'a>> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| RuleTurn {
                speaker: if i % 2 == 0 { "Ann" } else { "Bob" },
                text: t,
                finish: FinishReason::EndOfGeneration,
            })
            .collect()
    }

    fn found(texts: &[&str], index: usize) -> Vec<(Rule, u8)> {
        check(index, texts, &turns(texts), &RuleOptions::default())
            .into_iter()
            .map(|(r, _, s)| (r, s))
            .collect()
    }

    #[test]
    fn repeats_of_earlier_turns_by_degree() {
        let first = "The roses came from Boston this morning, and they are already wilting.";
        let texts = [
            first,
            "Bob shrugs and looks at the rain on the glass.",
            // The same words: 4.
            "The roses came from Boston this morning, and they are already wilting!",
            // Most of it again with a new ending: 2 or 3.
            "The roses came from Boston this morning, and they are lovely, are they not, dear Bob?",
            "Tea is poured for everyone at the table.",
        ];
        assert_eq!(found(&texts, 0), []);
        assert_eq!(found(&texts, 1), []);
        assert_eq!(found(&texts, 2), [(Rule::RepeatedTurn, 4)]);
        let partial = found(&texts, 3);
        assert_eq!(partial.len(), 1);
        assert!(matches!(partial[0], (Rule::RepeatedTurn, 2 | 3)));
        assert_eq!(found(&texts, 4), []);
        // Short turns are never repeats.
        assert_eq!(found(&["Yes, sir.", "Yes, sir."], 1), []);
    }

    #[test]
    fn a_loop_inside_one_turn() {
        let lp = "I will wait. I will wait. I will wait. I will wait. I will wait.";
        assert_eq!(found(&[lp], 0), [(Rule::Loop, 4)]);
        let prose = "He waited by the dock for an hour, then walked up the lawn to the house \
                     where the music had already stopped and the lanterns were going out.";
        assert_eq!(found(&[prose], 0), []);
    }

    proptest! {
        #[test]
        fn shares_are_fractions_and_never_panic(a in ".{0,200}", b in ".{0,200}") {
            let (wa, wb) = (words(&a), words(&b));
            let o = overlap(&ngrams(&wa, NGRAM), &ngrams(&wb, NGRAM));
            prop_assert!((0.0..=1.0).contains(&o));
            let l = loop_share(&wa, NGRAM);
            prop_assert!((0.0..1.0).contains(&l) || l == 0.0);
            let texts = [a.as_str(), b.as_str()];
            let _ = check(1, &texts, &turns(&texts), &RuleOptions::default());
        }

        /// A turn said again word for word is always a repeat (when long
        /// enough to judge), whatever the punctuation.
        #[test]
        fn a_verbatim_repeat_is_always_found(ws in proptest::collection::vec("[a-z]{1,8}", 4..30)) {
            let text = ws.join(" ");
            let again = format!("{}!", ws.join(", "));
            let texts = [text.as_str(), "Something else entirely happens now here.", again.as_str()];
            let flaws = check(2, &texts, &turns(&texts), &RuleOptions::default());
            prop_assert!(flaws.iter().any(|f| f.0 == Rule::RepeatedTurn && f.2 == 4), "{flaws:?}");
        }
    }
}
