//! The text overlay of `/prompt`, `/lore` and `/memory`.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

pub fn draw(frame: &mut Frame, rect: Rect, title: &str, text: &str, scroll: &u16) {
    frame.render_widget(
        Paragraph::new(text.to_string())
            .wrap(Wrap { trim: false })
            .scroll((*scroll, 0))
            .block(Block::default().borders(Borders::ALL).title(title)),
        rect,
    );
}
