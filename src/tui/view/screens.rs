//! Screen layouts: pickers, and the chat with its panes, composer and status bar.

use ratatui::Frame;
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::overlays;
use super::transcript::Transcript;
use super::wrap::{sanitize, wrap};
use crate::tui::app::{App, Screen};
use crate::tui::keymap::Layer as KeyLayer;
use crate::tui::model::PaneMode;
use crate::tui::picker::Picker;
use her_core::format::{Layer, health};

/// Panes go beside the transcript from this width, below it under it.
const SIDE_PANES_FROM: u16 = 100;

pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    match app.screen {
        Screen::Characters => draw_picker(
            frame,
            area,
            &app.characters,
            "Choose a character or scene",
            app,
        ),
        Screen::Sessions => draw_picker(
            frame,
            area,
            &app.sessions,
            &format!(
                "{}: resume a session or start a new one",
                app.character_name
            ),
            app,
        ),
        Screen::Chat => draw_chat(frame, area, app),
        Screen::Annotate => {
            if let Some(screen) = &app.annotate {
                crate::tui::annotate::view::draw(frame, screen, &app.theme);
            }
        }
    }
    if let Some(overlay) = &app.overlay {
        overlays::draw(frame, area, app, overlay);
    }
    // Last, so no screen or overlay can hide a message.
    draw_notice(frame, area, app);
}

/// Most rows a notice takes; a longer one is cut (it is in the log too).
const NOTICE_ROWS: usize = 4;

/// The notice (an error or a confirmation) over the bottom rows of any
/// screen: on the chat it covers the status bar, on a picker the key help.
fn draw_notice(frame: &mut Frame, area: Rect, app: &App) {
    let Some((text, error)) = &app.status.notice else {
        return;
    };
    let style = if *error {
        Style::default().fg(app.theme.error)
    } else {
        Style::default().fg(app.theme.accent)
    };
    let lines = wrap(&[(text.clone(), style)], usize::from(area.width.max(1)), 0);
    let rows = lines
        .len()
        .clamp(1, NOTICE_ROWS)
        .min(usize::from(area.height)) as u16;
    let rect = Rect {
        y: area.bottom().saturating_sub(rows),
        height: rows,
        ..area
    };
    frame.render_widget(Clear, rect);
    frame.render_widget(Paragraph::new(lines), rect);
}

fn draw_picker(frame: &mut Frame, area: Rect, picker: &Picker, title: &str, app: &App) {
    let [main, help] = Layout::vertical([Constraint::Min(3), Constraint::Length(1)]).areas(area);
    let wide = area.width >= 90;
    let [list_area, preview_area] = if wide {
        Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(main)
    } else {
        Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(main)
    };
    let visible = picker.visible();
    let mut lines = vec![Line::from(vec![
        Span::styled("filter: ", app.theme.dim()),
        Span::styled(
            picker.filter.clone(),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::styled("▏", app.theme.dim()),
    ])];
    for (row, &i) in visible.iter().enumerate() {
        let item = &picker.items[i];
        let selected = row == picker.cursor;
        let style = if selected {
            Style::default()
                .bg(app.theme.selection)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        };
        lines.push(Line::from(vec![
            Span::styled(if selected { "▸ " } else { "  " }, style),
            Span::styled(item.title.clone(), style),
            Span::styled(format!("  {}", item.subtitle), app.theme.dim()),
        ]));
    }
    if visible.is_empty() {
        lines.push(Line::styled("  (nothing matches)", app.theme.dim()));
    }
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(title.to_string()),
        ),
        list_area,
    );
    let preview = picker
        .current()
        .map(|i| i.preview.clone())
        .unwrap_or_default();
    frame.render_widget(
        Paragraph::new(preview)
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title("preview")),
        preview_area,
    );
    frame.render_widget(
        Paragraph::new(Line::styled(
            "type to filter · ↑/↓ move · enter choose · esc back · ctrl+q quit · f1 help",
            app.theme.dim(),
        )),
        help,
    );
}

/// Where the chat's parts go on a screen of `area`.
struct ChatLayout {
    transcript: Rect,
    /// The thinking panes and how they stack.
    panes: Option<(Rect, Direction)>,
    composer: Rect,
    status: Rect,
}

fn chat_layout(area: Rect, app: &App) -> ChatLayout {
    let composer_height = (app.composer.text.lines().count().max(1) as u16 + 2)
        .min(area.height / 3)
        .max(3);
    let [body, composer, status] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(composer_height),
        Constraint::Length(1),
    ])
    .areas(area);
    let any_pane = app.modes.plan == PaneMode::Pane || app.modes.thoughts == PaneMode::Pane;
    let (transcript, panes) = if !any_pane {
        (body, None)
    } else if area.width >= SIDE_PANES_FROM {
        let [t, p] = Layout::horizontal([Constraint::Percentage(62), Constraint::Percentage(38)])
            .areas(body);
        (t, Some((p, Direction::Vertical)))
    } else {
        let [t, p] =
            Layout::vertical([Constraint::Percentage(65), Constraint::Percentage(35)]).areas(body);
        (t, Some((p, Direction::Horizontal)))
    };
    ChatLayout {
        transcript,
        panes,
        composer,
        status,
    }
}

