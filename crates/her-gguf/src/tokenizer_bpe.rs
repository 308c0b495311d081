//! Byte-level BPE vocabulary (GPT-2 style, llama.cpp `tokenizer.ggml.model =
//! "gpt2"`, `pre = "qwen2"`) for the tiny test model.
//!
//! Token id layout of [`tiny_bpe_vocab`]:
//! - `0..256`: the 256 byte tokens in GPT-2 `bytes_to_unicode` order (first the
//!   188 printable bytes '!'..'~', '¡'..'¬', '®'..'ÿ' as themselves, then the
//!   other 68 bytes in increasing order as U+0100, U+0101, ...; so id 0 is "!"
//!   and the space byte is "Ġ"). Use [`byte_token_id`] to look one up.
//! - `256..256 + TARGET_NEW_TOKENS`: tokens created by the BPE merges, in
//!   training order (type NORMAL like the bytes).
//! - then control tokens (type CONTROL): `<|endoftext|>`, `<|im_start|>`, `<|im_end|>`;
//! - then user-defined tokens (type USER_DEFINED): the HER tags in [`HER_TAGS`] order.
//!
//! With the built-in corpus this is 256 + 400 + 3 + 8 = 667 tokens;
//! [`SpecialTokenIds`] carries the resulting ids.

use std::collections::{BTreeMap, HashMap};

use crate::bpe_corpus::CORPUS;

/// llama.cpp token types (`tokenizer.ggml.token_type`).
pub const TOKEN_TYPE_NORMAL: i32 = 1;
pub const TOKEN_TYPE_CONTROL: i32 = 3;
pub const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// Control tokens, in id order.
pub const CONTROL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
/// HER tags (user-defined tokens), in id order.
pub const HER_TAGS: [&str; 8] = [
    "<system_thinking>",
    "</system_thinking>",
    "<role_thinking>",
    "</role_thinking>",
    "<role_action>",
    "</role_action>",
    "<think>",
    "</think>",
];
/// Number of merged tokens the trainer adds on top of the 256 byte tokens.
pub const TARGET_NEW_TOKENS: usize = 400;

/// Ids of the added tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialTokenIds {
    pub endoftext: u32,
    pub im_start: u32,
    pub im_end: u32,
    pub system_thinking_open: u32,
    pub system_thinking_close: u32,
    pub role_thinking_open: u32,
    pub role_thinking_close: u32,
    pub role_action_open: u32,
    pub role_action_close: u32,
    pub think_open: u32,
    pub think_close: u32,
}

/// Everything written to the `tokenizer.ggml.*` keys.
#[derive(Debug, Clone)]
pub struct BpeVocab {
    /// Token strings in byte-level (mapped) form, indexed by id.
    pub tokens: Vec<String>,
    /// llama.cpp token type per id.
    pub token_types: Vec<i32>,
    /// Merges in rank order, each "left right" in mapped form.
    pub merges: Vec<String>,
    pub special: SpecialTokenIds,
}

impl BpeVocab {
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.tokens
            .iter()
            .position(|t| t == token)
            .and_then(|i| u32::try_from(i).ok())
    }
}

/// The printable bytes GPT-2 maps to themselves, in id order.
fn printable_bytes() -> impl Iterator<Item = u8> {
    (b'!'..=b'~').chain(0xA1..=0xAC).chain(0xAE..=0xFF)
}

