//! Banned phrases: finding one in the text not yet shown, and how much text
//! must be held back so a phrase can be caught before anyone sees it.

/// The phrases of `sampling.banned_phrases`, matched with ASCII letters in
/// either case (byte offsets stay those of the original text).
pub struct PhraseGuard {
    phrases: Vec<Vec<u8>>,
    longest: usize,
}

impl PhraseGuard {
    /// `None` when there is nothing to ban.
    pub fn new(phrases: &[String]) -> Option<Self> {
        let phrases: Vec<Vec<u8>> = phrases
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| p.as_bytes().to_vec())
            .collect();
        let longest = phrases.iter().map(Vec::len).max()?;
        Some(Self { phrases, longest })
    }

    /// Byte offset where the earliest complete phrase in `text` begins.
    pub fn find(&self, text: &[u8]) -> Option<usize> {
        self.phrases
            .iter()
            .filter_map(|p| {
                text.windows(p.len())
                    .position(|w| w.eq_ignore_ascii_case(p))
            })
            .min()
    }

    /// A held token may be shown once this many bytes follow it: no phrase
    /// that includes it can still be completed.
    pub fn hold_bytes(&self) -> usize {
        self.longest.saturating_sub(1)
    }
}

/// Index of the piece that holds byte `offset` of the pieces' concatenation.
pub fn piece_at(pieces: &[&[u8]], offset: usize) -> usize {
    let mut end = 0;
    for (i, piece) in pieces.iter().enumerate() {
        end += piece.len();
        if offset < end {
            return i;
        }
    }
    pieces.len().saturating_sub(1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn finds_the_earliest_phrase_in_either_case() {
        let g = PhraseGuard::new(&["shivers".into(), "Spine".into()]).unwrap();
        assert_eq!(g.find(b"a spine, SHIVERS"), Some(2));
        assert_eq!(g.find(b"shiver"), None);
        assert_eq!(g.hold_bytes(), 6);
        assert!(PhraseGuard::new(&[]).is_none());
    }

    #[test]
    fn piece_at_maps_a_byte_to_its_token() {
        let pieces: [&[u8]; 3] = [b"ab", b"c", b"def"];
        assert_eq!(piece_at(&pieces, 0), 0);
        assert_eq!(piece_at(&pieces, 2), 1);
        assert_eq!(piece_at(&pieces, 3), 2);
        assert_eq!(piece_at(&pieces, 5), 2);
    }
}
