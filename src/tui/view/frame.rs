//! The frame: the screen, the overlay over it and the notice over both.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::widgets::{Clear, Paragraph};

use crate::tui::app::{App, Screen};
use crate::tui::overlays::view as overlays;
use crate::tui::view::wrap::wrap;

pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    match app.screen {
        Screen::Characters => crate::tui::screens::picker::view::draw(
            frame,
            area,
            &app.characters,
            "Choose a character or scene",
            app,
        ),
        Screen::Sessions => crate::tui::screens::picker::view::draw(
            frame,
            area,
            &app.sessions,
            &format!(
                "{}: resume a session or start a new one",
                app.character_name
            ),
            app,
        ),
        Screen::Chat => crate::tui::screens::chat::view::draw(frame, area, app),
        Screen::Annotate => {
            if let Some(screen) = &app.annotate {
                crate::tui::screens::annotate::view::draw(frame, screen, &app.theme);
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