fn is_printable(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// GPT-2 `bytes_to_unicode`: byte -> the char that stands for it in tokens.
pub fn byte_to_char(b: u8) -> char {
    if is_printable(b) {
        return char::from(b);
    }
    // Non-printable bytes get U+0100 + their rank among the non-printables.
    let rank = (0..b).filter(|&x| !is_printable(x)).count() as u32;
    char::from_u32(0x100 + rank).unwrap_or('\u{FFFD}')
}

/// Id of the byte token for `b` in the layout above.
pub fn byte_token_id(b: u8) -> u32 {
    if is_printable(b) {
        printable_bytes().take_while(|&x| x != b).count() as u32
    } else {
        188 + (0..b).filter(|&x| !is_printable(x)).count() as u32
    }
}

/// Map raw text bytes to their byte-level token form ("Hello world" ->
/// "HelloĠworld").
pub fn to_byte_level(text: &str) -> String {
    text.bytes().map(byte_to_char).collect()
}

/// The 256 byte tokens in id order.
fn byte_tokens() -> Vec<String> {
    let rest = (0..=255u8).filter(|&b| !is_printable(b));
    printable_bytes()
        .chain(rest)
        .map(|b| byte_to_char(b).to_string())
        .collect()
}

fn is_newline(c: char) -> bool {
    c == '\r' || c == '\n'
}

fn is_punct(c: char) -> bool {
    !c.is_whitespace() && !c.is_alphabetic() && !c.is_numeric()
}

/// Split text like llama.cpp's qwen2 pre-tokenizer regex (approximately):
/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
pub fn pretokenize(text: &str) -> Vec<&str> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let cs: Vec<char> = chars.iter().map(|&(_, c)| c).collect();
    let byte_at = |i: usize| chars.get(i).map_or(text.len(), |&(b, _)| b);
    let mut out = Vec::new();
    let mut i = 0;
    while i < cs.len() {
        let len = match_len(&cs, i).max(1);
        out.push(&text[byte_at(i)..byte_at(i + len)]);
        i += len;
    }
    out
}

/// Length in chars of the pre-token starting at `i` (alternatives tried in
/// regex order, first match wins).
fn match_len(c: &[char], i: usize) -> usize {
    let n = c.len();
    let at = |k: usize| c.get(k).copied();
    let Some(first) = at(i) else { return 0 };
    if first == '\'' {
        for suffix in ["s", "t", "re", "ve", "m", "ll", "d"] {
            let ok = suffix
                .chars()
                .enumerate()
                .all(|(k, s)| at(i + 1 + k).is_some_and(|x| x.to_ascii_lowercase() == s));
            if ok {
                return 1 + suffix.len();
            }
        }
    }
    let letters_from = if first.is_alphabetic() {
        Some(i)
    } else if !is_newline(first)
        && !first.is_numeric()
        && at(i + 1).is_some_and(char::is_alphabetic)
    {
        Some(i + 1)
    } else {
        None
    };
    if let Some(mut j) = letters_from {
        while at(j).is_some_and(char::is_alphabetic) {
            j += 1;
        }
        return j - i;
    }
    if first.is_numeric() {
        return 1;
    }
    let p = if first == ' ' && at(i + 1).is_some_and(is_punct) {
        i + 1
    } else {
        i
    };
    if at(p).is_some_and(is_punct) {
        let mut j = p;
        while at(j).is_some_and(is_punct) {
            j += 1;
        }
        while at(j).is_some_and(is_newline) {
            j += 1;
        }
        return j - i;
    }
    let mut e = i;
    while at(e).is_some_and(char::is_whitespace) {
        e += 1;
    }
    if let Some(last_nl) = (i..e).rev().find(|&k| at(k).is_some_and(is_newline)) {
        return last_nl + 1 - i;
    }
    // `\s+(?!\S)` leaves the last space to attach to the next word.
    if e < n && e - i >= 2 {
        return e - 1 - i;
    }
    e - i
}

/// Split `text` around the added-token strings, which never take part in BPE.
fn strip_added_tokens(text: &str) -> Vec<&str> {
    let added: Vec<&str> = CONTROL_TOKENS
        .iter()
        .chain(HER_TAGS.iter())
        .copied()
        .collect();
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        let next = added
            .iter()
            .filter_map(|t| rest.find(t).map(|pos| (pos, t.len())))
            .min();
        match next {
            Some((pos, len)) => {
                out.push(&rest[..pos]);
                rest = &rest[pos + len..];
            }
            None => {
                out.push(rest);
                return out;
            }
        }
    }
}

/// Result of [`train_bpe`]: tokens in id order (bytes first) and merges.
pub struct TrainedBpe {
    pub tokens: Vec<String>,
    pub merges: Vec<String>,
}

