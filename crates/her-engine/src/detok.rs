//! UTF-8-safe streaming detokenization.
//!
//! llama.cpp hands out token pieces as raw bytes, and a multi-byte character is
//! often split across two or more tokens. This decoder carries an incomplete
//! tail to the next piece so that every emitted `String` is valid UTF-8, and
//! replaces bytes that can never become valid with U+FFFD (as a lossy decode of
//! the whole output would).

/// Incremental UTF-8 decoder for byte pieces.
#[derive(Debug, Default, Clone)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one piece and returns the text that is complete so far.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(text) => {
                    out.push_str(text);
                    self.pending.clear();
                    return out;
                }
                Err(err) => {
                    let valid = err.valid_up_to();
                    // The prefix is valid by construction, so this never fails.
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match err.error_len() {
                        // An invalid sequence: replace it and keep going.
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                        // An incomplete character at the end: wait for more bytes.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream: an incomplete trailing character becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        if self.pending.is_empty() {
            return String::new();
        }
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }

    /// Bytes held back because they end inside a character.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_chunks(chunks: &[&[u8]]) -> String {
        let mut d = Utf8Stream::new();
        let mut out = String::new();
        for c in chunks {
            out.push_str(&d.push(c));
        }
        out.push_str(&d.finish());
        out
    }

    #[test]
    fn emoji_split_over_three_pieces() {
        let bytes = "a😀b".as_bytes();
        let mut d = Utf8Stream::new();
        assert_eq!(d.push(&bytes[..2]), "a");
        assert_eq!(d.pending_len(), 1);
        assert_eq!(d.push(&bytes[2..4]), "");
        assert_eq!(d.push(&bytes[4..]), "😀b");
        assert_eq!(d.finish(), "");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        assert_eq!(decode_chunks(&[b"a\xffb"]), "a\u{fffd}b");
        // A truncated character at the very end is flushed as one replacement.
        assert_eq!(decode_chunks(&[b"ok\xe2\x82"]), "ok\u{fffd}");
    }

    proptest! {
        /// Any chunking of any bytes decodes exactly like a one-shot lossy decode.
        #[test]
        fn chunked_equals_lossy(bytes in proptest::collection::vec(any::<u8>(), 0..64),
                                cuts in proptest::collection::vec(0usize..64, 0..8)) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for c in cuts {
                chunks.push(&bytes[start..c]);
                start = c;
            }
            chunks.push(&bytes[start..]);
            prop_assert_eq!(decode_chunks(&chunks), String::from_utf8_lossy(&bytes).into_owned());
        }
    }
}
