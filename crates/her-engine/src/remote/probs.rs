//! Token probabilities from llama-server's stream (`n_probs`), turned into
//! [`TokenChoice`]s whose bytes add up to the reply exactly.
//!
//! Each streamed chunk carries one token with `logprobs.content`: its id, the
//! text the chunk *sent* and the top candidates, each with its own piece.
//! The text sent is not always the token's piece: while the reply's tail
//! could still become a stop string the server sends nothing and then sends
//! the held text with a later token; and a token ending inside a UTF-8
//! character is not sent at all (its bytes come with the next one, and
//! `tokens_predicted` jumps). The pieces are put back where the drawn tokens
//! are among their own candidates; where they cannot be, the bytes go to the
//! first token of the run and the tokens after it lose their candidates,
//! since a branch there would start from the wrong text.

use serde_json::Value;

use crate::{Candidate, TokenChoice};

/// One streamed token, before its run is settled.
#[derive(Debug, Clone, PartialEq)]
struct Streamed {
    choice: TokenChoice,
    /// Tokens were generated before this one that the stream never sent.
    after_unsent: bool,
}

/// Collects the streamed tokens; [`ChoiceReader::finish`] settles them.
#[derive(Debug, Default)]
pub struct ChoiceReader {
    settled: Vec<TokenChoice>,
    /// Tokens sent with no text, and the one that ends their run.
    run: Vec<Streamed>,
    /// `tokens_predicted` after the last token read.
    predicted: u64,
}

impl ChoiceReader {
    /// Reads one chunk of a llama-server `/v1/completions` stream.
    pub fn push(&mut self, chunk: &Value) {
        let Some(entries) = chunk
            .pointer("/choices/0/logprobs/content")
            .and_then(Value::as_array)
        else {
            return;
        };
        // The count if every token since the last chunk was sent.
        let expected = self.predicted + entries.len() as u64;
        let predicted = chunk
            .pointer("/__verbose/tokens_predicted")
            .and_then(Value::as_u64);
        let unsent = predicted.is_some_and(|p| p > expected);
        self.predicted = predicted.unwrap_or(expected).max(expected);
        for (i, entry) in entries.iter().enumerate() {
            let Some(choice) = token_choice(entry) else {
                continue;
            };
            let streamed = Streamed {
                after_unsent: unsent && i == 0,
                choice,
            };
            let ends_run = !streamed.choice.bytes.is_empty();
            self.run.push(streamed);
            if ends_run {
                let run = std::mem::take(&mut self.run);
                self.settled.extend(settle(run));
            }
        }
    }

    /// The choices of the reply's first `kept` bytes: tokens whose text never
    /// reached the reply (a stop string, the end-of-generation token) are
    /// left out, and a token the reply ends inside is cut to what was kept.
    pub fn finish(self, kept: usize) -> Vec<TokenChoice> {
        let mut out = Vec::with_capacity(self.settled.len());
        let mut at = 0;
        for mut choice in self.settled {
            // A token left without text belongs with the one before it.
            let joins_the_last = choice.bytes.is_empty() && !out.is_empty();
            if at >= kept && !joins_the_last {
                break;
            }
            let room = kept - at;
            choice.bytes.truncate(room);
            at += choice.bytes.len();
            out.push(choice);
        }
        out
    }
}

