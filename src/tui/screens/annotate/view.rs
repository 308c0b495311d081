//! Drawing the annotation screen: progress, the context, the candidates.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Gauge, Paragraph, Wrap};

use crate::tui::model::{PaneMode, PaneModes, ShownMessage, Speaker};
use crate::tui::screens::annotate::state::AnnotateScreen;
use crate::tui::screens::chat::transcript::message_lines;
use crate::tui::theme::Theme;
use her_core::prefs::Role;
use her_core::prefs::queue::QueueItem;

/// Context messages shown above the candidates (the newest ones).
const CONTEXT_SHOWN: usize = 6;

/// What the body says while the current item has no candidates.
fn waiting_text(state: &AnnotateScreen) -> Option<&'static str> {
    let item = state.run.current().filter(|i| i.candidates.is_empty())?;
    Some(if state.failed.contains(&item.id) {
        "No candidates could be written for the items left (see below). s: skip · q: quit"
    } else {
        "writing two candidates for this context …"
    })
}

pub fn draw(frame: &mut Frame, state: &AnnotateScreen, theme: &Theme) {
    let area = frame.area();
    let status = waiting_text(state);
    let [top, context, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Percentage(30),
        Constraint::Min(5),
        Constraint::Length(2),
    ])
    .areas(area);
    let (done, total) = state.run.progress();
    let ratio = if total == 0 {
        1.0
    } else {
        done as f64 / total as f64
    };
    let label = format!(
        "{} · {done}/{total} answered · annotator {}",
        state.queue_name,
        state.run.annotator()
    );
    frame.render_widget(
        Gauge::default()
            .ratio(ratio)
            .label(label)
            .gauge_style(Style::default().fg(theme.accent)),
        top,
    );
    match (status, state.ready_item()) {
        (Some(text), _) => centered_text(frame, body, text),
        (None, None) if state.run.is_finished() => centered_text(
            frame,
            body,
            "Every item is answered. u takes the last answer back; q quits.",
        ),
        (None, None) => centered_text(frame, body, "Nothing to show."),
        (None, Some(item)) => {
            draw_context(frame, context, item, theme);
            draw_candidates(frame, body, state, item, theme);
        }
    }
    draw_footer(frame, footer, state, theme);
}

fn centered_text(frame: &mut Frame, area: Rect, text: &str) {
    frame.render_widget(
        Paragraph::new(text.to_string())
            .wrap(Wrap { trim: true })
            .block(Block::default().borders(Borders::ALL)),
        area,
    );
}

fn draw_context(frame: &mut Frame, area: Rect, item: &QueueItem, theme: &Theme) {
    let shown: Vec<_> = item
        .context
        .iter()
        .filter(|m| m.role != Role::System)
        .collect();
    let start = shown.len().saturating_sub(CONTEXT_SHOWN);
    let mut lines = Vec::new();
    for m in &shown[start..] {
        let who = match m.role {
            Role::Assistant => item.character.as_str(),
            _ => "context",
        };
        lines.push(Line::styled(
            who.to_string(),
            Style::default().add_modifier(Modifier::BOLD),
        ));
        let text = her_core::format::strip_system_thinking(&m.content);
        lines.extend(
            text.lines()
                .map(|l| Line::styled(l.to_string(), theme.dim())),
        );
    }
    let title = format!(
        "{} · item {} · the dialogue so far{}",
        item.character,
        item.id,
        if start > 0 { " (newest turns)" } else { "" }
    );
    // The newest turns matter most: show the end of the context.
    let height = area.height.saturating_sub(2) as usize;
    let skip = lines.len().saturating_sub(height) as u16;
    frame.render_widget(
        Paragraph::new(lines)
            .scroll((skip, 0))
            .block(Block::default().borders(Borders::ALL).title(title)),
        area,
    );
}

fn draw_candidates(
    frame: &mut Frame,
    area: Rect,
    state: &AnnotateScreen,
    item: &QueueItem,
    theme: &Theme,
) {
    let modes = PaneModes {
        plan: PaneMode::Inline,
        thoughts: PaneMode::Inline,
    };
    let order: Vec<usize> = match (item.candidates.len(), state.swapped()) {
        (2, true) => vec![1, 0],
        (2, false) => vec![0, 1],
        _ => vec![0],
    };
    let areas = if order.len() == 2 {
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
            .split(area)
            .to_vec()
    } else {
        vec![area]
    };
    for (side, (index, rect)) in order.iter().zip(areas.iter()).enumerate() {
        let Some(candidate) = item.candidates.get(*index) else {
            continue;
        };
        let message = ShownMessage::new(
            String::new(),
            item.character.clone(),
            Speaker::Character,
            candidate.text.clone(),
            (0, 1),
        );
        let width = rect.width.saturating_sub(2) as usize;
        let lines = message_lines(&message, width, modes, theme);
        let title = match (order.len(), side) {
            (1, _) => "the reply to rate".to_string(),
            (_, 0) => "A (a / ←)".to_string(),
            _ => "B (b / →)".to_string(),
        };
        frame.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .scroll((state.scroll, 0))
                .block(Block::default().borders(Borders::ALL).title(title)),
            *rect,
        );
    }
}

fn draw_footer(frame: &mut Frame, area: Rect, state: &AnnotateScreen, theme: &Theme) {
    let keys = match state.ready_item().map(|i| i.candidates.len()) {
        Some(2) => "a: A better · b: B better · t: tie · x: both bad",
        Some(_) => "+ / -: thumbs · 1–5: stars",
        None => "",
    };
    let mut lines = vec![Line::styled(
        format!("{keys} · s: skip · u: undo · j/k: scroll · q: quit (answers are saved as you go)"),
        theme.dim(),
    )];
    if let Some((text, error)) = &state.notice {
        let style = if *error {
            Style::default().fg(theme.error)
        } else {
            Style::default().fg(theme.accent)
        };
        lines.push(Line::styled(text.clone(), style));
    }
    frame.render_widget(Paragraph::new(lines), area);
}
