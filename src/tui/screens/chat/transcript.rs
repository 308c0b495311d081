//! The transcript: speech, actions and thoughts in their own styles, drawn
//! from the bottom up so a frame costs only the messages that are visible.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use crate::tui::model::{PaneMode, PaneModes, ShownMessage, Speaker};
use crate::tui::theme::Theme;
use crate::tui::view::wrap::wrap;
use her_core::format::{Layer, SegmentKind};

pub struct Transcript<'a> {
    /// Saved messages, oldest first.
    pub messages: &'a [ShownMessage],
    /// The reply being generated, after them.
    pub tail: Option<&'a ShownMessage>,
    /// The selected message (transcript focus), drawn highlighted.
    pub selected: Option<usize>,
    /// Lines scrolled up from the bottom (or from the selected message).
    pub scroll: usize,
    pub modes: PaneModes,
    pub theme: &'a Theme,
}

/// The lines of one message at a width: a header, then the body.
pub fn message_lines(
    msg: &ShownMessage,
    width: usize,
    modes: PaneModes,
    theme: &Theme,
) -> Vec<Line<'static>> {
    let name_style = match msg.speaker {
        Speaker::User => Style::default().fg(theme.user),
        Speaker::Character => Style::default().fg(theme.character),
        Speaker::Narrator => Style::default().fg(theme.narrator),
    }
    .add_modifier(Modifier::BOLD);
    let mut header = vec![Span::styled(msg.name.clone(), name_style)];
    if msg.alternative.1 > 1 {
        header.push(Span::styled(
            format!("  ‹{}/{}›", msg.alternative.0 + 1, msg.alternative.1),
            theme.dim(),
        ));
    }
    if let Some(rating) = &msg.rating {
        header.push(Span::styled(
            format!("  {rating}"),
            Style::default().fg(theme.accent),
        ));
    }
    if msg.streaming {
        header.push(Span::styled("  …", theme.dim()));
    }
    if msg.incomplete {
        header.push(Span::styled(
            "  (incomplete)",
            Style::default().fg(theme.error),
        ));
    }
    let mut runs: Vec<(String, Style)> = Vec::new();
    for seg in &msg.segments {
        match seg.kind {
            SegmentKind::Text {
                layer: Layer::Speech,
            } => runs.push((seg.text.clone(), theme.speech())),
            SegmentKind::Text {
                layer: Layer::RoleAction,
            } => {
                runs.push((format!("({})", seg.text.trim()), theme.action()));
            }
            SegmentKind::Text {
                layer: Layer::RoleThinking,
            } if modes.thoughts == PaneMode::Inline => {
                runs.push((format!("[{}]", seg.text.trim()), theme.thought()));
            }
            SegmentKind::Text {
                layer: Layer::SystemThinking,
            } if modes.plan == PaneMode::Inline => {
                runs.push((format!("plan: {}\n", seg.text.trim()), theme.plan()));
            }
            // Tags, the speaker prefix (the header names the speaker) and hidden layers.
            _ => {}
        }
    }
    // Actions and thoughts sit next to speech with a space between.
    let mut spaced: Vec<(String, Style)> = Vec::with_capacity(runs.len());
    for (text, style) in runs {
        if let Some((prev, _)) = spaced.last()
            && !prev.ends_with([' ', '\n'])
            && !text.starts_with([' ', '\n'])
        {
            spaced.push((" ".into(), theme.speech()));
        }
        spaced.push((text, style));
    }
    let trimmed: Vec<(String, Style)> = trim_runs(spaced);
    let mut lines = vec![Line::from(header)];
    if trimmed.is_empty() {
        let placeholder = if msg.streaming {
            "thinking…"
        } else {
            "(nothing visible)"
        };
        lines.push(Line::from(Span::styled(
            format!("  {placeholder}"),
            theme.dim(),
        )));
    } else {
        lines.extend(wrap(&trimmed, width, 2));
    }
    lines.push(Line::default());
    lines
}

/// Drops leading and trailing whitespace of the whole body.
fn trim_runs(mut runs: Vec<(String, Style)>) -> Vec<(String, Style)> {
    while runs.first().is_some_and(|(t, _)| t.trim().is_empty()) {
        runs.remove(0);
    }
    while runs.last().is_some_and(|(t, _)| t.trim().is_empty()) {
        runs.pop();
    }
    if let Some((t, _)) = runs.first_mut() {
        *t = t.trim_start().to_string();
    }
    if let Some((t, _)) = runs.last_mut() {
        *t = t.trim_end().to_string();
    }
    runs
}

impl Widget for Transcript<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if area.height == 0 || area.width == 0 {
            return;
        }
        let width = area.width as usize;
        let height = area.height as usize;
        let total = self.messages.len() + usize::from(self.tail.is_some());
        if total == 0 {
            return;
        }
        let message = |i: usize| self.messages.get(i).or(self.tail);
        // Anchor: the selected message's last line, or the newest message.
        let last = self.selected.unwrap_or(total - 1).min(total - 1);
        // Collect lines bottom-up until the screen (plus the scroll) is full:
        // a frame costs the visible messages, not the whole history.
        let need = height + self.scroll;
        let mut blocks: Vec<(usize, Vec<Line<'static>>)> = Vec::new();
        let mut count = 0;
        for i in (0..=last).rev() {
            let Some(msg) = message(i) else { continue };
            let lines = message_lines(msg, width, self.modes, self.theme);
            count += lines.len();
            blocks.push((i, lines));
            if count >= need {
                break;
            }
        }
        let mut all: Vec<(usize, Line<'static>)> = Vec::with_capacity(count);
        for (i, lines) in blocks.into_iter().rev() {
            all.extend(lines.into_iter().map(|l| (i, l)));
        }
        let end = all
            .len()
            .saturating_sub(self.scroll.min(all.len().saturating_sub(1)));
        let start = end.saturating_sub(height);
        for (row, (i, line)) in all[start..end].iter().enumerate() {
            let y = area.y + row as u16;
            if Some(*i) == self.selected {
                buf.set_style(
                    Rect::new(area.x, y, area.width, 1),
                    Style::default().bg(self.theme.selection),
                );
            }
            buf.set_line(area.x, y, line, area.width);
        }
    }
}
