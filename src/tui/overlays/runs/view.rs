//! The training runs overlay: the runs on the left, the selected run's loss
//! curve (training steps and held-out evaluations) on the right.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::Line;
use ratatui::widgets::{Axis, Block, Borders, Chart, Dataset, GraphType, Paragraph};

use crate::tui::app::App;
use her_train::runs::RunSummary;

pub fn draw(frame: &mut Frame, rect: Rect, app: &App, cursor: usize) {
    let [list, detail] =
        Layout::horizontal([Constraint::Percentage(35), Constraint::Percentage(65)]).areas(rect);
    let mut lines: Vec<Line> = Vec::new();
    if app.runs.is_empty() {
        lines.push(Line::styled(
            "No runs yet. Start one with `her train sft --data FILE.jsonl` (or --from-sessions); it shows up here as it trains.",
            app.theme.dim(),
        ));
    }
    for (i, run) in app.runs.iter().enumerate() {
        let mut style = Style::default();
        if i == cursor {
            style = style.bg(app.theme.selection).add_modifier(Modifier::BOLD);
        }
        lines.push(Line::styled(run.name.clone(), style));
        let last = run
            .losses
            .last()
            .map_or("—".into(), |(_, l)| format!("{l:.3}"));
        let figure = match run.rewards.last() {
            Some((_, r)) => format!("reward {r:+.3}"),
            None => format!("loss {last}"),
        };
        lines.push(Line::styled(
            format!(
                "  {} {} · {}/{} steps · {figure}",
                run.kind,
                run.status(),
                run.steps_done(),
                run.total_steps
            ),
            app.theme.dim(),
        ));
        if let Some(step) = run.awaiting_ratings {
            lines.push(Line::styled(
                format!("  ★ step {step} waits for your ratings: press r"),
                Style::default().fg(app.theme.accent),
            ));
        }
    }
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title("training runs (enter loads the adapter · r rates RL replies · esc closes)"),
        ),
        list,
    );
    match app.runs.get(cursor) {
        Some(run) => chart(frame, detail, app, run),
        None => frame.render_widget(Block::default().borders(Borders::ALL), detail),
    }
}

fn chart(frame: &mut Frame, area: Rect, app: &App, run: &RunSummary) {
    let [plot, facts] = Layout::vertical([Constraint::Min(6), Constraint::Length(3)]).areas(area);
    // RL runs chart what they optimise (mean reward) and how far they moved
    // (KL to the reference); the others their training and held-out loss.
    let (first, second, names, y_title) = if run.kind == "rl" {
        (
            &run.rewards,
            &run.kls,
            ["mean reward", "KL to reference"],
            "reward / KL",
        )
    } else {
        (
            &run.losses,
            &run.evals,
            ["train loss", "held-out loss"],
            "loss",
        )
    };
    let points = first.iter().chain(second);
    let max_x = points.clone().map(|(x, _)| *x).fold(1.0, f64::max);
    let (lo, hi) = points.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, y)| {
        (lo.min(*y), hi.max(*y))
    });
    let (lo, hi) = if lo.is_finite() {
        (lo.min(hi), hi)
    } else {
        (0.0, 1.0)
    };
    let pad = ((hi - lo) * 0.1).max(1e-3);
    let datasets = vec![
        Dataset::default()
            .name(names[0])
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(app.theme.accent))
            .data(first),
        Dataset::default()
            .name(names[1])
            .marker(Marker::Dot)
            .graph_type(if run.kind == "rl" {
                GraphType::Line
            } else {
                GraphType::Scatter
            })
            .style(Style::default().fg(app.theme.character))
            .data(second),
    ];
    let label = |v: f64| format!("{v:.2}");
    let chart = Chart::new(datasets)
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(run.name.clone()),
        )
        .x_axis(
            Axis::default()
                .title("step")
                .bounds([0.0, max_x.max(run.total_steps as f64)])
                .labels([
                    "0".to_string(),
                    format!("{}", run.total_steps.max(max_x as u64)),
                ]),
        )
        .y_axis(
            Axis::default()
                .title(y_title)
                .bounds([lo - pad, hi + pad])
                .labels([label(lo - pad), label(hi + pad)]),
        );
    frame.render_widget(chart, plot);
    let adapter = run
        .adapter
        .as_ref()
        .or(run.checkpoint.as_ref())
        .map_or("no adapter yet".into(), |p| p.display().to_string());
    frame.render_widget(
        Paragraph::new(vec![
            Line::raw(format!(
                "{:.0} tok/s · peak {:.0} MiB · {} held-out evaluations",
                run.tokens_per_s,
                run.peak_mib,
                run.evals.len()
            )),
            Line::styled(adapter, app.theme.dim()),
        ]),
        facts,
    );
}
