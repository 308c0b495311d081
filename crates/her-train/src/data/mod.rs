//! SFT data: HER's messages layout read from JSONL, tokenized with a loss
//! mask on the final assistant turn (or on every assistant turn), split
//! into train / held-out, and cut into batches in a seeded order: padded
//! rows grouped by length, or several samples packed into each row.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

mod batching;

pub use batching::{
    Batch, Batching, batch, epoch_batches, epoch_order, pack_rows, packed_batch, step_indices,
    step_micro_batches,
};

use crate::tokenizer::encode;
use her_core::format::strip_system_thinking;
use her_core::fsutil::read::{self, Kind, ReadError};
use her_core::hashing::sha256_hex;

/// Label of positions that are not in the loss.
pub const IGNORE: i64 = -100;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("'{}' line {line}: {reason}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("'{}' has no training samples", path.display())]
    Empty { path: PathBuf },
    #[error("tokenizing a sample: {0}")]
    Tokenize(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// One SFT sample: the conversation; its last message is the assistant turn
/// that is learned (its `<system_thinking>` included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub messages: Vec<Message>,
}

impl Sample {
    /// Why this sample cannot be trained on, if it cannot.
    pub fn problem(&self) -> Option<String> {
        let last = self.messages.last()?;
        if last.role != "assistant" {
            return Some(format!(
                "the last message is '{}', not 'assistant': there is nothing to learn",
                last.role
            ));
        }
        if last.content.trim().is_empty() {
            return Some("the last assistant message is empty".into());
        }
        self.messages
            .iter()
            .find(|m| !matches!(m.role.as_str(), "system" | "user" | "assistant"))
            .map(|m| format!("unknown role '{}' (system, user, assistant)", m.role))
    }

    /// A stable identity, for the held-out split and the run's data hashes.
    pub fn sha256(&self) -> String {
        sha256_hex(serde_json::to_string(self).unwrap_or_default().as_bytes())
    }
}

/// Reads `{"messages": [...]}` lines; blank lines are skipped. Any bad line
/// is an error naming the file and line (training on half a file silently
/// would be worse).
pub fn read_jsonl(path: &Path) -> Result<Vec<Sample>, DataError> {
    Ok(read_jsonl_hashed(path)?.0)
}

/// [`read_jsonl`], and the sha256 of the file's bytes as read (for the run's
/// record of its data), from one bounded pass over the file.
pub fn read_jsonl_hashed(path: &Path) -> Result<(Vec<Sample>, String), DataError> {
    let mut lines = read::lines(path, Kind::Dataset)?.hashing();
    let samples = parse_lines(path, lines.by_ref(), |text| {
        let sample: Sample = serde_json::from_str(text)
            .map_err(|e| format!("not a {{\"messages\": [...]}} object: {e}"))?;
        if sample.messages.is_empty() {
            return Err("no messages".into());
        }
        match sample.problem() {
            Some(problem) => Err(problem),
            None => Ok(sample),
        }
    })?;
    if samples.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok((samples, lines.sha256_hex().unwrap_or_default()))
}

/// The non-blank lines of a JSONL file (read bounded, as every dataset),
/// each turned into a `T` by `parse`; the first line it refuses is an error
/// naming the file and the line.
pub fn read_jsonl_lines<T>(
    path: &Path,
    parse: impl FnMut(&str) -> Result<T, String>,
) -> Result<Vec<T>, DataError> {
    parse_lines(path, read::lines(path, Kind::Dataset)?, parse)
}

fn parse_lines<T>(
    path: &Path,
    lines: impl Iterator<Item = Result<read::Line, ReadError>>,
    mut parse: impl FnMut(&str) -> Result<T, String>,
) -> Result<Vec<T>, DataError> {
    let mut out = Vec::new();
    for line in lines {
        let line = line?;
        if line.is_blank() {
            continue;
        }
        let bad = |reason: String| DataError::Line {
            path: path.to_path_buf(),
            line: line.number,
            reason,
        };
        out.push(parse(line.text().map_err(bad)?).map_err(bad)?);
    }
    Ok(out)
}

/// Which assistant turns of an SFT sample are in the loss (`train.loss_on`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossOn {
    /// Only the final turn, with its plan: how HER trains (one sample per
    /// turn of a dialogue).
    #[default]
    Last,
    /// Every assistant turn (TRL's `assistant_only_loss = True`); earlier
    /// turns as the chat's history shows them, without their plan.
    All,
}

