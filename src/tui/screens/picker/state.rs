//! A filterable list with a preview: characters, scenes, sessions.

/// One choice.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PickerItem {
    pub title: String,
    pub subtitle: String,
    /// Shown beside the list for the highlighted item.
    pub preview: String,
    /// What choosing it means (a file path, a name…).
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Picker {
    pub items: Vec<PickerItem>,
    pub filter: String,
    pub cursor: usize,
}

impl Picker {
    pub fn new(items: Vec<PickerItem>) -> Self {
        Self {
            items,
            filter: String::new(),
            cursor: 0,
        }
    }

    /// Indices of items matching the filter, best first.
    pub fn visible(&self) -> Vec<usize> {
        let mut scored: Vec<(i64, usize)> = self
            .items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                fuzzy_score(&self.filter, &format!("{} {}", item.title, item.subtitle))
                    .map(|s| (s, i))
            })
            .collect();
        scored.sort_by_key(|(s, i)| (std::cmp::Reverse(*s), *i));
        scored.into_iter().map(|(_, i)| i).collect()
    }

    pub fn current(&self) -> Option<&PickerItem> {
        self.visible().get(self.cursor).map(|&i| &self.items[i])
    }

    pub fn up(&mut self) {
        self.cursor = self.cursor.saturating_sub(1);
    }

    pub fn down(&mut self) {
        let n = self.visible().len();
        if self.cursor + 1 < n {
            self.cursor += 1;
        }
    }

    pub fn type_char(&mut self, c: char) {
        self.filter.push(c);
        self.cursor = 0;
    }

    pub fn backspace(&mut self) {
        self.filter.pop();
        self.cursor = 0;
    }
}

/// Subsequence match, case-insensitive: consecutive and word-start matches
/// score higher; `None` when the pattern is not a subsequence.
pub fn fuzzy_score(pattern: &str, text: &str) -> Option<i64> {
    if pattern.is_empty() {
        return Some(0);
    }
    let text: Vec<char> = text.to_lowercase().chars().collect();
    let mut score = 0i64;
    let mut pos = 0usize;
    let mut prev: Option<usize> = None;
    for p in pattern.to_lowercase().chars() {
        let found = (pos..text.len()).find(|&i| text[i] == p)?;
        score += 1;
        if prev.is_some_and(|q| q + 1 == found) {
            score += 5;
        }
        if found == 0 || !text[found - 1].is_alphanumeric() {
            score += 3;
        }
        prev = Some(found);
        pos = found + 1;
    }
    Some(score - (text.len() as i64) / 20)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fuzzy_filter_ranks_word_starts_and_runs() {
        let picker = Picker {
            items: ["Sherlock Holmes", "Elizabeth Bennet", "Jay Gatsby"]
                .iter()
                .map(|t| PickerItem {
                    title: t.to_string(),
                    ..PickerItem::default()
                })
                .collect(),
            filter: "eb".into(),
            cursor: 0,
        };
        let titles: Vec<&str> = picker
            .visible()
            .iter()
            .map(|&i| picker.items[i].title.as_str())
            .collect();
        assert_eq!(titles, ["Elizabeth Bennet"]);
        assert!(
            fuzzy_score("sh", "Sherlock").unwrap()
                > fuzzy_score("sh", "Gatsby Holmes").unwrap_or(-100)
        );
        assert_eq!(fuzzy_score("zz", "Jay"), None);
    }
}
