//! Snapshots of the exact prompts for every shipped character (turns 1 and
//! 3) and for a scene. A change to the prompt layout shows up here as a diff.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use her_core::character::{list_characters, load_scene};
use her_core::format::PREFILL;
use her_core::prompt::{HerPrompt, Line, PromptOptions};
use her_studio::config::PromptVariant;

fn characters() -> Vec<her_core::character::Character> {
    list_characters(&common::repo_root().join("characters"))
        .unwrap()
        .into_iter()
        .map(|(path, c)| c.unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

#[test]
fn every_shipped_character_at_turn_1_and_3() {
    let all = characters();
    assert!(all.len() >= 4, "at least four shipped characters");
    for c in all {
        let user = c.user_name("User").to_string();
        let options = PromptOptions::new(PromptVariant::Training, user.clone());
        let mut transcript = Vec::new();
        if let Some(g) = c.greetings.first() {
            transcript.push(Line::new(c.name.clone(), g.clone()));
        }
        transcript.push(Line::new(
            user.clone(),
            "Good evening. I hope I do not intrude.",
        ));
        let turn1 = HerPrompt::build(&c, &options, &transcript).render_with_skip(0);
        transcript.push(Line::new(
            c.name.clone(),
            format!("{PREFILL}{} is curious and guarded.</system_thinking>{}: <role_thinking>Who is this?</role_thinking><role_action>inclines the head</role_action>Not at all.", c.name, c.name),
        ));
        transcript.push(Line::new(
            user.clone(),
            "<role_thinking>I should be careful.</role_thinking>Then may I sit?",
        ));
        let turn3 = HerPrompt::build(&c, &options, &transcript).render_with_skip(0);
        let stem = c.name.to_lowercase().replace([' ', '.'], "-");
        insta::assert_snapshot!(format!("{stem}-turn1"), turn1);
        insta::assert_snapshot!(format!("{stem}-turn3"), turn3);
    }
}

#[test]
fn a_scene_gives_each_character_its_own_filtered_view() {
    let root = common::repo_root();
    let scene = load_scene(&root.join("characters/scenes/netherfield-drawing-room.toml")).unwrap();
    let cast = scene.cast(&root.join("characters")).unwrap();
    assert!(cast.len() >= 3);
    let (lizzy, darcy) = (&cast[0], &cast[1]);
    let transcript = vec![
        Line::new(
            darcy.name.clone(),
            format!(
                "{PREFILL}He is drawn to her.</system_thinking>{}: <role_thinking>Her eyes are remarkably fine.</role_thinking><role_action>looks up from his letter</role_action>You read, Miss Bennet?",
                darcy.name
            ),
        ),
        Line::new(
            "Environment",
            "The fire settles; rain taps at the long windows.",
        ),
    ];
    let options = PromptOptions::new(PromptVariant::Evaluation, "Mr. Bingley");
    let for_lizzy = HerPrompt::build(lizzy, &options, &transcript).render_with_skip(0);
    // Elizabeth hears Darcy's words and sees his action, never his thoughts or plan.
    assert!(for_lizzy.contains("looks up from his letter"));
    assert!(!for_lizzy.contains("remarkably fine"));
    assert!(!for_lizzy.contains("He is drawn to her"));
    let for_darcy = HerPrompt::build(darcy, &options, &transcript).render_with_skip(0);
    // Darcy keeps his own inner thought, but not his plan.
    assert!(for_darcy.contains("remarkably fine"));
    assert!(!for_darcy.contains("He is drawn to her"));
    insta::assert_snapshot!("scene-netherfield-elizabeth", for_lizzy);
    insta::assert_snapshot!("scene-netherfield-darcy", for_darcy);
}
