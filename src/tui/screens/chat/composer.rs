//! The message being typed: multi-line text with a cursor and a history of
//! sent messages. Pure state; the view draws it.

/// Cursor position is a byte offset on a char boundary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Composer {
    pub text: String,
    pub cursor: usize,
    history: Vec<String>,
    /// Position while browsing history; `None` when editing a new message.
    browsing: Option<usize>,
    /// The unsent draft, restored when browsing goes past the newest entry.
    draft: String,
}

impl Composer {
    pub fn insert(&mut self, c: char) {
        self.text.insert(self.cursor, c);
        self.cursor += c.len_utf8();
        self.browsing = None;
    }

    /// Pasted text goes in as it is (bracketed paste keeps newlines literal).
    pub fn insert_str(&mut self, s: &str) {
        let s = s.replace("\r\n", "\n").replace('\r', "\n");
        self.text.insert_str(self.cursor, &s);
        self.cursor += s.len();
        self.browsing = None;
    }

    pub fn backspace(&mut self) {
        if let Some(prev) = self.text[..self.cursor].chars().next_back() {
            self.cursor -= prev.len_utf8();
            self.text.remove(self.cursor);
        }
    }

    pub fn delete_forward(&mut self) {
        if self.cursor < self.text.len() {
            self.text.remove(self.cursor);
        }
    }

    pub fn left(&mut self) {
        if let Some(prev) = self.text[..self.cursor].chars().next_back() {
            self.cursor -= prev.len_utf8();
        }
    }

    pub fn right(&mut self) {
        if let Some(next) = self.text[self.cursor..].chars().next() {
            self.cursor += next.len_utf8();
        }
    }

    fn line_start(&self) -> usize {
        self.text[..self.cursor].rfind('\n').map_or(0, |i| i + 1)
    }

    fn line_end(&self) -> usize {
        self.text[self.cursor..]
            .find('\n')
            .map_or(self.text.len(), |i| self.cursor + i)
    }

    pub fn home(&mut self) {
        self.cursor = self.line_start();
    }

    pub fn end(&mut self) {
        self.cursor = self.line_end();
    }

    /// Moves up a line keeping the column; false on the first line.
    pub fn up(&mut self) -> bool {
        let start = self.line_start();
        if start == 0 {
            return false;
        }
        let column = self.text[start..self.cursor].chars().count();
        let prev_start = self.text[..start - 1].rfind('\n').map_or(0, |i| i + 1);
        self.cursor = advance(&self.text, prev_start, column, start - 1);
        true
    }

    /// Moves down a line keeping the column; false on the last line.
    pub fn down(&mut self) -> bool {
        let end = self.line_end();
        if end == self.text.len() {
            return false;
        }
        let column = self.text[self.line_start()..self.cursor].chars().count();
        let next_start = end + 1;
        let next_end = self.text[next_start..]
            .find('\n')
            .map_or(self.text.len(), |i| next_start + i);
        self.cursor = advance(&self.text, next_start, column, next_end);
        true
    }

    pub fn is_multiline(&self) -> bool {
        self.text.contains('\n')
    }

    /// Takes the message for sending and remembers it.
    pub fn take(&mut self) -> String {
        let text = std::mem::take(&mut self.text);
        self.cursor = 0;
        self.browsing = None;
        if !text.trim().is_empty() && self.history.last() != Some(&text) {
            self.history.push(text.clone());
        }
        text
    }

    pub fn set(&mut self, text: &str) {
        self.text = text.to_string();
        self.cursor = self.text.len();
    }

    pub fn history_prev(&mut self) {
        let index = match self.browsing {
            None if self.history.is_empty() => return,
            None => {
                self.draft = self.text.clone();
                self.history.len() - 1
            }
            Some(0) => 0,
            Some(i) => i - 1,
        };
        self.browsing = Some(index);
        let entry = self.history[index].clone();
        self.set(&entry);
    }

    pub fn history_next(&mut self) {
        match self.browsing {
            None => {}
            Some(i) if i + 1 < self.history.len() => {
                self.browsing = Some(i + 1);
                let entry = self.history[i + 1].clone();
                self.set(&entry);
            }
            Some(_) => {
                self.browsing = None;
                let draft = std::mem::take(&mut self.draft);
                self.set(&draft);
            }
        }
    }

    /// (line, column in chars) of the cursor, for the view.
    pub fn cursor_line_col(&self) -> (usize, usize) {
        let before = &self.text[..self.cursor];
        let line = before.matches('\n').count();
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count());
        (line, col)
    }
}

/// The byte offset `column` chars after `start`, not past `limit`.
fn advance(text: &str, start: usize, column: usize, limit: usize) -> usize {
    text[start..limit]
        .char_indices()
        .nth(column)
        .map_or(limit, |(i, _)| start + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editing_and_cursor_movement() {
        let mut c = Composer::default();
        for ch in "héllo".chars() {
            c.insert(ch);
        }
        c.insert_str("\r\nwörld");
        assert_eq!(c.text, "héllo\nwörld");
        assert_eq!(c.cursor_line_col(), (1, 5));
        assert!(c.up());
        assert_eq!(c.cursor_line_col(), (0, 5));
        c.home();
        c.right();
        c.right();
        assert!(c.down());
        assert_eq!(c.cursor_line_col(), (1, 2));
        c.backspace();
        assert_eq!(c.text, "héllo\nwrld");
        assert!(!c.down());
    }

    #[test]
    fn history_browsing_keeps_the_draft() {
        let mut c = Composer::default();
        c.set("first");
        c.take();
        c.set("second");
        c.take();
        c.set("draft");
        c.history_prev();
        assert_eq!(c.text, "second");
        c.history_prev();
        assert_eq!(c.text, "first");
        c.history_next();
        c.history_next();
        assert_eq!(c.text, "draft");
    }
}
