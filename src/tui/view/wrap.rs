//! Word wrapping of styled text into terminal lines.

use ratatui::style::Style;
use ratatui::text::{Line, Span};
use unicode_width::UnicodeWidthStr;

/// Model output is untrusted: control characters (an ESC could start a
/// terminal escape sequence) are shown as visible symbols instead.
pub fn sanitize(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\n') {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(
        text.chars()
            .map(|c| match c {
                '\n' => '\n',
                '\t' => ' ',
                c if (c as u32) < 0x20 => char::from_u32(0x2400 + c as u32).unwrap_or('\u{fffd}'),
                c if c.is_control() => '\u{fffd}',
                c => c,
            })
            .collect(),
    )
}

/// Wraps styled runs to `width` columns. Newlines break lines; words longer
/// than the width are split; spaces at a break are dropped.
pub fn wrap(runs: &[(String, Style)], width: usize, indent: usize) -> Vec<Line<'static>> {
    let width = width.max(indent + 8);
    let mut lines: Vec<Line<'static>> = Vec::new();
    let mut current: Vec<Span<'static>> = Vec::new();
    let mut used = indent;
    let pad = " ".repeat(indent);
    // A line ends without the spaces where it broke.
    let end_line = |current: &mut Vec<Span<'static>>, lines: &mut Vec<Line<'static>>| {
        while current.len() > usize::from(indent > 0)
            && current.last().is_some_and(|s| s.content.trim().is_empty())
        {
            current.pop();
        }
        lines.push(Line::from(std::mem::take(current)));
    };
    let start_line = |current: &mut Vec<Span<'static>>| {
        if indent > 0 {
            current.push(Span::raw(pad.clone()));
        }
    };
    start_line(&mut current);
    for (text, style) in runs {
        let text = sanitize(text);
        for (i, paragraph) in text.split('\n').enumerate() {
            if i > 0 {
                lines.push(Line::from(std::mem::take(&mut current)));
                start_line(&mut current);
                used = indent;
            }
            for word in split_keep_spaces(paragraph) {
                let w = word.width();
                if used + w > width && used > indent {
                    end_line(&mut current, &mut lines);
                    start_line(&mut current);
                    used = indent;
                    if word.trim().is_empty() {
                        continue;
                    }
                }
                if indent + w > width {
                    // A word wider than the line: split it by characters.
                    let mut piece = String::new();
                    for c in word.chars() {
                        let cw = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
                        if used + cw > width {
                            current.push(Span::styled(std::mem::take(&mut piece), *style));
                            lines.push(Line::from(std::mem::take(&mut current)));
                            start_line(&mut current);
                            used = indent;
                        }
                        piece.push(c);
                        used += cw;
                    }
                    current.push(Span::styled(piece, *style));
                    continue;
                }
                current.push(Span::styled(word.to_string(), *style));
                used += w;
            }
        }
    }
    lines.push(Line::from(current));
    lines
}

/// "a bc  d" → ["a", " ", "bc", "  ", "d"].
fn split_keep_spaces(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_space = None;
    for (i, c) in text.char_indices() {
        let space = c == ' ';
        match in_space {
            Some(s) if s != space => {
                out.push(&text[start..i]);
                start = i;
            }
            _ => {}
        }
        in_space = Some(space);
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(lines: &[Line]) -> Vec<String> {
        lines
            .iter()
            .map(|l| l.spans.iter().map(|s| s.content.as_ref()).collect())
            .collect()
    }

    #[test]
    fn control_characters_are_made_visible() {
        assert_eq!(sanitize("a\u{1b}[2Jb\nc\u{7f}"), "a\u{241b}[2Jb\nc\u{fffd}");
        assert!(matches!(sanitize("plain"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn wraps_at_words_and_newlines() {
        let runs = vec![("the quick brown fox\njumps".to_string(), Style::default())];
        assert_eq!(
            plain(&wrap(&runs, 10, 0)),
            ["the quick", "brown fox", "jumps"]
        );
        assert_eq!(
            plain(&wrap(&runs, 12, 2)),
            ["  the quick", "  brown fox", "  jumps"]
        );
    }

    #[test]
    fn splits_long_words_and_counts_wide_characters() {
        let runs = vec![("abcdefghijkl 漢字漢字".to_string(), Style::default())];
        let lines = plain(&wrap(&runs, 8, 0));
        assert_eq!(lines, ["abcdefgh", "ijkl", "漢字漢字"]);
    }
}
