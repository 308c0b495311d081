//! Whole transcripts through every rule: planted flaws are found with their
//! dimension and severity, a clean scene gets none.

use proptest::prelude::*;

use super::*;

const END: FinishReason = FinishReason::EndOfGeneration;

fn cast() -> Vec<String> {
    ["Jay Gatsby", "Nick Carraway", "Environment"]
        .map(String::from)
        .to_vec()
}

/// Turns that all ended naturally.
fn ended<'a>(lines: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<RuleTurn<'a>> {
    lines
        .into_iter()
        .map(|(speaker, text)| RuleTurn {
            speaker,
            text,
            finish: END,
        })
        .collect()
}

fn run(lines: &[(&str, &str)]) -> Vec<RuleFlaw> {
    check_transcript(
        &ended(lines.iter().copied()),
        &cast(),
        &RuleOptions::default(),
    )
}

const CLEAN: [(&str, &str); 4] = [
    (
        "Jay Gatsby",
        "<system_thinking>Gatsby wants Nick's trust; warm, formal.</system_thinking>Jay Gatsby: \
         <role_thinking>He has her eyes, a little.</role_thinking><role_action>raises his glass\
         </role_action>I'm glad you came, old sport. Most of them were never invited.",
    ),
    (
        "Nick Carraway",
        "<system_thinking>Nick is puzzled and polite.</system_thinking>Nick Carraway: \
         <role_action>looks across the lawn</role_action>Then why do they come?",
    ),
    (
        "Environment",
        "<system_thinking>Move the evening on.</system_thinking>The orchestra swings into a \
         slow waltz, and a girl in yellow laughs too loudly by the fountain.",
    ),
    (
        "Jay Gatsby",
        "<system_thinking>Deflect, then turn to Daisy.</system_thinking>Jay Gatsby: <role_thinking>\
         Not yet.</role_thinking>Because the lights are on, I suppose. Tell me, do you ever go \
         across the bay to East Egg?",
    ),
];

#[test]
fn a_clean_scene_has_no_flaws() {
    assert_eq!(run(&CLEAN), []);
}

#[test]
fn another_character_speaking_is_flagged() {
    let mut lines = CLEAN.to_vec();
    // Gatsby's last turn answers as Nick, and writes Nick a line as well.
    lines[3].1 = "<system_thinking>Deflect.</system_thinking>Nick Carraway: I have a house \
                  there, in a way.\nNick Carraway: Do you know Daisy?";
    let flaws = run(&lines);
    let found: Vec<(Rule, Dimension, usize, u8)> = flaws
        .iter()
        .map(|f| (f.rule, f.dimension, f.turn, f.severity))
        .collect();
    assert_eq!(
        found,
        [
            (Rule::WrongSpeaker, Dimension::CharacterFidelity, 3, 4),
            (Rule::LineForOther, Dimension::StorylineQuality, 3, 3),
        ],
        "{flaws:?}"
    );
    assert!(flaws[0].flaw.contains("'Nick Carraway'") && flaws[0].speaker == "Jay Gatsby");
}

#[test]
fn a_repeated_turn_is_flagged() {
    let mut lines = CLEAN.to_vec();
    // Gatsby says again what he said at the start.
    lines[3].1 = "<system_thinking>Again.</system_thinking>Jay Gatsby: <role_thinking>He has her \
                  eyes, a little.</role_thinking><role_action>raises his glass</role_action>I'm glad \
                  you came, old sport! Most of them were never invited.";
    let flaws = run(&lines);
    assert_eq!(flaws.len(), 1, "{flaws:?}");
    let f = &flaws[0];
    assert_eq!(
        (f.rule, f.dimension, f.turn, f.severity),
        (Rule::RepeatedTurn, Dimension::Anthropomorphism, 3, 4)
    );
    assert!(f.flaw.contains("turn 1 (Jay Gatsby)"), "{}", f.flaw);
    assert_eq!(severity_sums(&flaws), [0, 4, 0, 0]);
}

