//! The pickers: a filterable list beside a preview.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use crate::tui::app::App;
use crate::tui::screens::picker::state::Picker;

/// A picker: the filterable list, a preview and the key help.
pub fn draw(frame: &mut Frame, area: Rect, picker: &Picker, title: &str, app: &App) {
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