/// Learn merges on `corpus` until `new_tokens` tokens were added or no pair
/// occurs twice. Deterministic: ties go to the pair with the smallest ids.
pub fn train_bpe(corpus: &str, new_tokens: usize) -> TrainedBpe {
    let mut tokens = byte_tokens();
    let mut index: HashMap<String, u32> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let mut word_counts: BTreeMap<&str, u64> = BTreeMap::new();
    for segment in strip_added_tokens(corpus) {
        for word in pretokenize(segment) {
            *word_counts.entry(word).or_insert(0) += 1;
        }
    }
    let mut words: Vec<(Vec<u32>, u64)> = word_counts
        .into_iter()
        .map(|(w, n)| (w.bytes().map(byte_token_id).collect(), n))
        .collect();

    let mut merges = Vec::new();
    let mut added = 0;
    while added < new_tokens {
        let mut pairs: HashMap<(u32, u32), u64> = HashMap::new();
        for (w, n) in &words {
            for p in w.windows(2) {
                *pairs.entry((p[0], p[1])).or_insert(0) += n;
            }
        }
        let best = pairs
            .into_iter()
            .max_by(|(pa, ca), (pb, cb)| ca.cmp(cb).then(pb.cmp(pa)));
        let Some(((a, b), count)) = best else { break };
        if count < 2 {
            break;
        }
        let (ta, tb) = (&tokens[a as usize], &tokens[b as usize]);
        merges.push(format!("{ta} {tb}"));
        let merged = format!("{ta}{tb}");
        // Two different merges can spell the same string; reuse its id.
        let id = match index.get(&merged) {
            Some(&id) => id,
            None => {
                let id = tokens.len() as u32;
                index.insert(merged.clone(), id);
                tokens.push(merged);
                added += 1;
                id
            }
        };
        for (w, _) in &mut words {
            apply_merge(w, a, b, id);
        }
    }
    TrainedBpe { tokens, merges }
}

fn apply_merge(word: &mut Vec<u32>, a: u32, b: u32, id: u32) {
    let mut out = Vec::with_capacity(word.len());
    let mut i = 0;
    while i < word.len() {
        if word[i] == a && word.get(i + 1) == Some(&b) {
            out.push(id);
            i += 2;
        } else {
            out.push(word[i]);
            i += 1;
        }
    }
    *word = out;
}

