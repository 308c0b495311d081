//! SFT data: HER's messages layout read from JSONL, tokenized with a loss
//! mask on the final assistant turn only, split into train / held-out, and
//! cut into length-bucketed batches in a seeded order.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::tokenizer::encode;
use crate::fsutil::read::{self, Kind, ReadError};
use crate::hashing::sha256_hex;

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
    let mut samples = Vec::new();
    for line in lines.by_ref() {
        let line = line?;
        if line.is_blank() {
            continue;
        }
        let bad = |reason: String| DataError::Line {
            path: path.to_path_buf(),
            line: line.number,
            reason,
        };
        let sample: Sample = serde_json::from_str(line.text().map_err(bad)?)
            .map_err(|e| bad(format!("not a {{\"messages\": [...]}} object: {e}")))?;
        if sample.messages.is_empty() {
            return Err(bad("no messages".into()));
        }
        if let Some(problem) = sample.problem() {
            return Err(bad(problem));
        }
        samples.push(sample);
    }
    if samples.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok((samples, lines.sha256_hex().unwrap_or_default()))
}

/// A tokenized sample: ids, and where the learned turn starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokenized {
    pub ids: Vec<u32>,
    /// Index in `ids` of the first token of the learned assistant turn.
    pub completion_start: usize,
}

impl Tokenized {
    /// Tokens in the loss.
    pub fn completion_len(&self) -> usize {
        self.ids.len() - self.completion_start
    }
}

/// The prompt in ChatML up to the open assistant turn, and the completion
/// (the last message and its end marker). Tokenized apart and joined: the
/// model reads the prompt exactly as the engine feeds it at chat time.
pub fn chatml_parts(sample: &Sample) -> (String, String) {
    let (last, before) = match sample.messages.split_last() {
        Some(split) => split,
        None => return (String::new(), String::new()),
    };
    let mut prompt = String::new();
    for m in before {
        prompt.push_str(&format!(
            "<|im_start|>{}\n{}<|im_end|>\n",
            m.role, m.content
        ));
    }
    prompt.push_str("<|im_start|>assistant\n");
    (prompt, format!("{}<|im_end|>", last.content))
}

pub fn tokenize(tokenizer: &Tokenizer, sample: &Sample) -> Result<Tokenized, DataError> {
    let (prompt, completion) = chatml_parts(sample);
    let err = |e: super::tokenizer::TokenizerError| DataError::Tokenize(e.to_string());
    let mut ids = encode(tokenizer, &prompt).map_err(err)?;
    let completion_start = ids.len();
    ids.extend(encode(tokenizer, &completion).map_err(err)?);
    Ok(Tokenized {
        ids,
        completion_start,
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

/// The sample indices of optimizer step `step` when `n` samples are cut into
/// batches of `batch_size` in each epoch's seeded order.
pub fn step_indices(n: usize, batch_size: usize, seed: u64, step: u64) -> Vec<usize> {
    let batch_size = batch_size.max(1);
    let per_epoch = n.div_ceil(batch_size).max(1) as u64;
    let order = epoch_order(n, seed, step / per_epoch);
    let index = (step % per_epoch) as usize;
    order
        .chunks(batch_size)
        .nth(index)
        .map(<[usize]>::to_vec)
        .unwrap_or_default()
}

/// A seeded permutation of `0..n` for one epoch.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = SplitMix64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD90);
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut order, &mut rng);
    order
}

/// One micro-batch, right-padded: causal attention never looks ahead, so
/// real tokens never see the padding, and padded labels are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub rows: usize,
    pub cols: usize,
    /// rows × cols.
    pub ids: Vec<u32>,
    /// rows × cols; `labels[r][t]` is the token after `ids[r][t]`, or IGNORE.
    pub labels: Vec<i64>,
    /// Labelled positions.
    pub tokens: usize,
    /// Positions holding a real token (not padding): what the model reads.
    pub positions: usize,
}

pub fn batch(samples: &[&Tokenized], pad: u32) -> Batch {
    // The last token has no next token to predict.
    let cols = samples
        .iter()
        .map(|s| s.ids.len().saturating_sub(1))
        .max()
        .unwrap_or(0)
        .max(1);
    let rows = samples.len();
    let mut ids = vec![pad; rows * cols];
    let mut labels = vec![IGNORE; rows * cols];
    let mut tokens = 0;
    let mut positions = 0;
    for (r, s) in samples.iter().enumerate() {
        positions += s.ids.len().saturating_sub(1);
        for t in 0..s.ids.len().saturating_sub(1) {
            ids[r * cols + t] = s.ids[t];
            if t + 1 >= s.completion_start {
                labels[r * cols + t] = i64::from(s.ids[t + 1]);
                tokens += 1;
            }
        }
    }
    Batch {
        rows,
        cols,
        ids,
        labels,
        tokens,
        positions,
    }
}

/// The batches of one epoch: a seeded shuffle, then samples of similar
/// length grouped (within windows of 16 batches) so little is padding, then
/// the batches shuffled again. Same (seed, epoch), same batches.
pub fn epoch_batches(
    samples: &[Tokenized],
    batch_size: usize,
    pad: u32,
    seed: u64,
    epoch: u64,
) -> Vec<Batch> {
    let batch_size = batch_size.max(1);
    let mut rng = SplitMix64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut order: Vec<usize> = (0..samples.len()).collect();
    shuffle(&mut order, &mut rng);
    let window = batch_size * 16;
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for chunk in order.chunks(window) {
        let mut chunk = chunk.to_vec();
        chunk.sort_by_key(|&i| samples[i].ids.len());
        groups.extend(chunk.chunks(batch_size).map(<[usize]>::to_vec));
    }
    shuffle(&mut groups, &mut rng);
    groups
        .iter()
        .map(|g| batch(&g.iter().map(|&i| &samples[i]).collect::<Vec<_>>(), pad))
        .collect()
}

/// A small seeded generator (the order of data must not depend on a crate's
/// RNG version).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn shuffle<T>(items: &mut [T], rng: &mut SplitMix64) {
    for i in (1..items.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
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
        let a = Tokenized {
            ids: vec![10, 11, 12, 13, 14],
            completion_start: 3,
        };
        let b = Tokenized {
            ids: vec![20, 21, 22],
            completion_start: 2,
        };
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
            .map(|i| Tokenized {
                ids: (0..(3 + i % 7) as u32)
                    .map(|t| t + 100 * i as u32)
                    .collect(),
                completion_start: 1,
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
