//! Syntax highlighting for the raw view: HER tags and ChatML markers, with
//! syntect and a small grammar of our own.

use std::sync::OnceLock;

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use syntect::easy::HighlightLines;
use syntect::highlighting::{FontStyle, ThemeSet};
use syntect::parsing::{SyntaxDefinition, SyntaxSet};

const HER_SYNTAX: &str = r#"%YAML 1.2
---
name: HER reply
scope: text.her
contexts:
  main:
    - match: '<\|im_(start|end)\|>'
      scope: keyword.control.chatml
    - match: '<(system_thinking|system_think|think|thought)>'
      scope: comment.block.plan
      push: plan
    - match: '</?(role_thinking|long_role_thinking)>'
      scope: entity.name.tag.thought
    - match: '</?(role_action|role_speech)>'
      scope: entity.name.tag.action
    - match: '^[A-Z][\w .''-]{0,40}: '
      scope: variable.other.speaker
  plan:
    - meta_scope: comment.block.plan
    - match: '</(system_thinking|system_think|think|thought)>'
      pop: true
"#;

struct Highlighter {
    syntaxes: SyntaxSet,
    themes: ThemeSet,
}

fn highlighter() -> Option<&'static Highlighter> {
    static CELL: OnceLock<Option<Highlighter>> = OnceLock::new();
    CELL.get_or_init(|| {
        let definition = SyntaxDefinition::load_from_str(HER_SYNTAX, true, None).ok()?;
        let mut builder = SyntaxSet::new().into_builder();
        builder.add(definition);
        Some(Highlighter {
            syntaxes: builder.build(),
            themes: ThemeSet::load_defaults(),
        })
    })
    .as_ref()
}

/// Highlighted lines of a raw reply; plain lines if highlighting is unavailable.
pub fn highlight(text: &str, dark: bool) -> Vec<Line<'static>> {
    let plain = || text.lines().map(|l| Line::raw(l.to_string())).collect();
    let Some(h) = highlighter() else {
        return plain();
    };
    let Some(syntax) = h
        .syntaxes
        .find_syntax_by_scope(syntect::parsing::Scope::new("text.her").unwrap_or_default())
    else {
        return plain();
    };
    let theme_name = if dark {
        "base16-ocean.dark"
    } else {
        "InspiredGitHub"
    };
    let Some(theme) = h.themes.themes.get(theme_name) else {
        return plain();
    };
    let mut lines = HighlightLines::new(syntax, theme);
    let mut out = Vec::new();
    for line in syntect::util::LinesWithEndings::from(text) {
        let Ok(ranges) = lines.highlight_line(line, &h.syntaxes) else {
            return plain();
        };
        out.push(Line::from(
            ranges
                .into_iter()
                .map(|(style, piece)| {
                    let mut s = Style::default().fg(Color::Rgb(
                        style.foreground.r,
                        style.foreground.g,
                        style.foreground.b,
                    ));
                    if style.font_style.contains(FontStyle::ITALIC) {
                        s = s.add_modifier(Modifier::ITALIC);
                    }
                    if style.font_style.contains(FontStyle::BOLD) {
                        s = s.add_modifier(Modifier::BOLD);
                    }
                    Span::styled(piece.trim_end_matches('\n').to_string(), s)
                })
                .collect::<Vec<_>>(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_get_their_own_colours() {
        let lines = highlight(
            "<system_thinking>plan</system_thinking>Lizzy: <role_action>bows</role_action>Hi",
            true,
        );
        assert_eq!(lines.len(), 1);
        let spans = &lines[0].spans;
        assert!(spans.len() >= 4, "{spans:?}");
        let text: String = spans.iter().map(|s| s.content.as_ref()).collect();
        assert_eq!(
            text,
            "<system_thinking>plan</system_thinking>Lizzy: <role_action>bows</role_action>Hi"
        );
        let plan_style = spans[0].style;
        let action_tag = spans
            .iter()
            .find(|s| s.content.contains("role_action"))
            .map(|s| s.style);
        assert_ne!(Some(plan_style), action_tag);
    }
}
