//! The evaluations overlay: the evaluations on the left, the selected one's
//! scores on the right as grouped bars (one group per dimension, one bar per
//! system) labelled with the mean and its 95% interval.

use ratatui::Frame;
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Bar, BarChart, BarGroup, Block, Borders, Paragraph};

use crate::tui::app::App;
use her_eval::EvalResults;
use her_eval::score::column_titles;

const COLOURS: [Color; 6] = [
    Color::Cyan,
    Color::Yellow,
    Color::Green,
    Color::Magenta,
    Color::LightRed,
    Color::LightBlue,
];

pub fn draw(frame: &mut Frame, rect: Rect, app: &App, cursor: usize) {
    let [list, detail] =
        Layout::horizontal([Constraint::Percentage(30), Constraint::Percentage(70)]).areas(rect);
    let mut lines: Vec<Line> = Vec::new();
    if app.evals.is_empty() {
        lines.push(Line::styled(
            "No evaluations yet. Run `her eval` (add --adapter runs/NAME/adapter.gguf to compare); results show up here.",
            app.theme.dim(),
        ));
    }
    for (i, eval) in app.evals.iter().enumerate() {
        let mut style = Style::default();
        if i == cursor {
            style = style.bg(app.theme.selection).add_modifier(Modifier::BOLD);
        }
        lines.push(Line::styled(eval.name.clone(), style));
        let systems: Vec<String> = eval
            .systems
            .iter()
            .map(|s| format!("{} {:.1}", s.label, s.overall()))
            .collect();
        lines.push(Line::styled(
            format!("  {}", systems.join(" · ")),
            app.theme.dim(),
        ));
    }
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title("evaluations (↑/↓ · esc closes)"),
        ),
        list,
    );
    match app.evals.get(cursor) {
        Some(eval) => chart(frame, detail, app, eval),
        None => frame.render_widget(Block::default().borders(Borders::ALL), detail),
    }
}

fn chart(frame: &mut Frame, area: Rect, app: &App, eval: &EvalResults) {
    let [plot, facts] = Layout::vertical([Constraint::Min(8), Constraint::Length(3)]).areas(area);
    let groups: Vec<BarGroup> = column_titles()
        .iter()
        .enumerate()
        .map(|(i, title)| {
            let bars: Vec<Bar> = eval
                .systems
                .iter()
                .enumerate()
                .filter_map(|(k, system)| {
                    let c = system.summary.get(i)?;
                    Some(
                        Bar::default()
                            .value(c.mean.round().clamp(0.0, 100.0) as u64)
                            .label(Line::raw(system.label.clone()))
                            .text_value(format!("{:.1} [{:.1}, {:.1}]", c.mean, c.low, c.high))
                            .style(Style::default().fg(COLOURS[k % COLOURS.len()])),
                    )
                })
                .collect();
            BarGroup::default()
                .label(Line::styled(
                    *title,
                    Style::default().add_modifier(Modifier::BOLD),
                ))
                .bars(&bars)
        })
        .collect();
    let mut barchart = BarChart::default()
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!("{} · score 0–100 · [95% interval]", eval.name)),
        )
        .direction(Direction::Horizontal)
        .bar_width(1)
        .bar_gap(0)
        .group_gap(1)
        .max(100)
        .value_style(Style::default().fg(Color::Black).bg(Color::Gray));
    for group in groups {
        barchart = barchart.data(group);
    }
    frame.render_widget(barchart, plot);
    let judge = eval
        .judge
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    frame.render_widget(
        Paragraph::new(vec![
            Line::raw(format!(
                "{} scene(s) × {} seed(s) · up to {} turns · judge {judge}",
                eval.scenes.len(),
                eval.settings.seeds.len(),
                eval.settings.rounds
            )),
            Line::styled(
                "scores from different judges are not comparable · chart.svg in the evaluation folder",
                app.theme.dim(),
            ),
        ]),
        facts,
    );
}
