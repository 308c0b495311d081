//! Steering a reply: `/plan` and `/thought` rewrite a thinking block and the
//! model goes on from it (a new alternative with the edit recorded); the
//! token view branches from another likely token; `c` continues a reply cut
//! off inside a thinking block.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::tui::action::Action;
use crate::tui::app::{App, Overlay, ReplyTarget};
use crate::tui::effect::Effect;
use crate::tui::overlays::tokens::update::branch_prefix;
use crate::tui::screens::chat::commands;
use crate::tui::screens::chat::reply::on_engine;
use crate::tui::screens::chat::session::ReplyChoices;
use crate::tui::tests::{chat_app, finished, reply, type_text};
use crate::tui::update::update;
use her_core::format::{Layer, ThinkingEdit};
use her_core::session::MessageMeta;
use her_engine::{Candidate, Event, FinishReason, TokenChoice};

const REPLY: [&str; 2] = [
    "She is amused by him.</system_thinking>Elizabeth Bennet: <role_thinking>So proud.</role_thinking>",
    "<role_action>smiles</role_action>Indeed, sir? <role_thinking>He will not answer.</role_thinking>",
];

fn answered() -> App {
    let mut app = chat_app();
    type_text(&mut app, "Will you dance?");
    update(&mut app, Action::Submit);
    reply(&mut app, &REPLY);
    app
}

fn meta_of_last(app: &App) -> MessageMeta {
    let chat = app.chat.as_ref().unwrap();
    let key = &app.messages.last().unwrap().key;
    let id = chat.session.tree().find(key).unwrap();
    chat.session.tree().node(id).unwrap().message.meta.clone()
}

/// The prompt text of the generation `effects` start.
fn prompt_of(effects: &[Effect]) -> String {
    let Some(Effect::Generate(request)) = effects.last() else {
        panic!("expected a generation: {effects:?}");
    };
    request.prompt.render(0)
}

#[test]
fn a_rewritten_plan_is_continued_as_a_new_alternative_with_the_edit_recorded() {
    let mut app = answered();
    let original = app.messages.last().unwrap().clone();
    assert!(commands::run(&mut app, "plan").is_empty());
    assert_eq!(app.composer.text, "/plan She is amused by him.");
    assert_eq!(app.steering.as_deref(), Some(original.key.as_str()));

    app.composer.set("/plan She is bored,\nand wants to leave.");
    let effects = update(&mut app, Action::Submit);
    let prompt = prompt_of(&effects);
    assert!(
        prompt.ends_with(
            "<|im_start|>assistant\n<system_thinking>She is bored,\nand wants to leave.</system_thinking>"
        ),
        "{prompt}"
    );
    assert!(matches!(
        app.streaming.as_ref().unwrap().target,
        ReplyTarget::SteeredFrom { .. }
    ));
    reply(&mut app, &["Elizabeth Bennet: I must go."]);

    let last = app.messages.last().unwrap();
    assert_eq!(
        last.raw,
        "<system_thinking>She is bored,\nand wants to leave.</system_thinking>Elizabeth Bennet: I must go."
    );
    assert_eq!(last.alternative, (1, 2));
    assert_eq!(
        meta_of_last(&app).thinking_edit,
        Some(Box::new(ThinkingEdit {
            of: original.key.clone(),
            layer: Layer::SystemThinking,
            index: 0,
            before: "She is amused by him.".into(),
            after: "She is bored,\nand wants to leave.".into(),
        }))
    );
    assert!(app.steering.is_none());
}

#[test]
fn a_rewritten_thought_keeps_the_reply_before_it() {
    let mut app = answered();
    let original = app.messages.last().unwrap().raw.clone();
    commands::run(&mut app, "thought #2");
    assert_eq!(app.composer.text, "/thought #2 He will not answer.");
    app.composer.set("/thought #2 He might.");
    let effects = update(&mut app, Action::Submit);
    let cut = original.find("He will not answer.").unwrap();
    let expected = format!("{}He might.</role_thinking>", &original[..cut]);
    assert!(prompt_of(&effects).ends_with(&expected));
    reply(&mut app, &[" Well?"]);
    assert_eq!(
        app.messages.last().unwrap().raw,
        format!("{expected} Well?")
    );
    let edit = meta_of_last(&app).thinking_edit.unwrap();
    assert_eq!((edit.layer, edit.index), (Layer::RoleThinking, 1));

    // A block the reply does not have is named, and nothing starts.
    assert!(commands::run(&mut app, "thought #5 x").is_empty());
    let notice = app.status.notice.clone().unwrap().0;
    assert!(notice.contains("no block 5"), "{notice}");
}

