//! `/lore`, `/note`, `/memory` and the pin key: the session's lorebooks,
//! author's note and long-term memory from the chat.

use std::path::Path;

use crate::tui::app::{App, Overlay};
use crate::tui::effect::Effect;
use crate::tui::screens::chat::session::ChatSession;
use her_core::character::AuthorNote;
use her_core::lore::Role;
use her_core::story::{Shelf, SummarySource, explain};

pub const HELP: &str = "/lore [attach|detach NAME | books] · /note [TEXT | depth=N every=M role=system|user | off] · /memory [pin TEXT | unpin N | edit | set TEXT | summarize]";

/// Runs `/lore`, `/note` or `/memory`; `rest` is the text after the name.
pub fn run(app: &mut App, name: &str, rest: &str) -> Vec<Effect> {
    if app.chat.is_none() {
        app.notify(format!("/{name} needs an open session"), true);
        return Vec::new();
    }
    let (sub, arg) = rest
        .trim()
        .split_once(char::is_whitespace)
        .map_or((rest.trim(), ""), |(s, a)| (s, a.trim()));
    let reads = matches!(
        (name, sub),
        ("lore", "" | "books") | ("memory", "" | "edit") | ("note", "")
    );
    let changes = !reads;
    if changes && (app.streaming.is_some() || app.arena.is_some()) {
        // The log must not change while a reply is written: the reply is
        // recorded with the context its prompt was built from.
        app.notify(
            format!("wait for the reply to finish before changing /{name}"),
            true,
        );
        return Vec::new();
    }
    match name {
        "lore" => lore(app, sub, arg),
        "note" => {
            note(app, rest.trim());
            Vec::new()
        }
        _ => memory(app, sub, arg),
    }
}

fn show(app: &mut App, title: &str, text: String) {
    app.overlay = Some(Overlay::Prompt {
        title: title.to_string(),
        text,
        scroll: 0,
    });
}

fn report(app: &mut App, result: Result<(), her_core::session::SessionError>, done: String) {
    match result {
        Ok(()) => app.notify(done, false),
        Err(err) => app.notify(err.to_string(), true),
    }
}

fn lore(app: &mut App, sub: &str, arg: &str) -> Vec<Effect> {
    let Some(chat) = &mut app.chat else {
        return Vec::new();
    };
    match sub {
        "" => {
            let leaf = chat.leaf_key();
            let speaker = chat.character.name.clone();
            let (prepared, _) = chat.prepare_upto(leaf.as_deref(), &speaker);
            show(
                app,
                "lore for the next reply: why each entry is in or out",
                explain(&prepared),
            );
        }
        // Also reads the books again, for edits made while chatting.
        "books" => {
            return vec![
                Effect::ListBooks(chat.story.lore_dir.clone()),
                load_books(chat, None),
            ];
        }
        // Attached once the runtime has found the book (`books_loaded`).
        "attach" if !arg.is_empty() => return vec![load_books(chat, Some(arg))],
        "detach" if !arg.is_empty() => {
            let result = chat.attach_book(arg, false);
            let reload = result.is_ok().then(|| load_books(chat, None));
            report(
                app,
                result,
                format!("lorebook '{arg}' detached from this session"),
            );
            return reload.into_iter().collect();
        }
        _ => app.notify(format!("/lore: {HELP}"), true),
    }
    Vec::new()
}

/// Reads the session's books again, with `attach` among them.
fn load_books(chat: &ChatSession, attach: Option<&str>) -> Effect {
    let mut names = chat.wanted_books();
    names.extend(attach.map(str::to_string));
    Effect::LoadBooks {
        session: chat.path.clone(),
        lore_dir: chat.story.lore_dir.clone(),
        names,
        attach: attach.map(str::to_string),
    }
}

/// The runtime read the session's books: prompts use them from now on; a
/// book `/lore attach` named is attached if it was found.
pub fn books_loaded(
    app: &mut App,
    session: &Path,
    books: Shelf,
    attach: Option<(String, Result<(), String>)>,
) {
    let Some(chat) = app.chat.as_mut().filter(|c| c.path == session) else {
        return;
    };
    chat.books = books;
    let Some((name, found)) = attach else { return };
    let result = match found {
        Ok(()) => chat.attach_book(&name, true),
        Err(err) => return app.notify(err, true),
    };
    report(
        app,
        result,
        format!("lorebook '{name}' attached to this session"),
    );
}

/// `/lore books`: what the lore folder holds and what this session attached.
pub fn books_listed(app: &mut App, lore_dir: &Path, names: &[String]) {
    let Some(chat) = &app.chat else { return };
    let attached = chat.story_log().0.attached;
    let text = format!(
        "books in {}: {}\nattached to this session: {}",
        lore_dir.display(),
        if names.is_empty() {
            "none (her import BOOK.json)".to_string()
        } else {
            names.join(", ")
        },
        if attached.is_empty() {
            "none".to_string()
        } else {
            attached.join(", ")
        }
    );
    show(app, "lorebooks", text);
}

