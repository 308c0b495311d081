//! The choice for a session another window writes to.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use crate::tui::app::App;
use crate::tui::overlays::locked::state::LOCKED_CHOICES;
use crate::tui::overlays::view::centered;

pub fn draw(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    path: &std::path::Path,
    holder: &str,
    cursor: &usize,
) {
    let small = centered(area, 70, 40);
    frame.render_widget(Clear, small);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut lines = vec![
        Line::raw(format!(
            "'{name}' is open in another her window ({holder})."
        )),
        Line::raw("Only one window writes to a session, so both stories stay whole."),
        Line::default(),
    ];
    for (i, (key, label)) in LOCKED_CHOICES.iter().enumerate() {
        let style = if i == *cursor {
            Style::default()
                .bg(app.theme.selection)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        };
        lines.push(Line::styled(format!("{key}  {label}"), style));
    }
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .title("this session is open elsewhere"),
        ),
        small,
    );
}
