//! The raw overlay: the selected reply exactly as generated, highlighted.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use crate::tui::app::App;
use crate::tui::highlight::highlight;
use crate::tui::view::wrap::sanitize;

pub fn draw(frame: &mut Frame, rect: Rect, app: &App, scroll: &u16) {
    let raw = app.focused_reply().map(|m| m.raw).unwrap_or_default();
    let dark = app.theme == crate::tui::theme::Theme::dark();
    frame.render_widget(
        Paragraph::new(highlight(&sanitize(&raw), dark))
            .wrap(Wrap { trim: false })
            .scroll((*scroll, 0))
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title("raw reply, exactly as generated"),
            ),
        rect,
    );
}
