//! Steering a reply: `/plan` and `/thought` rewrite a thinking block and the
//! model goes on from it (a new alternative with the edit recorded); `c`
//! continues a reply cut off inside a thinking block.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::tui::action::Action;
use crate::tui::app::{App, ReplyTarget};
use crate::tui::effect::Effect;
use crate::tui::screens::chat::commands;
use crate::tui::screens::chat::reply::on_engine;
use crate::tui::tests::{chat_app, finished, reply, type_text};
use crate::tui::update::update;
use her_core::format::{Layer, ThinkingEdit};
use her_core::session::MessageMeta;
use her_engine::{Event, FinishReason};

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
