//! The RL rating dialog: every reply of the step with its stars on the
//! left, the highlighted reply in full (plan included) on the right.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use crate::tui::app::App;
use crate::tui::overlays::rl_rate::state::RlRateForm;

pub fn draw(frame: &mut Frame, rect: Rect, app: &App, form: &RlRateForm) {
    let [list, detail] =
        Layout::horizontal([Constraint::Percentage(35), Constraint::Percentage(65)]).areas(rect);
    let (at_group, at_reply) = form.position();
    let mut lines: Vec<Line> = Vec::new();
    for (g, group) in form.ask.groups.iter().enumerate() {
        lines.push(Line::styled(
            format!("{} ← {}", group.character, one_line(&group.last_turn, 40)),
            Style::default().add_modifier(Modifier::BOLD),
        ));
        for (r, text) in group.candidates.iter().enumerate() {
            let stars = form
                .stars
                .get(g)
                .and_then(|s| s.get(r))
                .copied()
                .flatten()
                .map_or("·····".to_string(), |n| {
                    format!("{}{}", "★".repeat(n as usize), "☆".repeat(5 - n as usize))
                });
            let mut style = Style::default();
            if (g, r) == (at_group, at_reply) {
                style = style.bg(app.theme.selection).add_modifier(Modifier::BOLD);
            }
            lines.push(Line::styled(
                format!("  {stars} {}", one_line(text, 30)),
                style,
            ));
        }
    }
    lines.push(Line::default());
    lines.push(Line::styled(
        "1–5: stars · ↑↓: move · enter: send · esc: later",
        app.theme.dim(),
    ));
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!("RL step {}: rate every reply", form.ask.step)),
        ),
        list,
    );
    let text = form
        .ask
        .groups
        .get(at_group)
        .and_then(|g| g.candidates.get(at_reply))
        .cloned()
        .unwrap_or_default();
    frame.render_widget(
        Paragraph::new(text).wrap(Wrap { trim: false }).block(
            Block::default().borders(Borders::ALL).title(format!(
                "reply {} of group {}",
                at_reply + 1,
                at_group + 1
            )),
        ),
        detail,
    );
}

/// The first line of `text`, cut to `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    let mut out: String = line.chars().take(max).collect();
    if line.chars().count() > max {
        out.push('…');
    }
    out
}
