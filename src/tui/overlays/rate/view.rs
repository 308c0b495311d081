//! The detailed rating form.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use crate::tui::app::App;
use crate::tui::overlays::rate::state::{LAYERS, RateFocus, RateForm, layer_label, score_label};
use her_core::prefs::PRINCIPLE_DIMENSIONS;

pub fn rate_form(frame: &mut Frame, rect: Rect, app: &App, form: &RateForm) {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let chosen = Style::default()
        .fg(app.theme.accent)
        .add_modifier(Modifier::BOLD);
    let mut lines = vec![
        Line::from(vec![
            Span::styled("score   ", bold),
            Span::raw(
                form.score
                    .map_or("—  (+ / - thumbs, 1–5 stars)".into(), score_label),
            ),
        ]),
        Line::from(
            std::iter::once(Span::styled("layer   ", bold))
                .chain(LAYERS.iter().map(|&l| {
                    let style = if l == form.layer {
                        chosen
                    } else {
                        app.theme.dim()
                    };
                    Span::styled(format!("[{}] ", layer_label(l)), style)
                }))
                .collect::<Vec<_>>(),
        ),
        Line::default(),
        Line::styled("tags (up/down, space toggles)", bold),
    ];
    for (i, tag) in PRINCIPLE_DIMENSIONS.iter().enumerate() {
        let mark = if form.tags.contains(&i) { "[x]" } else { "[ ]" };
        let mut style = Style::default();
        if i == form.cursor && form.focus == RateFocus::Fields {
            style = style.bg(app.theme.selection);
        }
        lines.push(Line::styled(format!("  {mark} {tag}"), style));
    }
    lines.push(Line::default());
    let caret = if form.focus == RateFocus::Rationale {
        "▏"
    } else {
        ""
    };
    lines.push(Line::from(vec![
        Span::styled("why     ", bold),
        Span::raw(format!("{}{caret}", form.rationale)),
    ]));
    lines.push(Line::default());
    lines.push(Line::styled(
        "tab: fields ⇄ rationale · enter: save · esc: cancel",
        app.theme.dim(),
    ));
    let title = format!("rate {}'s reply", form.speaker);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title(title)),
        rect,
    );
}
