//! `update` driven by messages alone: the runtime's part is played by
//! sending the answers its jobs would send. No terminal, model or folder.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::config::SamplingConfig;
use crate::tui::action::Action;
use crate::tui::app::{App, Screen};
use crate::tui::effect::Effect;
use crate::tui::keymap::Keymap;
use crate::tui::message::Msg;
use crate::tui::model::PaneModes;
use crate::tui::screens::annotate::AnnotateScreen;
use crate::tui::screens::annotate::state::tests::item as queue_item;
use crate::tui::screens::picker::state::{Picker, PickerItem};
use crate::tui::theme::Theme;
use crate::tui::update::update;
use her_core::prefs::queue::{AnnotationRun, QueueCandidate, QueueItem};
use her_engine::{ChatTemplateFamily, ModelInfo};

fn app() -> App {
    App::new(Keymap::default(), Theme::dark(), PaneModes::default())
}

fn model(name: &str, n_ctx: u32) -> ModelInfo {
    ModelInfo {
        path: PathBuf::from(format!("{name}.gguf")),
        name: name.into(),
        fingerprint: "f".into(),
        architecture: "llama".into(),
        file_type: "Q4_1".into(),
        file_size: 1,
        n_params: 1,
        n_layer: 1,
        n_embd: 1,
        n_head: 1,
        n_head_kv: 1,
        n_vocab: 1,
        n_ctx_train: n_ctx,
        n_ctx,
        chat_template: ChatTemplateFamily::ChatMl,
        devices: Vec::new(),
        n_gpu_layers_requested: 0,
        n_gpu_layers_offloaded: 0,
        flash_attention: false,
        threads: 1,
    }
}

fn notice(app: &App) -> String {
    app.status
        .notice
        .as_ref()
        .map(|(text, _)| text.clone())
        .unwrap_or_default()
}

#[test]
fn model_switch_is_checked_then_loaded_off_the_loop() {
    let mut app = app();
    update(
        &mut app,
        Msg::ModelLoaded {
            info: model("tiny", 2048),
            switched: false,
        },
    );
    assert_eq!(
        (app.status.model.as_str(), app.status.n_ctx),
        ("tiny", 2048)
    );
    assert!(
        app.status.notice.is_none(),
        "the first model is not announced"
    );

    let effects = crate::tui::screens::chat::commands::run(&mut app, "model other.gguf");
    let [Effect::CheckModel(path)] = effects.as_slice() else {
        panic!("expected the file to be checked first: {effects:?}");
    };
    let path = path.clone();
    let effects = update(
        &mut app,
        Msg::ModelChecked {
            path: path.clone(),
            result: Ok(()),
        },
    );
    assert!(matches!(effects.as_slice(), [Effect::SwitchModel(p)] if *p == path));
    assert!(app.engine_loading && notice(&app).contains("loading other.gguf"));
    // Nothing else loads meanwhile.
    assert!(crate::tui::screens::chat::commands::run(&mut app, "model third.gguf").is_empty());
    assert!(notice(&app).contains("loading already"));

    update(
        &mut app,
        Msg::ModelLoadFailed {
            error: "not a GGUF".into(),
            kept: model("tiny", 2048),
        },
    );
    assert!(!app.engine_loading);
    assert!(notice(&app).contains("not a GGUF; kept the previous model"));
    update(
        &mut app,
        Msg::ModelLoaded {
            info: model("other", 4096),
            switched: true,
        },
    );
    assert_eq!(
        (app.status.model.as_str(), app.status.n_ctx),
        ("other", 4096)
    );
    assert!(notice(&app).contains("model loaded: other"));

    // A server chooses its own model: refused before any file is read.
    app.backend_local = false;
    assert!(crate::tui::screens::chat::commands::run(&mut app, "model other.gguf").is_empty());
    assert!(notice(&app).contains("the server chooses the model"));

    let effects = update(
        &mut app,
        Msg::ModelChecked {
            path,
            result: Err("'other.gguf' is not a GGUF file".into()),
        },
    );
    assert!(effects.is_empty() && notice(&app).contains("not a GGUF file"));
}