/// The transcript block: a rule with the title on top.
fn transcript_block(app: &App) -> Block<'static> {
    let title = if app.layer() == KeyLayer::Transcript {
        "transcript (↑↓ select · ←→ alternatives · r regenerate · e edit · i type)"
    } else {
        "transcript"
    };
    Block::default().borders(Borders::TOP).title(title)
}

/// Rows of text the transcript shows on a screen of `area` (a page, for
/// page up and down): the runtime tells `update` before each draw.
pub fn transcript_rows(area: Rect, app: &App) -> usize {
    let layout = chat_layout(area, app);
    transcript_block(app).inner(layout.transcript).height as usize
}

fn draw_chat(frame: &mut Frame, area: Rect, app: &App) {
    let ChatLayout {
        transcript: transcript_area,
        panes: pane_area,
        composer,
        status,
    } = chat_layout(area, app);
    let focused = app.focused_reply();
    let mut panes: Vec<(&str, String, Style)> = Vec::new();
    if app.modes.plan == PaneMode::Pane {
        let text = focused
            .as_ref()
            .map(|m| m.layer_text(Layer::SystemThinking))
            .unwrap_or_default();
        panes.push(("LLM thinking", text.trim().to_string(), app.theme.plan()));
    }
    if app.modes.thoughts == PaneMode::Pane {
        let text = focused
            .as_ref()
            .map(|m| m.thoughts().join("\n\n"))
            .unwrap_or_default();
        panes.push(("character thinking", text, app.theme.thought()));
    }
    let block = transcript_block(app);
    let inner = block.inner(transcript_area);
    frame.render_widget(block, transcript_area);
    let (saved, tail) = app.view();
    frame.render_widget(
        Transcript {
            messages: saved,
            tail: tail.as_ref(),
            selected: if app.layer() == KeyLayer::Transcript {
                app.selected
            } else {
                None
            },
            scroll: app.scroll,
            modes: app.modes,
            theme: &app.theme,
        },
        inner,
    );
    if let Some((pane_area, direction)) = pane_area {
        let areas = Layout::default()
            .direction(direction)
            .constraints(vec![Constraint::Ratio(1, panes.len() as u32); panes.len()])
            .split(pane_area);
        for ((title, text, style), area) in panes.into_iter().zip(areas.iter()) {
            let body = if text.is_empty() {
                "—".to_string()
            } else {
                text
            };
            frame.render_widget(
                Paragraph::new(Text::styled(sanitize(&body).into_owned(), style))
                    .wrap(Wrap { trim: false })
                    .block(Block::default().borders(Borders::ALL).title(title)),
                *area,
            );
        }
    }
    draw_composer(frame, composer, app);
    draw_status(frame, status, app);
}

fn draw_composer(frame: &mut Frame, area: Rect, app: &App) {
    let read_only = app.chat.as_ref().and_then(|c| c.read_only.as_deref());
    let title = match (read_only, &app.editing, &app.streaming) {
        (Some(reason), _, _) => {
            format!("read-only: {reason} · /fork continues in a new session file")
        }
        (None, Some(_), _) => "editing (enter saves a new version · esc leaves)".to_string(),
        (None, None, Some(_)) => "writing… (ctrl+c stops)".to_string(),
        (None, None, None) => format!(
            "message to {} (enter sends · alt+enter new line · /help)",
            app.character_name
        ),
    };
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    frame.render_widget(Paragraph::new(app.composer.text.clone()).block(block), area);
    if app.layer() == KeyLayer::Input && app.overlay.is_none() {
        let (line, col) = app.composer.cursor_line_col();
        let y = inner.y + (line as u16).min(inner.height.saturating_sub(1));
        let x = inner.x + (col as u16).min(inner.width.saturating_sub(1));
        frame.set_cursor_position((x, y));
    }
}

fn draw_status(frame: &mut Frame, area: Rect, app: &App) {
    let s = &app.status;
    let (errors, warnings) = health(&s.findings);
    let format = match (errors, warnings) {
        (0, 0) => "format ok".to_string(),
        (e, w) => format!("format {e}E {w}W"),
    };
    let parts = [
        s.model.clone(),
        s.adapter
            .clone()
            .map_or_else(|| "no adapter".into(), |a| format!("adapter {a}")),
        format!("ctx {}/{}", s.context_used, s.n_ctx),
        format!("{:.1} tok/s", s.tokens_per_second),
        format,
        format!(
            "plan {} · thoughts {}",
            app.modes.plan.label(),
            app.modes.thoughts.label()
        ),
        s.session.clone(),
    ];
    frame.render_widget(
        Paragraph::new(Line::styled(parts.join(" │ "), app.theme.dim())),
        area,
    );
}