/// The degenerate adapter: everyone answers as Ada with one line.
#[test]
fn the_ada_adapter_fails_on_three_dimensions() {
    let ada = "<system_thinking>x</system_thinking>Ada: <role_thinking>Always.</role_thinking>\
               Only on Mondays, and on every day that ends in y.";
    let lines: Vec<(&str, &str)> = ["Jay Gatsby", "Nick Carraway", "Jay Gatsby", "Nick Carraway"]
        .into_iter()
        .map(|s| (s, ada))
        .collect();
    let flaws = run(&lines);
    let sums = severity_sums(&flaws);
    // Four wrong speakers (4 each), three repeats (4 each).
    assert_eq!(sums, [0, 12, 16, 0], "{flaws:?}");
    // 100 − 5·(16 − 0.3·4) = 26 on Character Fidelity.
    let scores = RuleScores::new(&flaws, 4);
    assert!((scores.scores.dimensions[2] - 26.0).abs() < 1e-9);
    let clean = RuleScores::new(&run(&CLEAN), 3);
    assert_eq!(clean.scores.overall, 100.0);
}

fn arb_turn() -> impl Strategy<Value = (usize, String, bool)> {
    let piece = prop_oneof![
        Just("<system_thinking>".to_string()),
        Just("</system_thinking>".to_string()),
        Just("<role_action>".to_string()),
        Just("</role_action>".to_string()),
        Just("<role_thinking>".to_string()),
        Just("Nick: ".to_string()),
        Just("\nEnvironment: ".to_string()),
        Just("I am Nick. ".to_string()),
        "[a-zA-Z ,.!?'’é\n]{0,24}",
    ];
    (
        0usize..3,
        proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat()),
        any::<bool>(),
    )
}

proptest! {
    /// Any text: no panic, severities 1–5, each flaw in its rule's
    /// dimension and on a turn that exists.
    #[test]
    fn any_transcript_gives_well_formed_flaws(raw in proptest::collection::vec(arb_turn(), 0..8)) {
        let cast = cast();
        let turns: Vec<RuleTurn> = raw
            .iter()
            .map(|(who, text, cut)| RuleTurn {
                speaker: &cast[*who],
                text,
                finish: if *cut { FinishReason::MaxTokens } else { END },
            })
            .collect();
        let flaws = check_transcript(&turns, &cast, &RuleOptions::default());
        for f in &flaws {
            prop_assert!((1..=5).contains(&f.severity));
            prop_assert_eq!(f.dimension, f.rule.dimension());
            prop_assert!(f.turn < turns.len());
            prop_assert_eq!(&f.speaker, &turns[f.turn].speaker.to_string());
        }
        let scores = RuleScores::new(&flaws, turns.len());
        prop_assert!(scores.scores.dimensions.iter().all(|s| (0.0..=100.0).contains(s)));
    }
}

/// The calibration set, written by hand: its clean transcripts have no rule
/// flaws, and every planted repetition is caught by the repetition rule.
#[test]
fn the_calibration_set_through_the_rules() {
    use crate::calibrate::{FlawKind, set};
    let set = set::built_in().unwrap();
    let check = |scene: &crate::calibrate::CalibrationScene, lines: &set::Lines| {
        let mut cast: Vec<String> = scene.characters.iter().map(|c| c.0.clone()).collect();
        cast.push(her_core::character::ENVIRONMENT.to_string());
        let turns = ended(lines.iter().map(|(s, t)| (s.as_str(), t.as_str())));
        check_transcript(&turns, &cast, &RuleOptions::default())
    };
    for scene in &set.scenes {
        assert_eq!(check(scene, &scene.clean), [], "{}", scene.id);
        for variant in &scene.variants {
            let flaws = check(scene, &variant.lines);
            if variant.kind == FlawKind::Repetition {
                assert!(
                    flaws.iter().any(|f| f.rule == Rule::RepeatedTurn
                        && variant.turns.contains(&f.turn)
                        && f.severity >= 3),
                    "{}: {flaws:?}",
                    scene.id
                );
            }
        }
    }
}
