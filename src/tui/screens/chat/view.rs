//! The chat screen: transcript, panes, composer and status bar.

use ratatui::Frame;
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Text};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use crate::tui::app::App;
use crate::tui::keymap::Layer as KeyLayer;
use crate::tui::model::PaneMode;
use crate::tui::screens::chat::transcript::Transcript;
use crate::tui::view::wrap::sanitize;
use her_core::format::{Layer, health};

/// Panes go beside the transcript from this width, below it under it.
const SIDE_PANES_FROM: u16 = 100;
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

/// The chat: transcript, panes for both thinking layers, composer and status bar.
pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
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