impl FromStr for LossOn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "last" => Ok(Self::Last),
            "all" => Ok(Self::All),
            other => Err(format!("train.loss_on '{other}': use 'last' or 'all'")),
        }
    }
}

/// A tokenized sample: ids, and which of them are learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokenized {
    pub ids: Vec<u32>,
    /// Index in `ids` of the first token of the final assistant turn.
    pub completion_start: usize,
    /// Token ranges of earlier assistant turns that are in the loss too
    /// (`train.loss_on = "all"`); empty otherwise.
    pub earlier_turns: Vec<Range<usize>>,
}

impl Tokenized {
    /// A sample whose final turn alone is learned.
    pub fn new(ids: Vec<u32>, completion_start: usize) -> Self {
        Self {
            ids,
            completion_start,
            earlier_turns: Vec::new(),
        }
    }

    /// Tokens of the final turn.
    pub fn completion_len(&self) -> usize {
        self.ids.len() - self.completion_start
    }

    /// Whether the token at `index` is in the loss.
    pub fn is_learned(&self, index: usize) -> bool {
        index >= self.completion_start || self.earlier_turns.iter().any(|r| r.contains(&index))
    }

    /// Positions the model reads (the last token is only a label).
    pub fn positions(&self) -> usize {
        self.ids.len().saturating_sub(1)
    }
}

/// A piece of a sample's ChatML text: context, or an assistant turn's
/// reply (its content and end marker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub text: String,
    pub reply: bool,
}

/// A sample's ChatML as pieces whose concatenation is the text the model
/// reads; the last piece is the final reply. Earlier assistant turns follow
/// HER's history rule, as the chat's prompt shows them: without their
/// `<system_thinking>` plan (their `<role_thinking>` stays).
pub fn chatml_pieces(sample: &Sample) -> Vec<Piece> {
    let Some((last, before)) = sample.messages.split_last() else {
        return Vec::new();
    };
    let mut pieces = Vec::new();
    let mut context = String::new();
    for m in before {
        context.push_str(&format!("<|im_start|>{}\n", m.role));
        if m.role == "assistant" {
            pieces.push(Piece {
                text: std::mem::take(&mut context),
                reply: false,
            });
            let shown = strip_system_thinking(&m.content);
            pieces.push(Piece {
                text: format!("{}<|im_end|>", shown.trim_end()),
                reply: true,
            });
            context.push('\n');
        } else {
            context.push_str(&format!("{}<|im_end|>\n", m.content));
        }
    }
    context.push_str("<|im_start|>assistant\n");
    pieces.push(Piece {
        text: context,
        reply: false,
    });
    pieces.push(Piece {
        text: format!("{}<|im_end|>", last.content),
        reply: true,
    });
    pieces
}

/// The prompt in ChatML up to the open assistant turn, and the completion
/// (the last message and its end marker). Tokenized apart and joined: the
/// model reads the prompt exactly as the engine feeds it at chat time.
pub fn chatml_parts(sample: &Sample) -> (String, String) {
    let mut pieces = chatml_pieces(sample);
    let completion = pieces.pop().map(|p| p.text).unwrap_or_default();
    (pieces.into_iter().map(|p| p.text).collect(), completion)
}

/// The sample with its final assistant turn in the loss.
pub fn tokenize(tokenizer: &Tokenizer, sample: &Sample) -> Result<Tokenized, DataError> {
    tokenize_turns(tokenizer, sample, LossOn::Last)
}

/// The sample with the turns `loss_on` names in the loss. The prompt
/// before the final turn is one piece of text, as the engine tokenizes it;
/// each learned turn is tokenized on its own, as the final turn always was.
pub fn tokenize_turns(
    tokenizer: &Tokenizer,
    sample: &Sample,
    loss_on: LossOn,
) -> Result<Tokenized, DataError> {
    let encode =
        |text: &str| encode(tokenizer, text).map_err(|e| DataError::Tokenize(e.to_string()));
    let mut pieces = chatml_pieces(sample);
    let completion = pieces.pop().map(|p| p.text).unwrap_or_default();
    let (mut ids, mut earlier_turns, mut context) = (Vec::new(), Vec::new(), String::new());
    for piece in pieces {
        if piece.reply && loss_on == LossOn::All {
            ids.extend(encode(&std::mem::take(&mut context))?);
            let start = ids.len();
            ids.extend(encode(&piece.text)?);
            earlier_turns.push(start..ids.len());
        } else {
            context.push_str(&piece.text);
        }
    }
    ids.extend(encode(&context)?);
    let completion_start = ids.len();
    ids.extend(encode(&completion)?);
    Ok(Tokenized {
        ids,
        completion_start,
        earlier_turns,
    })
}

