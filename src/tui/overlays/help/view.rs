//! The help overlay: every key of the keymap by layer, and the commands.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use crate::tui::app::App;
use crate::tui::keymap::Layer;

pub fn draw(frame: &mut Frame, rect: Rect, app: &App, scroll: &u16) {
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
        "commands: /help /prompt /clear /fork /history /rename TITLE /character /model [PATH] /adapter PATH [scale] /adapter off /sampling [key=value] /preset [NAME] /arena [seeds|temp T|base|adapter PATH] /runs /evals /export txt|md|st",
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