/// The tiny test vocab: bytes, merges learned on the built-in corpus, then
/// the control tokens and HER tags (see the module docs for the id layout).
pub fn tiny_bpe_vocab() -> BpeVocab {
    let TrainedBpe { mut tokens, merges } = train_bpe(CORPUS, TARGET_NEW_TOKENS);
    let mut token_types = vec![TOKEN_TYPE_NORMAL; tokens.len()];
    let base = tokens.len() as u32;
    for t in CONTROL_TOKENS {
        tokens.push(t.to_owned());
        token_types.push(TOKEN_TYPE_CONTROL);
    }
    for t in HER_TAGS {
        tokens.push(t.to_owned());
        token_types.push(TOKEN_TYPE_USER_DEFINED);
    }
    let special = SpecialTokenIds {
        endoftext: base,
        im_start: base + 1,
        im_end: base + 2,
        system_thinking_open: base + 3,
        system_thinking_close: base + 4,
        role_thinking_open: base + 5,
        role_thinking_close: base + 6,
        role_action_open: base + 7,
        role_action_close: base + 8,
        think_open: base + 9,
        think_close: base + 10,
    };
    BpeVocab {
        tokens,
        token_types,
        merges,
        special,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn byte_mapping_matches_gpt2() {
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(0), 'Ā');
        assert_eq!(byte_to_char(b'a'), 'a');
        assert_eq!(byte_to_char(0xAD), '\u{143}');
        assert_eq!(byte_token_id(b'!'), 0);
        assert_eq!(byte_token_id(0), 188);
        assert_eq!(byte_token_id(0xAD), 255);
        let toks = byte_tokens();
        let distinct: HashSet<&String> = toks.iter().collect();
        assert_eq!(distinct.len(), 256);
        for b in 0..=255u8 {
            assert_eq!(toks[byte_token_id(b) as usize], byte_to_char(b).to_string());
        }
        assert_eq!(to_byte_level("Hi there"), "HiĠthere");
    }

    #[test]
    fn pretokenizer_follows_qwen2_regex() {
        assert_eq!(
            pretokenize("Hello, world! I'm 42  ok\n\nyes  "),
            vec![
                "Hello", ",", " world", "!", " I", "'m", " ", "4", "2", " ", " ok", "\n\n", "yes",
                "  "
            ]
        );
        assert_eq!(
            pretokenize("Elizabeth: <role_action>smiles"),
            vec!["Elizabeth", ":", " <", "role", "_action", ">smiles"]
        );
        assert_eq!(pretokenize("a ...\nb"), vec!["a", " ...\n", "b"]);
    }

    #[test]
    fn merges_only_use_vocab_tokens() {
        let v = tiny_bpe_vocab();
        let vocab: HashSet<&str> = v.tokens.iter().map(String::as_str).collect();
        assert_eq!(vocab.len(), v.tokens.len(), "tokens are unique");
        assert!((300..=500).contains(&v.merges.len()), "{}", v.merges.len());
        for m in &v.merges {
            let (a, b) = m.split_once(' ').unwrap();
            assert!(!b.contains(' '), "{m}");
            assert!(vocab.contains(a) && vocab.contains(b), "{m}");
            assert!(vocab.contains(format!("{a}{b}").as_str()), "{m}");
        }
        let merges: HashSet<&String> = v.merges.iter().collect();
        assert_eq!(merges.len(), v.merges.len(), "merges are unique");
    }

    #[test]
    fn id_layout() {
        let v = tiny_bpe_vocab();
        let s = v.special;
        assert_eq!(v.len(), 256 + TARGET_NEW_TOKENS + 3 + 8);
        assert_eq!(s.endoftext as usize, 256 + TARGET_NEW_TOKENS);
        let named = [
            (s.endoftext, "<|endoftext|>", TOKEN_TYPE_CONTROL),
            (s.im_start, "<|im_start|>", TOKEN_TYPE_CONTROL),
            (s.im_end, "<|im_end|>", TOKEN_TYPE_CONTROL),
            (
                s.system_thinking_open,
                "<system_thinking>",
                TOKEN_TYPE_USER_DEFINED,
            ),
            (
                s.system_thinking_close,
                "</system_thinking>",
                TOKEN_TYPE_USER_DEFINED,
            ),
            (
                s.role_thinking_open,
                "<role_thinking>",
                TOKEN_TYPE_USER_DEFINED,
            ),
            (
                s.role_thinking_close,
                "</role_thinking>",
                TOKEN_TYPE_USER_DEFINED,
            ),
            (s.role_action_open, "<role_action>", TOKEN_TYPE_USER_DEFINED),
            (
                s.role_action_close,
                "</role_action>",
                TOKEN_TYPE_USER_DEFINED,
            ),
            (s.think_open, "<think>", TOKEN_TYPE_USER_DEFINED),
            (s.think_close, "</think>", TOKEN_TYPE_USER_DEFINED),
        ];
        for (id, text, ty) in named {
            assert_eq!(v.tokens[id as usize], text);
            assert_eq!(v.token_types[id as usize], ty);
        }
        assert_eq!(s.think_close as usize, v.len() - 1);
        assert!(
            v.token_types[..s.endoftext as usize]
                .iter()
                .all(|&t| t == TOKEN_TYPE_NORMAL)
        );
        // Frequent corpus words became whole tokens.
        assert!(v.token_id("ĠElizabeth").is_some() || v.token_id("Elizabeth").is_some());
    }

    #[test]
    fn training_is_deterministic() {
        let a = train_bpe(CORPUS, 50);
        let b = train_bpe(CORPUS, 50);
        assert_eq!(a.merges, b.merges);
        assert_eq!(a.tokens, b.tokens);
    }
}