/// Splits off about `fraction` of the samples as held-out, chosen by content
/// hash: stable across runs and across machines, whatever the file order.
/// With at least two samples, each side gets at least one.
pub fn split_held_out(samples: Vec<Sample>, fraction: f64) -> (Vec<Sample>, Vec<Sample>) {
    split_by_hash(samples, fraction, Sample::sha256)
}

/// [`split_held_out`] for any item with a content hash.
pub fn split_by_hash<T>(
    items: Vec<T>,
    fraction: f64,
    hash: impl Fn(&T) -> String,
) -> (Vec<T>, Vec<T>) {
    if fraction <= 0.0 || items.len() < 2 {
        return (items, Vec::new());
    }
    let mut keyed: Vec<(String, T)> = items.into_iter().map(|s| (hash(&s), s)).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let n = keyed.len();
    let held = ((n as f64 * fraction).round() as usize).clamp(1, n - 1);
    let eval = keyed.split_off(n - held);
    (
        keyed.into_iter().map(|(_, s)| s).collect(),
        eval.into_iter().map(|(_, s)| s).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(user: &str, reply: &str) -> Sample {
        Sample {
            messages: vec![
                Message {
                    role: "system".into(),
                    content: "You are E.".into(),
                },
                Message {
                    role: "user".into(),
                    content: user.into(),
                },
                Message {
                    role: "assistant".into(),
                    content: reply.into(),
                },
            ],
        }
    }

    #[test]
    fn chatml_ends_the_prompt_at_the_open_assistant_turn() {
        let (prompt, completion) = chatml_parts(&sample(
            "Hi.",
            "<system_thinking>p</system_thinking>E: Hello.",
        ));
        assert_eq!(
            prompt,
            "<|im_start|>system\nYou are E.<|im_end|>\n<|im_start|>user\nHi.<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            completion,
            "<system_thinking>p</system_thinking>E: Hello.<|im_end|>"
        );
    }

    #[test]
    fn only_the_final_assistant_turn_is_labelled() {
        let a = Tokenized::new(vec![10, 11, 12, 13, 14], 3);
        let b = Tokenized::new(vec![20, 21, 22], 2);
        let batch = batch(&[&a, &b], 0);
        assert_eq!((batch.rows, batch.cols), (2, 4));
        assert_eq!(batch.ids, vec![10, 11, 12, 13, 20, 21, 0, 0]);
        // Position t predicts ids[t+1]; only tokens from completion_start on.
        assert_eq!(
            batch.labels,
            vec![IGNORE, IGNORE, 13, 14, IGNORE, 22, IGNORE, IGNORE]
        );
        assert_eq!(batch.tokens, a.completion_len() + b.completion_len());
    }

    #[test]
    fn packed_rows_label_each_sample_within_itself() {
        let mut a = Tokenized::new(vec![10, 11, 12, 13, 14, 15], 4);
        a.earlier_turns = std::iter::once(1..2).collect();
        let b = Tokenized::new(vec![20, 21, 22], 2);
        let c = Tokenized::new(vec![30, 31], 1);
        let batch = packed_batch(&[vec![&a, &b], vec![&c]], 0);
        assert_eq!((batch.rows, batch.cols), (2, 7));
        assert_eq!(
            batch.ids,
            vec![10, 11, 12, 13, 14, 20, 21, 30, 0, 0, 0, 0, 0, 0]
        );
        // a learns 11 (an earlier turn) and 14, 15; b its last token; the
        // last position of a is not labelled with b's first token.
        assert_eq!(
            batch.labels,
            vec![
                11, IGNORE, IGNORE, 14, 15, IGNORE, 22, 31, IGNORE, IGNORE, IGNORE, IGNORE, IGNORE,
                IGNORE
            ]
        );
        assert_eq!(batch.sample_lens, vec![vec![5, 2], vec![1]]);
        assert_eq!((batch.tokens, batch.positions), (5, 8));
        assert!(batch.is_packed());
    }

    #[test]
    fn best_fit_decreasing_fills_rows_tightly_and_keeps_every_sample() {
        // Positions 7, 5, 4, 3, 3, 2 and 8 (longer than a row of 7: alone).
        let sizes = [8usize, 6, 5, 4, 4, 3, 9];
        let samples: Vec<Tokenized> = sizes
            .iter()
            .map(|&n| Tokenized::new(vec![1; n], 0))
            .collect();
        let rows = pack_rows(&samples, 7);
        // Longest first, each into the tightest row: 8 | 7 | 5+2 | 4+3 | 3.
        assert_eq!(
            rows,
            vec![vec![6], vec![0], vec![1, 5], vec![2, 3], vec![4]]
        );
        let mut all: Vec<usize> = rows.concat();
        all.sort_unstable();
        assert_eq!(all, (0..sizes.len()).collect::<Vec<_>>());
        let batching = Batching::new(&samples, true, 7);
        assert_eq!(batching.batches_per_epoch(samples.len(), 2), 3);
        let epoch = batching.epoch(&samples, 2, 9, 0);
        assert_eq!(epoch, batching.epoch(&samples, 2, 9, 0));
        let positions: usize = epoch.iter().map(|b| b.positions).sum();
        assert_eq!(positions, sizes.iter().map(|n| n - 1).sum::<usize>());
        // Each micro-batch is one sequence without padding.
        assert!(epoch.iter().all(|b| b.rows == 1 && b.cols == b.positions));
    }

    #[test]
    fn earlier_turns_lose_their_plan_as_in_the_chat_history() {
        let mut s = sample(
            "Hi.",
            "<system_thinking>p1</system_thinking>E: <role_thinking>t</role_thinking>Hello. ",
        );
        s.messages.push(Message {
            role: "user".into(),
            content: "Again.".into(),
        });
        s.messages.push(Message {
            role: "assistant".into(),
            content: "<system_thinking>p2</system_thinking>E: Yes.".into(),
        });
        let pieces = chatml_pieces(&s);
        let replies: Vec<&str> = pieces
            .iter()
            .filter(|p| p.reply)
            .map(|p| p.text.as_str())
            .collect();
        assert_eq!(
            replies,
            vec![
                "E: <role_thinking>t</role_thinking>Hello.<|im_end|>",
                "<system_thinking>p2</system_thinking>E: Yes.<|im_end|>"
            ]
        );
        let (prompt, completion) = chatml_parts(&s);
        assert_eq!(
            prompt,
            "<|im_start|>system\nYou are E.<|im_end|>\n<|im_start|>user\nHi.<|im_end|>\n\
             <|im_start|>assistant\nE: <role_thinking>t</role_thinking>Hello.<|im_end|>\n\
             <|im_start|>user\nAgain.<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(completion, replies[1]);
    }

    #[test]
    fn bad_lines_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("d.jsonl");
        let good = serde_json::to_string(&sample("a", "b")).unwrap_or_default();
        let bad = r#"{"messages":[{"role":"user","content":"x"}]}"#;
        std::fs::write(&path, format!("{good}\n\n{bad}\n")).unwrap_or_else(|e| panic!("{e}"));
        let err = read_jsonl(&path).map(|_| ()).map_err(|e| e.to_string());
        let expected = format!(
            "'{}' line 3: the last message is 'user', not 'assistant': there is nothing to learn",
            path.display()
        );
        assert_eq!(err, Err(expected));
    }

    #[test]
    fn the_split_is_stable_and_never_empty() {
        let samples: Vec<Sample> = (0..20).map(|i| sample(&i.to_string(), "r")).collect();
        let (train, eval) = split_held_out(samples.clone(), 0.1);
        assert_eq!((train.len(), eval.len()), (18, 2));
        let mut reversed = samples;
        reversed.reverse();
        let (_, eval_again) = split_held_out(reversed, 0.1);
        assert_eq!(eval, eval_again);
        let (train, eval) = split_held_out(vec![sample("a", "b"), sample("c", "d")], 0.01);
        assert_eq!((train.len(), eval.len()), (1, 1));
    }

    #[test]
    fn epochs_are_seeded_and_cover_every_sample_once() {
        let samples: Vec<Tokenized> = (0..37)
            .map(|i| {
                let ids = (0..(3 + i % 7) as u32).map(|t| t + 100 * i as u32);
                Tokenized::new(ids.collect(), 1)
            })
            .collect();
        let a = epoch_batches(&samples, 4, 0, 7, 0);
        assert_eq!(a, epoch_batches(&samples, 4, 0, 7, 0));
        assert_ne!(a, epoch_batches(&samples, 4, 0, 7, 1));
        let rows: usize = a.iter().map(|b| b.rows).sum();
        assert_eq!(rows, 37);
        let tokens: usize = a.iter().map(|b| b.tokens).sum();
        assert_eq!(
            tokens,
            samples.iter().map(|s| s.ids.len() - 1).sum::<usize>()
        );
    }
}
