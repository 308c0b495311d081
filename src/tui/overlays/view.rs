//! Overlays drawn over the screen: each overlay's view is in its folder;
//! this places it.

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::widgets::Clear;

use crate::tui::app::{App, Overlay};
use crate::tui::overlays;

pub(crate) fn centered(area: Rect, percent_x: u16, percent_y: u16) -> Rect {
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
        Overlay::Help { scroll } => overlays::help::view::draw(frame, rect, app, scroll),
        Overlay::Raw { scroll } => overlays::raw::view::draw(frame, rect, app, scroll),
        Overlay::Prompt {
            title,
            text,
            scroll,
        } => overlays::prompt::view::draw(frame, rect, title, text, scroll),
        Overlay::Tree { cursor } => overlays::tree::view::draw(frame, rect, app, cursor),
        Overlay::Tokens(view) => overlays::tokens::view::draw(frame, rect, app, view),
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
        } => overlays::locked::view::draw(frame, area, app, path, holder, cursor),
        Overlay::Confirm { question, .. } => {
            overlays::confirm::view::draw(frame, area, app, question)
        }
    }
}