#[test]
fn the_runs_overlay_is_read_when_opened_and_on_every_tick_while_open() {
    let mut app = app();
    app.runs_dir = PathBuf::from("studio/runs");
    let effects = crate::tui::screens::chat::commands::run(&mut app, "runs");
    assert!(matches!(effects.as_slice(), [Effect::ListRuns(d)] if d.ends_with("runs")));
    assert!(matches!(
        update(&mut app, Msg::Tick(std::time::Instant::now())).as_slice(),
        [Effect::ListRuns(_)]
    ));
    update(&mut app, Msg::RunsListed(Vec::new()));
    assert!(app.runs.is_empty());
    update(
        &mut app,
        Msg::RlAsk {
            run: PathBuf::from("studio/runs/r1"),
            ask: None,
        },
    );
    assert!(notice(&app).contains("not waiting for ratings"));
    update(&mut app, Action::CloseOverlay);
    assert!(
        update(&mut app, Msg::Tick(std::time::Instant::now())).is_empty(),
        "closed: not read"
    );
}

#[test]
fn picker_typing_and_the_page_height_are_messages() {
    let mut app = app();
    let item = |title: &str| PickerItem {
        title: title.into(),
        value: title.to_lowercase(),
        ..PickerItem::default()
    };
    app.characters = Picker::new(vec![item("Elizabeth"), item("Darcy")]);
    for c in "darc".chars() {
        update(&mut app, Msg::Typed(c));
    }
    assert_eq!(app.characters.current().unwrap().title, "Darcy");
    let effects = update(&mut app, Action::ListChoose);
    assert!(matches!(
        effects.as_slice(),
        [Effect::OpenCharacter { name, then: None }] if name == "darcy"
    ));
    update(
        &mut app,
        Msg::CharacterOpened {
            result: Err("no character 'darcy'".into()),
            then: None,
        },
    );
    assert_eq!(app.screen, Screen::Characters);
    assert_eq!(app.exit_failure().as_deref(), Some("no character 'darcy'"));
    update(&mut app, Msg::Layout { transcript_rows: 7 });
    assert_eq!(app.page, 7);
}

fn annotate_app(items: Vec<QueueItem>) -> App {
    let mut app = app();
    let run = AnnotationRun::new(items, "ann", &[]);
    let screen = AnnotateScreen::new(
        run,
        "queue.jsonl".into(),
        PathBuf::from("prefs/ann.jsonl"),
        SamplingConfig::default(),
    );
    app.screen = Screen::Annotate;
    app.annotate = Some(Box::new(screen));
    app
}

fn key(app: &App, code: KeyCode) -> Action {
    app.keymap
        .action(app.layer(), &KeyEvent::new(code, KeyModifiers::NONE))
        .expect("a bound key")
}