/// One `logprobs.content` entry: `{id, bytes, logprob, top_logprobs: [...]}`.
fn token_choice(entry: &Value) -> Option<TokenChoice> {
    let token = i32::try_from(entry.get("id")?.as_i64()?).ok()?;
    let candidates = entry
        .get("top_logprobs")
        .and_then(Value::as_array)
        .map(|top| {
            top.iter()
                .filter_map(|c| {
                    Some(Candidate {
                        token: i32::try_from(c.get("id")?.as_i64()?).ok()?,
                        bytes: bytes_of(c),
                        probability: probability_of(c),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Some(TokenChoice {
        token,
        bytes: bytes_of(entry),
        probability: probability_of(entry),
        candidates,
    })
}

/// `bytes` (exact, may be part of a character), else the `token` string.
fn bytes_of(entry: &Value) -> Vec<u8> {
    match entry.get("bytes").and_then(Value::as_array) {
        Some(bytes) => bytes
            .iter()
            .filter_map(Value::as_u64)
            .filter_map(|b| u8::try_from(b).ok())
            .collect(),
        None => entry
            .get("token")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .as_bytes()
            .to_vec(),
    }
}

/// `exp(logprob)`; a probability of zero arrives as `null` (JSON has no -inf).
fn probability_of(entry: &Value) -> f64 {
    entry
        .get("logprob")
        .and_then(Value::as_f64)
        .map_or(0.0, f64::exp)
}

/// The drawn token's own piece, when it is among its candidates.
fn own_piece(choice: &TokenChoice) -> Option<&[u8]> {
    choice
        .candidates
        .iter()
        .find(|c| c.token == choice.token)
        .map(|c| c.bytes.as_slice())
}

/// Gives each token of a run its own piece of the run's text (all of it
/// sent with the last token). Exact when at most one piece is unknown and
/// nothing was left unsent inside the run; otherwise the text goes to the
/// first token, which keeps its candidates only if its start is exact.
fn settle(run: Vec<Streamed>) -> Vec<TokenChoice> {
    let text = run
        .last()
        .map(|s| s.choice.bytes.clone())
        .unwrap_or_default();
    let unsent_inside = run.iter().any(|s| s.after_unsent);
    if !unsent_inside && let Some(pieces) = split_exactly(&run, &text) {
        return run
            .into_iter()
            .zip(pieces)
            .map(|(s, piece)| TokenChoice {
                bytes: piece,
                ..s.choice
            })
            .collect();
    }
    // Unsent tokens come right before the token that completes them, so the
    // first token of the run starts exactly unless it is that token itself.
    let first_exact = run.first().is_some_and(|s| !s.after_unsent);
    run.into_iter()
        .enumerate()
        .map(|(i, s)| {
            let exact = i == 0 && first_exact;
            TokenChoice {
                bytes: if i == 0 { text.clone() } else { Vec::new() },
                candidates: if exact {
                    s.choice.candidates
                } else {
                    Vec::new()
                },
                ..s.choice
            }
        })
        .collect()
}

/// Each token's piece of `text`: the known pieces from the front and from
/// the back, and the one unknown piece (if any) is what lies between.
fn split_exactly(run: &[Streamed], text: &[u8]) -> Option<Vec<Vec<u8>>> {
    let known: Vec<Option<&[u8]>> = run.iter().map(|s| own_piece(&s.choice)).collect();
    let unknown = known.iter().filter(|k| k.is_none()).count();
    if unknown > 1 {
        return None;
    }
    let gap = known
        .iter()
        .position(Option::is_none)
        .unwrap_or(known.len());
    let mut pieces = vec![Vec::new(); run.len()];
    let mut front = 0;
    for (i, piece) in known.iter().enumerate().take(gap) {
        let piece = (*piece)?;
        if !text[front..].starts_with(piece) {
            return None;
        }
        pieces[i] = piece.to_vec();
        front += piece.len();
    }
    let mut back = text.len();
    for (i, piece) in known.iter().enumerate().skip(gap + 1).rev() {
        let piece = (*piece)?;
        if back < front + piece.len() || &text[back - piece.len()..back] != piece {
            return None;
        }
        pieces[i] = piece.to_vec();
        back -= piece.len();
    }
    match pieces.get_mut(gap) {
        Some(between) => *between = text[front..back].to_vec(),
        // Every piece known: they must use up the text.
        None if front == text.len() => {}
        None => return None,
    }
    Some(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A chunk with one token: `(id, sent text)`, candidates `(id, piece, p)`.
    fn chunk(id: i32, sent: &str, top: &[(i32, &str, f64)], predicted: u64) -> Value {
        let top: Vec<Value> = top
            .iter()
            .map(|(id, piece, p)| json!({"id": id, "token": piece, "bytes": piece.as_bytes(), "logprob": p.ln()}))
            .collect();
        json!({
            "choices": [{"text": sent, "logprobs": {"content": [
                {"id": id, "token": sent, "bytes": sent.as_bytes(), "logprob": 0.5f64.ln(), "top_logprobs": top}
            ]}}],
            "__verbose": {"tokens_predicted": predicted}
        })
    }

    fn read(chunks: &[Value], kept: usize) -> Vec<TokenChoice> {
        let mut reader = ChoiceReader::default();
        for c in chunks {
            reader.push(c);
        }
        reader.finish(kept)
    }

    fn texts(choices: &[TokenChoice]) -> Vec<String> {
        choices
            .iter()
            .map(|c| String::from_utf8_lossy(&c.bytes).into_owned())
            .collect()
    }

    #[test]
    fn plain_tokens_keep_their_text_probability_and_candidates() {
        let out = read(
            &[
                chunk(1, "Hi", &[(1, "Hi", 0.5), (2, "Oh", 0.2)], 1),
                chunk(3, " there", &[(4, " you", 0.6)], 2),
            ],
            8,
        );
        assert_eq!(texts(&out), ["Hi", " there"]);
        assert!((out[0].probability - 0.5).abs() < 1e-12);
        assert_eq!(out[0].candidates.len(), 2);
        assert!((out[0].candidates[1].probability - 0.2).abs() < 1e-12);
        assert_eq!(out[1].candidates.len(), 1);
    }

    #[test]
    fn held_text_is_given_back_to_the_tokens_it_came_from() {
        // "<" is held (it could start a stop string), then sent with "role".
        let out = read(
            &[
                chunk(1, "a", &[(1, "a", 0.9)], 1),
                chunk(2, "", &[(2, "<", 0.7)], 2),
                chunk(3, "<role", &[(3, "role", 0.8)], 3),
            ],
            6,
        );
        assert_eq!(texts(&out), ["a", "<", "role"]);
        assert!(out.iter().all(|c| !c.candidates.is_empty()));
    }

    #[test]
    fn one_unknown_piece_in_a_run_is_what_the_others_leave() {
        // The held token was drawn outside its candidates: its piece is the rest.
        let out = read(
            &[
                chunk(2, "", &[(9, "x", 0.7)], 1),
                chunk(3, "<role", &[(3, "role", 0.8)], 2),
            ],
            5,
        );
        assert_eq!(texts(&out), ["<", "role"]);
        assert_eq!(out[0].candidates.len(), 1);
    }

    #[test]
    fn a_run_that_cannot_be_split_keeps_its_text_on_its_first_token() {
        // Neither piece is known: the bytes before the second are unknown.
        let out = read(
            &[
                chunk(2, "", &[(9, "x", 0.7)], 1),
                chunk(3, "<role", &[(8, "y", 0.8)], 2),
            ],
            5,
        );
        assert_eq!(texts(&out), ["<role", ""]);
        assert_eq!(out[0].candidates.len(), 1, "the first token starts exactly");
        assert!(
            out[1].candidates.is_empty(),
            "a branch there would be wrong"
        );
    }

    #[test]
    fn a_token_after_unsent_ones_cannot_be_branched_from() {
        // Token 2 ended inside "é" and was never sent; token 3 carries both halves.
        let out = read(
            &[
                chunk(1, "caf", &[(1, "caf", 0.9)], 1),
                chunk(3, "é", &[(3, "\u{a9}", 0.8)], 3),
            ],
            5,
        );
        assert_eq!(texts(&out), ["caf", "é"]);
        assert_eq!(out[0].candidates.len(), 1);
        assert!(out[1].candidates.is_empty());
    }

    #[test]
    fn tokens_past_the_kept_reply_are_left_out_and_a_straddling_one_is_cut() {
        let chunks = [
            chunk(1, "Hi", &[(1, "Hi", 0.9)], 1),
            chunk(2, " the", &[(2, " the", 0.9)], 2),
            chunk(3, "re", &[(3, "re", 0.9)], 3),
            // The end-of-generation token sends no text.
            chunk(4, "", &[(4, "", 0.9)], 4),
        ];
        assert_eq!(texts(&read(&chunks, 8)), ["Hi", " the", "re"]);
        assert_eq!(texts(&read(&chunks, 4)), ["Hi", " t"]);
        assert!(read(&chunks, 0).is_empty());
    }

    #[test]
    fn chunks_without_log_probs_and_null_probabilities_are_safe() {
        let mut reader = ChoiceReader::default();
        reader.push(&json!({"choices": [{"text": "x", "logprobs": null}]}));
        reader.push(&json!({"choices": [{"text": "y", "logprobs": {"content": [
            {"id": 5, "bytes": [121], "logprob": null, "top_logprobs": []}
        ]}}]}));
        let out = reader.finish(10);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].probability, 0.0);
    }
}
