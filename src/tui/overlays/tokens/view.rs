//! The token view: the reply's tokens coloured by probability (the cursor
//! reversed) and the likely alternatives at the cursor.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use crate::tui::app::App;
use crate::tui::overlays::tokens::TokenView;
use crate::tui::view::wrap::sanitize;

/// Likely tokens green, unlikely red: where the model hesitated.
fn colour(probability: f64) -> Color {
    match probability {
        p if p >= 0.8 => Color::Green,
        p if p >= 0.4 => Color::Yellow,
        p if p >= 0.1 => Color::LightRed,
        _ => Color::Red,
    }
}

/// A token's text as shown: lossy for split characters, control
/// characters made visible.
fn shown(bytes: &[u8]) -> String {
    sanitize(&String::from_utf8_lossy(bytes)).replace('\n', "⏎\n")
}

pub fn draw(frame: &mut Frame, rect: Rect, app: &App, view: &TokenView) {
    let Some(choices) = app.chat.as_ref().and_then(|c| c.choices.get(&view.key)) else {
        return;
    };
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(65), Constraint::Percentage(35)]).areas(rect);
    let mut lines: Vec<Line> = vec![Line::default()];
    for (i, token) in choices.tokens.iter().enumerate() {
        let mut style = Style::default().fg(colour(token.probability));
        if i == view.cursor {
            style = style.add_modifier(Modifier::REVERSED);
        }
        let text = shown(&token.bytes);
        let mut parts = text.split('\n').peekable();
        while let Some(part) = parts.next() {
            if let Some(line) = lines.last_mut() {
                line.push_span(Span::styled(part.to_string(), style));
            }
            if parts.peek().is_some() {
                lines.push(Line::default());
            }
        }
    }
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default().borders(Borders::ALL).title(
                "token probabilities · ←/→ token · ↑/↓ alternative · enter writes from it · esc",
            ),
        ),
        top,
    );
    let Some(token) = choices.tokens.get(view.cursor) else {
        return;
    };
    let mut rows: Vec<Line> = token
        .candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let marker = if i == view.pick { "▸ " } else { "  " };
            let drawn = if c.token == token.token {
                "  (in the reply)"
            } else {
                ""
            };
            let style = Style::default().fg(colour(c.probability));
            let style = if i == view.pick {
                style.add_modifier(Modifier::BOLD)
            } else {
                style
            };
            Line::from(vec![
                Span::raw(marker),
                Span::styled(
                    format!("{:>6.2}%  {:?}", c.probability * 100.0, shown(&c.bytes)),
                    style,
                ),
                Span::raw(drawn),
            ])
        })
        .collect();
    if rows.is_empty() {
        // A server sent this token's text together with earlier ones.
        rows.push(Line::from(
            "no alternatives here: the text before this token is not known exactly",
        ));
    }
    let title = format!(
        "token {} of {} · {:.2}% · alternatives",
        view.cursor + 1,
        choices.tokens.len(),
        token.probability * 100.0
    );
    frame.render_widget(
        Paragraph::new(rows).block(Block::default().borders(Borders::ALL).title(title)),
        bottom,
    );
}
