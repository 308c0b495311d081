//! The blind arena round: two candidates side by side, then who was who.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use crate::tui::app::App;
use crate::tui::model::{PaneMode, PaneModes, ShownMessage, Speaker};
use crate::tui::overlays::arena::state::{ArenaRound, Phase};
use crate::tui::screens::chat::transcript::message_lines;
use her_core::prefs::Verdict;

pub fn arena(frame: &mut Frame, rect: Rect, app: &App, round: &ArenaRound) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title("arena: which reply is better?");
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    if let Phase::Writing(i) = round.phase {
        let text = format!(
            "writing candidate {} of 2 … {} characters\n\nThe texts stay hidden until both are written, so their order does not give them away.\n\nesc cancels the round.",
            i + 1,
            round.writing.chars().count()
        );
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }), inner);
        return;
    }
    let [body, footer] = Layout::vertical([Constraint::Min(3), Constraint::Length(2)]).areas(inner);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(body);
    // Plans show inline (unless hidden) so both candidates are read whole.
    let modes = PaneModes {
        plan: match app.modes.plan {
            PaneMode::Hidden => PaneMode::Hidden,
            _ => PaneMode::Inline,
        },
        thoughts: match app.modes.thoughts {
            PaneMode::Hidden => PaneMode::Hidden,
            _ => PaneMode::Inline,
        },
    };
    let revealed = match round.phase {
        Phase::Revealed(v) => Some(v),
        _ => None,
    };
    for (side, (area, index)) in [left, right].into_iter().zip(round.shown()).enumerate() {
        let Some(output) = round.outputs.get(index) else {
            continue;
        };
        let name = if side == 0 { "A" } else { "B" };
        let message = ShownMessage::new(
            String::new(),
            round.speaker.clone(),
            Speaker::Character,
            output.raw.clone(),
            (0, 1),
        );
        let width = area.width.saturating_sub(2) as usize;
        let mut lines = message_lines(&message, width, modes, &app.theme);
        let mut title = format!(
            "{name}  ({}  to pick)",
            if side == 0 { "a / ←" } else { "b / →" }
        );
        if let Some(verdict) = revealed {
            let won = matches!((verdict, index), (Verdict::Cand1, 0) | (Verdict::Cand2, 1));
            title = format!(
                "{name}: {}{}",
                round.contenders[index].label,
                if won { "  ✓ chosen" } else { "" }
            );
            lines.insert(0, Line::default());
        }
        frame.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(Block::default().borders(Borders::ALL).title(title)),
            area,
        );
    }
    let help = match revealed {
        None => "a: A is better · b: B is better · t: tie · x: both bad · esc: discard".to_string(),
        Some(v) => {
            let left_won = round.kept(v) == Some(round.shown_first);
            format!(
                "{} — saved to the session; enter or esc closes",
                match v {
                    Verdict::Tie => "tie (A kept)",
                    Verdict::BothBad => "both bad (neither kept)",
                    _ if left_won => "A chosen and kept",
                    _ => "B chosen and kept",
                }
            )
        }
    };
    frame.render_widget(Paragraph::new(help).style(app.theme.dim()), footer);
}