/// `/note` shows the note and puts it in the composer to edit; `/note TEXT`
/// sets it; `depth=N every=M role=R` words change its settings; `/note off`
/// empties it.
fn note(app: &mut App, rest: &str) {
    let Some(chat) = &mut app.chat else { return };
    let current = chat.note().unwrap_or_else(|| AuthorNote::new(""));
    if rest.is_empty() {
        let text = format!(
            "/note depth={} every={} role={} {}",
            current.depth,
            current.every,
            role_word(current.role),
            current.text
        );
        app.composer.set(text.trim_end());
        app.notify(
            "the author's note is in the composer: edit it and press enter",
            false,
        );
        return;
    }
    let mut next = current;
    let mut words = Vec::new();
    for word in rest.split(' ') {
        let setting = word.split_once('=').filter(|_| words.is_empty());
        match setting {
            Some(("depth", v)) => match v.parse() {
                Ok(d) if d <= her_core::lore::model::MAX_INSERT_DEPTH => next.depth = d,
                _ => return app.notify(format!("/note: depth '{v}' is not 0..=9999"), true),
            },
            Some(("every", v)) => match v.parse() {
                Ok(n) => next.every = n,
                _ => return app.notify(format!("/note: every '{v}' is not a number"), true),
            },
            Some(("role", v)) => match v {
                "system" => next.role = Role::System,
                "user" => next.role = Role::User,
                _ => return app.notify(format!("/note: role '{v}': use system or user"), true),
            },
            _ => words.push(word),
        }
    }
    let text = words.join(" ");
    if text.trim() == "off" {
        next.text.clear();
    } else if !text.trim().is_empty() {
        next.text = text.trim().to_string();
    }
    let done = if next.text.is_empty() {
        "author's note off".to_string()
    } else {
        format!(
            "author's note set: depth {}, every {} turn(s), as {}",
            next.depth,
            next.every,
            role_word(next.role)
        )
    };
    let result = chat.set_note(next);
    report(app, result, done);
}

fn role_word(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

fn memory(app: &mut App, sub: &str, arg: &str) -> Vec<Effect> {
    let Some(chat) = &mut app.chat else {
        return Vec::new();
    };
    let path = chat.active_keys();
    let (log, _) = chat.story_log();
    match sub {
        "" => {
            let mut text = String::from("pinned memories (P on a message, /memory pin TEXT):\n");
            let pins: Vec<_> = log.pins_on(&path).collect();
            if pins.is_empty() {
                text.push_str("  none\n");
            }
            for (i, p) in pins.iter().enumerate() {
                text.push_str(&format!("  {}. {}\n", i + 1, p.text));
            }
            text.push_str("\nsummary of this branch (/memory edit to change it):\n");
            match log.summary_on(&path) {
                Some(s) => text.push_str(&format!(
                    "  covers {} message(s), written by {:?} at {}, version {} of {}\n  {}\n",
                    s.messages,
                    s.source,
                    s.created_at,
                    log.summaries
                        .iter()
                        .position(|x| x.id == s.id)
                        .map_or(0, |i| i + 1),
                    log.summaries.len(),
                    s.text
                )),
                None => text.push_str("  none yet\n"),
            }
            show(app, "long-term memory", text);
        }
        "pin" if !arg.is_empty() => {
            let result = chat.pin(arg, None).map(|_| ());
            report(app, result, "pinned".into());
        }
        "unpin" => {
            let pins: Vec<String> = log.pins_on(&path).map(|p| p.id.clone()).collect();
            match arg
                .parse::<usize>()
                .ok()
                .and_then(|n| pins.get(n.wrapping_sub(1)))
            {
                Some(id) => {
                    let result = chat.unpin(id);
                    report(app, result, format!("memory {arg} unpinned"));
                }
                None => app.notify(format!("/memory unpin N: N is 1..={}", pins.len()), true),
            }
        }
        "edit" => {
            let text = log
                .summary_on(&path)
                .map_or(String::new(), |s| s.text.clone());
            app.composer.set(format!("/memory set {text}").trim_end());
            app.notify(
                "the summary is in the composer: edit it and press enter (ctrl+e: $EDITOR)",
                false,
            );
        }
        "set" if !arg.is_empty() => match chat.leaf_key() {
            Some(leaf) => {
                let result = chat.save_summary(arg, &leaf, SummarySource::User, None);
                report(app, result, "summary saved (a new version)".into());
            }
            None => app.notify("/memory set: the session has no messages yet", true),
        },
        "summarize" | "summarise" => return crate::tui::screens::chat::summary::request(app, true),
        _ => app.notify(format!("/memory: {HELP}"), true),
    }
    Vec::new()
}

/// The pin key: the selected message becomes a memory.
pub fn pin_selected(app: &mut App, message: Option<crate::tui::model::ShownMessage>) {
    if app.streaming.is_some() || app.arena.is_some() {
        app.notify("wait for the reply to finish before pinning", true);
        return;
    }
    let (Some(chat), Some(msg)) = (&mut app.chat, message) else {
        return;
    };
    let text = her_core::story::memory::pin_text(&msg.name, &msg.raw);
    let result = chat.pin(&text, Some(&msg.key)).map(|_| ());
    report(app, result, format!("pinned: {}", clip(&text, 60)));
}

fn clip(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}