#[test]
fn annotate_answers_are_appended_by_the_runtime_and_a_failed_append_is_taken_back() {
    let mut app = annotate_app(vec![
        queue_item("pair", &["first", "second"]),
        queue_item("single", &["only"]),
        queue_item("generate", &[]),
    ]);
    assert!(
        update(&mut app, Msg::Tick(std::time::Instant::now())).is_empty(),
        "item 1 has candidates"
    );
    let pick = key(&app, KeyCode::Left);
    assert_eq!(pick, Action::PickLeft);
    let effects = update(&mut app, pick.clone());
    assert!(matches!(
        effects.as_slice(),
        [Effect::AppendRecord { log, .. }] if log.ends_with("ann.jsonl")
    ));
    update(&mut app, Msg::RecordAppendFailed("disk full".into()));
    let screen = app.annotate.as_deref().unwrap();
    assert_eq!(screen.run.progress(), (0, 3), "the answer is taken back");
    assert_eq!(screen.notice, Some(("disk full".into(), true)));

    update(&mut app, pick);
    // The single reply is rated; the next item has no candidates yet.
    let stars = key(&app, KeyCode::Char('4'));
    let effects = update(&mut app, stars);
    let [
        Effect::AppendRecord { .. },
        Effect::WriteCandidates { item, prompt, .. },
    ] = effects.as_slice()
    else {
        panic!("expected the rating saved and candidates asked for: {effects:?}");
    };
    assert_eq!(item, "generate");
    assert!(prompt.ends_with(her_core::format::PREFILL) && prompt.contains("Do you dance?"));
    assert!(
        update(&mut app, Msg::Tick(std::time::Instant::now())).is_empty(),
        "asked once"
    );
    let screen = |app: &App| app.annotate.as_deref().unwrap().notice.clone();
    update(
        &mut app,
        Msg::CandidatesWritten {
            item: "generate".into(),
            result: Err("the engine stopped".into()),
        },
    );
    assert!(
        screen(&app).is_some_and(|(text, error)| error && text.contains("could not write")),
        "{:?}",
        screen(&app)
    );
    assert!(
        update(&mut app, Msg::Tick(std::time::Instant::now())).is_empty(),
        "not tried again"
    );
    let undo = key(&app, KeyCode::Char('u'));
    // The failed item was skipped: that is undone first, then the rating.
    assert!(update(&mut app, undo.clone()).is_empty());
    let effects = update(&mut app, undo);
    assert!(matches!(effects.as_slice(), [Effect::RetractRecord { .. }]));
    let quit = key(&app, KeyCode::Esc);
    update(&mut app, quit);
    assert!(app.quit);
}

#[test]
fn written_candidates_are_shown_for_a_pick() {
    let mut app = annotate_app(vec![queue_item("generate", &[])]);
    let effects = update(&mut app, Msg::Tick(std::time::Instant::now()));
    assert!(matches!(
        effects.as_slice(),
        [Effect::WriteCandidates { .. }]
    ));
    let candidate = |text: &str| QueueCandidate {
        text: text.into(),
        label: Some("seed 1".into()),
        provenance: None,
    };
    update(
        &mut app,
        Msg::CandidatesWritten {
            item: "generate".into(),
            result: Ok((candidate("one"), candidate("two"))),
        },
    );
    let screen = app.annotate.as_deref().unwrap();
    assert!(screen.writing.is_none());
    assert_eq!(screen.ready_item().map(|i| i.candidates.len()), Some(2));
    let shown = crate::tui::tests::render(&mut app, 100, 30);
    assert!(
        shown.contains("A (a / ←)") && shown.contains("0/1 answered"),
        "{shown}"
    );
    let effects = update(&mut app, Action::Tie);
    assert!(matches!(effects.as_slice(), [Effect::AppendRecord { .. }]));
    assert!(crate::tui::tests::render(&mut app, 100, 30).contains("Every item is answered"));
}

/// A local model's vocabulary is read once it is loaded, and lore and
/// memory budgets count with it from then on, in the open session and in
/// those opened later; a server's model keeps the estimate.
#[test]
fn budgets_count_with_the_loaded_models_vocabulary() {
    let mut app = app();
    let effects = update(
        &mut app,
        Msg::ModelLoaded {
            info: model("tiny", 2048),
            switched: false,
        },
    );
    let [Effect::LoadVocab(path)] = effects.as_slice() else {
        panic!("expected the vocabulary to be read: {effects:?}");
    };
    assert_eq!(path, &PathBuf::from("tiny.gguf"));
    assert!(!app.tokens.is_exact());
    update(
        &mut app,
        Msg::TokensReady(her_core::story::TokenCounter::exact(|t| t.len()), None),
    );
    assert!(app.tokens.is_exact());

    app.backend_local = false;
    let effects = update(
        &mut app,
        Msg::ModelLoaded {
            info: model("served", 2048),
            switched: true,
        },
    );
    assert!(
        !effects.iter().any(|e| matches!(e, Effect::LoadVocab(_))),
        "{effects:?}"
    );
    assert!(!app.tokens.is_exact());
}