#[test]
fn continuing_a_reply_cut_inside_its_plan_closes_the_plan_where_the_model_does() {
    let mut app = chat_app();
    type_text(&mut app, "Will you dance?");
    update(&mut app, Action::Submit);
    on_engine(&mut app, Event::Text("She is amu".into()));
    on_engine(&mut app, Event::Finished(finished(FinishReason::MaxTokens)));
    let cut = app.messages.last().unwrap().clone();
    assert_eq!(cut.raw, "<system_thinking>She is amu");
    assert!(cut.incomplete || meta_of_last(&app).finish_reason.is_some());

    update(&mut app, Action::FocusTranscript);
    let effects = update(&mut app, Action::Continue);
    // The model reads its own open plan and goes on inside it.
    assert!(prompt_of(&effects).ends_with("<|im_start|>assistant\n<system_thinking>She is amu"));
    on_engine(&mut app, Event::Text("sed.</system_thin".into()));
    // Mid-stream the parser is inside the plan, as it was when cut.
    let plan = app
        .focused_reply()
        .unwrap()
        .layer_text(Layer::SystemThinking);
    assert_eq!(plan, "She is amused.");
    reply(&mut app, &["king>Elizabeth Bennet: Perhaps."]);
    let last = app.messages.last().unwrap();
    assert_eq!(
        last.raw,
        "<system_thinking>She is amused.</system_thinking>Elizabeth Bennet: Perhaps."
    );
    assert_eq!(last.thoughts(), Vec::<String>::new());
    assert_eq!(
        last.segments
            .iter()
            .filter(|s| s.kind.layer() == Some(Layer::Speech))
            .map(|s| s.text.as_str())
            .collect::<String>(),
        "Perhaps."
    );
    assert_eq!(meta_of_last(&app).continued_from, Some(cut.key));
}

fn choice(token: i32, text: &str, p: f64, others: &[(i32, &str, f64)]) -> TokenChoice {
    let mut candidates = vec![Candidate {
        token,
        bytes: text.as_bytes().to_vec(),
        probability: p,
    }];
    candidates.extend(others.iter().map(|&(token, text, probability)| Candidate {
        token,
        bytes: text.as_bytes().to_vec(),
        probability,
    }));
    TokenChoice {
        token,
        bytes: text.as_bytes().to_vec(),
        probability: p,
        candidates,
    }
}

#[test]
fn an_alternative_token_branches_the_reply_keeping_the_bytes_before_it() {
    let mut app = chat_app();
    app.token_candidates = 3;
    type_text(&mut app, "Will you dance?");
    let effects = update(&mut app, Action::Submit);
    let Some(Effect::Generate(request)) = effects.last() else {
        panic!("{effects:?}");
    };
    assert_eq!(request.candidates, 3);
    let pieces = [
        "She",
        " is",
        " sure",
        ".</system_thinking>",
        "Elizabeth Bennet: Yes.",
    ];
    for p in pieces {
        on_engine(&mut app, Event::Text(p.into()));
    }
    let mut done = finished(FinishReason::EndOfGeneration);
    done.choices = vec![
        choice(1, pieces[0], 0.9, &[(9, "He", 0.05)]),
        choice(2, pieces[1], 0.7, &[(10, " was", 0.2)]),
        choice(3, pieces[2], 0.5, &[(11, " glad", 0.3), (12, " é", 0.1)]),
        choice(4, pieces[3], 0.95, &[]),
        choice(5, pieces[4], 0.6, &[]),
    ];
    on_engine(&mut app, Event::Finished(done));
    let original = app.messages.last().unwrap().clone();

    update(&mut app, Action::ShowTokens);
    assert!(matches!(app.overlay, Some(Overlay::Tokens(_))));
    update(&mut app, Action::CursorRight);
    update(&mut app, Action::CursorRight);
    update(&mut app, Action::ListDown);
    let effects = update(&mut app, Action::Submit);
    assert!(app.overlay.is_none());
    let prompt = prompt_of(&effects);
    assert!(
        prompt.ends_with("<|im_start|>assistant\n<system_thinking>She is glad"),
        "{prompt}"
    );
    reply(&mut app, &[".</system_thinking>Elizabeth Bennet: Gladly."]);
    let last = app.messages.last().unwrap();
    assert_eq!(
        last.raw,
        "<system_thinking>She is glad.</system_thinking>Elizabeth Bennet: Gladly."
    );
    assert!(original.raw.starts_with("<system_thinking>She is"));
    assert_eq!(last.alternative, (1, 2));
    assert_eq!(meta_of_last(&app).thinking_edit, None);
}

#[test]
fn a_branch_never_splits_a_character() {
    let choices = ReplyChoices {
        start: 0,
        tokens: vec![
            TokenChoice {
                token: 1,
                bytes: vec![0xC3],
                probability: 0.9,
                candidates: Vec::new(),
            },
            choice(2, "x", 0.9, &[(3, "y", 0.1)]),
        ],
    };
    // "é" split over two tokens: the second starts inside it.
    let raw = "é";
    let mut split = choices.clone();
    split.tokens[1].bytes = vec![0xA9];
    assert!(branch_prefix(raw, &split, 1, 0).is_err());
    // A half character as the alternative is refused too.
    let mut half = choices;
    half.tokens[0].bytes = Vec::new();
    half.tokens[1].candidates[1].bytes = vec![0xC3];
    assert!(branch_prefix("x", &half, 1, 1).is_err());
    assert_eq!(branch_prefix("x", &half, 1, 0).as_deref(), Ok("x"));
}
