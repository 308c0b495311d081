//! Overlays drawn over the screen: help, raw reply, prompt, branch tree, confirm.

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use crate::tui::app::{App, LOCKED_CHOICES, Overlay};
use crate::tui::highlight::highlight;
use crate::tui::keymap::Layer;
use crate::tui::view::wrap::sanitize;

fn centered(area: Rect, percent_x: u16, percent_y: u16) -> Rect {
    let [v] = Layout::vertical([Constraint::Percentage(percent_y)])
        .flex(Flex::Center)
        .areas(area);
    let [h] = Layout::horizontal([Constraint::Percentage(percent_x)])
        .flex(Flex::Center)
        .areas(v);
    h
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, overlay: &Overlay) {
    let rect = centered(area, 90, 85);
    frame.render_widget(Clear, rect);
    match overlay {
        Overlay::Help { scroll } => {
            let mut lines = Vec::new();
            let mut last_layer = None;
            for (layer, chord, action) in app.keymap.entries() {
                if last_layer != Some(layer) {
                    lines.push(Line::styled(
                        match layer {
                            Layer::Input => "typing a message",
                            Layer::Transcript => "in the transcript (esc from typing)",
                            Layer::List => "lists, pickers, tree",
                            Layer::Overlay => "overlays",
                            Layer::Dialog => "dialogs (rating, arena)",
                            Layer::Annotate => "her annotate",
                        },
                        Style::default()
                            .add_modifier(Modifier::BOLD)
                            .fg(app.theme.accent),
                    ));
                    last_layer = Some(layer);
                }
                let desc = action.description();
                let desc = if desc.is_empty() {
                    format!("{action:?}")
                } else {
                    desc.to_string()
                };
                lines.push(Line::from(vec![
                    Span::styled(
                        format!("  {chord:<14}"),
                        Style::default().add_modifier(Modifier::BOLD),
                    ),
                    Span::raw(desc),
                ]));
            }
            lines.push(Line::default());
            lines.push(Line::styled(
                "commands: /help /prompt /clear /fork /history /rename TITLE /character /model [PATH] /adapter PATH [scale] /adapter off /sampling key=value /arena [seeds|temp T|base|adapter PATH] /runs /evals /export txt|md|st",
                app.theme.dim(),
            ));
            frame.render_widget(
                Paragraph::new(lines).scroll((*scroll, 0)).block(
                    Block::default()
                        .borders(Borders::ALL)
                        .title("keys (remap them in config.toml [keys])"),
                ),
                rect,
            );
        }
        Overlay::Raw { scroll } => {
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
        Overlay::Prompt {
            title,
            text,
            scroll,
        } => {
            frame.render_widget(
                Paragraph::new(text.clone())
                    .wrap(Wrap { trim: false })
                    .scroll((*scroll, 0))
                    .block(Block::default().borders(Borders::ALL).title(title.as_str())),
                rect,
            );
        }
        Overlay::Tree { cursor } => {
            let rows = &app.tree_rows;
            let height = rect.height.saturating_sub(2) as usize;
            let start = cursor.saturating_sub(height.saturating_sub(1));
            let lines: Vec<Line> = rows
                .iter()
                .enumerate()
                .skip(start)
                .take(height)
                .map(|(i, row)| {
                    let marker = if row.on_active_path { "●" } else { "○" };
                    let mut style = if row.on_active_path {
                        Style::default()
                    } else {
                        app.theme.dim()
                    };
                    if i == *cursor {
                        style = style.bg(app.theme.selection).add_modifier(Modifier::BOLD);
                    }
                    let alts = if row.alternatives > 1 {
                        format!("  [{} alternatives]", row.alternatives)
                    } else {
                        String::new()
                    };
                    Line::styled(
                        format!("{}{marker} {}{alts}", "  ".repeat(row.depth), row.label),
                        style,
                    )
                })
                .collect();
            frame.render_widget(
                Paragraph::new(lines).block(
                    Block::default()
                        .borders(Borders::ALL)
                        .title("branches (enter jumps to the branch · esc closes)"),
                ),
                rect,
            );
        }
        Overlay::Rate(form) => crate::tui::overlays::rate::view::rate_form(frame, rect, app, form),
        Overlay::Arena => {
            if let Some(round) = &app.arena {
                crate::tui::overlays::arena::view::arena(frame, rect, app, round);
            }
        }
        Overlay::Runs { cursor } => {
            crate::tui::overlays::runs::view::draw(frame, rect, app, *cursor)
        }
        Overlay::RlRate(form) => crate::tui::overlays::rl_rate::view::draw(frame, rect, app, form),
        Overlay::Evals { cursor } => {
            crate::tui::overlays::evals::view::draw(frame, rect, app, *cursor)
        }
        Overlay::Locked {
            path,
            holder,
            cursor,
        } => {
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
        Overlay::Confirm { question, .. } => {
            let small = centered(area, 60, 20);
            frame.render_widget(Clear, small);
            frame.render_widget(
                Paragraph::new(vec![
                    Line::raw(question.clone()),
                    Line::default(),
                    Line::styled("y: yes   n: no", app.theme.dim()),
                ])
                .wrap(Wrap { trim: false })
                .block(Block::default().borders(Borders::ALL).title("confirm")),
                small,
            );
        }
    }
}
