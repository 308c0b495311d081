//! The yes/no question.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use crate::tui::app::App;
use crate::tui::overlays::view::centered;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, question: &str) {
    let small = centered(area, 60, 20);
    frame.render_widget(Clear, small);
    frame.render_widget(
        Paragraph::new(vec![
            Line::raw(question.to_string()),
            Line::default(),
            Line::styled("y: yes   n: no", app.theme.dim()),
        ])
        .wrap(Wrap { trim: false })
        .block(Block::default().borders(Borders::ALL).title("confirm")),
        small,
    );
}
