//! The branch tree overlay: every message of the session, the active
//! branch marked, `cursor` on one row.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph};

use crate::tui::app::App;

pub fn draw(frame: &mut Frame, rect: Rect, app: &App, cursor: &usize) {
    let rows = &app.tree_rows;
    let height = rect.height.saturating_sub(2) as usize;
    let start = cursor.saturating_sub(height.saturating_sub(1));
    let lines: Vec<Line> = rows
        .iter()
        .enumerate()
        .skip(start)
        .take(height)
        .map(|(i, row)| {
            let marker = if row.on_active_path { "●" } else { "○" };
            let mut style = if row.on_active_path {
                Style::default()
            } else {
                app.theme.dim()
            };
            if i == *cursor {
                style = style.bg(app.theme.selection).add_modifier(Modifier::BOLD);
            }
            let alts = if row.alternatives > 1 {
                format!("  [{} alternatives]", row.alternatives)
            } else {
                String::new()
            };
            Line::styled(
                format!("{}{marker} {}{alts}", "  ".repeat(row.depth), row.label),
                style,
            )
        })
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title("branches (enter jumps to the branch · esc closes)"),
        ),
        rect,
    );
}
