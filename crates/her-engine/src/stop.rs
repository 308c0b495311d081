//! Stop strings over a token stream.
//!
//! A stop string may begin in one token and end in another, so text that could
//! still turn out to be the start of a stop string is held back until it is
//! either completed (generation stops and the stop text is never emitted) or
//! ruled out (it is released).

/// Outcome of feeding text to a [`StopMatcher`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StopScan {
    /// Text that can safely be shown.
    pub emit: String,
    /// The stop string that ended generation, if one completed.
    pub stopped_on: Option<String>,
}

/// Watches generated text for any of a set of stop strings.
#[derive(Debug, Clone)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    /// Empty stop strings are ignored: they would stop before the first character.
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
        }
    }

    /// Feeds newly decoded text.
    pub fn push(&mut self, text: &str) -> StopScan {
        self.held.push_str(text);
        // The earliest complete stop string wins, so output never contains one.
        let earliest = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()).map(|at| (at, s)))
            .min_by_key(|(at, _)| *at);
        if let Some((at, stop)) = earliest {
            let stop = stop.clone();
            let emit = self.held[..at].to_string();
            self.held.clear();
            return StopScan {
                emit,
                stopped_on: Some(stop),
            };
        }
        let keep = self.partial_suffix_len();
        let cut = self.held.len() - keep;
        let emit = self.held[..cut].to_string();
        self.held.drain(..cut);
        StopScan {
            emit,
            stopped_on: None,
        }
    }

    /// Ends the stream: text held back for a stop string that never completed.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Length of the longest suffix of `held` that is a proper prefix of a stop string.
    fn partial_suffix_len(&self) -> usize {
        let mut best = 0;
        for stop in &self.stops {
            // Try suffixes from longest to shortest, at char boundaries of both strings.
            let max = stop.len().saturating_sub(1).min(self.held.len());
            for len in (1..=max).rev() {
                let start = self.held.len() - len;
                if self.held.is_char_boundary(start)
                    && stop.is_char_boundary(len)
                    && stop.as_bytes()[..len] == self.held.as_bytes()[start..]
                {
                    best = best.max(len);
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stops(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn run(list: &[&str], chunks: &[&str]) -> (String, Option<String>) {
        let mut m = StopMatcher::new(&stops(list));
        let mut out = String::new();
        for c in chunks {
            let scan = m.push(c);
            out.push_str(&scan.emit);
            if scan.stopped_on.is_some() {
                return (out, scan.stopped_on);
            }
        }
        out.push_str(&m.finish());
        (out, None)
    }

    #[test]
    fn stop_split_across_pieces_is_never_emitted() {
        let (out, stop) = run(&["<|im_end|>"], &["Hello", " there<|im", "_e", "nd|>junk"]);
        assert_eq!(out, "Hello there");
        assert_eq!(stop.as_deref(), Some("<|im_end|>"));
    }

    #[test]
    fn false_start_is_released() {
        let (out, stop) = run(&["<|im_end|>"], &["a <|im", "agine"]);
        assert_eq!(out, "a <|imagine");
        assert_eq!(stop, None);
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        let (out, stop) = run(&["END", "<|im_start|>"], &["x<|im_start|>yEND"]);
        assert_eq!(out, "x");
        assert_eq!(stop.as_deref(), Some("<|im_start|>"));
    }

    #[test]
    fn held_text_is_flushed_at_the_end() {
        let (out, stop) = run(&["<|im_end|>"], &["tail <|im_e"]);
        assert_eq!(out, "tail <|im_e");
        assert_eq!(stop, None);
    }

    proptest! {
        /// Whatever the chunking, the output is the text before the first stop string.
        #[test]
        fn chunking_does_not_matter(text in "[ab<|>é]{0,40}", cuts in proptest::collection::vec(0usize..40, 0..6)) {
            let stop_list = ["<|b", "aa"];
            let whole = run(&stop_list, &[text.as_str()]);
            let mut bounds: Vec<usize> = cuts.into_iter()
                .map(|c| c.min(text.len()))
                .filter(|c| text.is_char_boundary(*c))
                .collect();
            bounds.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for b in bounds { chunks.push(&text[start..b]); start = b; }
            chunks.push(&text[start..]);
            prop_assert_eq!(run(&stop_list, &chunks), whole.clone());
            let first = stop_list.iter().filter_map(|s| text.find(s)).min();
            match first {
                Some(at) => prop_assert_eq!(whole.0, text[..at].to_string()),
                None => prop_assert_eq!(whole.0, text.clone()),
            }
        }
    }
}
