//! Server-sent events: bytes in arbitrary chunks in, whole events out.
//!
//! Only what completion streams use: `data:` lines (several are joined with
//! a newline), `event:` names, `:` comments, and llama-server's non-standard
//! `error:` line, which is reported as an event named `error`.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `message` unless an `event:` line named it.
    pub event: String,
    pub data: String,
}

#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes after the last newline: a line split across chunks.
    partial: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk and returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.partial.extend_from_slice(chunk);
        let mut out = Vec::new();
        // Newlines are ASCII, so splitting bytes there never cuts a character.
        while let Some(at) = memchr::memchr(b'\n', &self.partial) {
            let mut line: Vec<u8> = self.partial.drain(..=at).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            self.line(&String::from_utf8_lossy(&line), &mut out);
        }
        out
    }

    /// The stream ended: an event not yet closed by a blank line is still delivered.
    pub fn finish(&mut self) -> Option<SseEvent> {
        let mut out = Vec::new();
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.line(&String::from_utf8_lossy(&rest), &mut out);
        }
        self.line("", &mut out);
        out.pop()
    }

    fn line(&mut self, line: &str, out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                out.push(SseEvent {
                    event: self.event.take().unwrap_or_else(|| "message".into()),
                    data,
                });
            }
            self.event = None;
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "event" => self.event = Some(value.to_owned()),
            "error" => {
                self.event = Some("error".into());
                self.data = Some(value.to_owned());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out: Vec<SseEvent> = chunks.iter().flat_map(|c| p.push(c)).collect();
        out.extend(p.finish());
        out
    }

    fn data(d: &str) -> SseEvent {
        SseEvent {
            event: "message".into(),
            data: d.into(),
        }
    }

    #[test]
    fn events_split_anywhere_and_crlf() {
        let got = all(&[
            b"data: {\"a\"",
            b":1}\r\n\r\n: ping\n\nda",
            b"ta: [DONE]\n\n",
        ]);
        assert_eq!(got, vec![data("{\"a\":1}"), data("[DONE]")]);
    }

    #[test]
    fn multi_line_data_named_events_and_llama_errors() {
        let got = all(&[b"event: x\ndata: a\ndata: b\n\nerror: {\"code\":500}\n\n"]);
        assert_eq!(
            got,
            vec![
                SseEvent {
                    event: "x".into(),
                    data: "a\nb".into()
                },
                SseEvent {
                    event: "error".into(),
                    data: "{\"code\":500}".into()
                }
            ]
        );
    }

    #[test]
    fn an_unterminated_last_event_is_delivered_at_the_end() {
        assert_eq!(all(&[b"data: tail"]), vec![data("tail")]);
        assert_eq!(all(&[b""]), vec![]);
    }

    proptest! {
        /// Chunking never changes the events.
        #[test]
        fn chunking_does_not_matter(cuts in proptest::collection::vec(0usize..60, 0..8)) {
            let text = "data: é1\n\n: c\ndata: x\r\ndata: y\n\nevent: e\ndata: 😀\n\n".as_bytes();
            let whole = all(&[text]);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(text.len())).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for c in cuts { chunks.push(&text[start..c]); start = c; }
            chunks.push(&text[start..]);
            prop_assert_eq!(all(&chunks), whole);
        }
    }
}
