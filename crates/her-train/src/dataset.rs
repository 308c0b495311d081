//! What a training run learns from, gathered from files, the replies kept
//! in the studio's sessions, its preference records and annotation queues:
//! SFT samples, DPO pairs, KTO replies and RL prompts, each with the
//! sources the run records.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::data::{DataError, Message, Sample, read_jsonl_hashed};
use super::dpo::{PairSample, read_dpo_jsonl};
use super::kto::{KtoSample, read_kto_jsonl};
use super::rl::prompts::{PromptError, RlPrompt, read_prompts_jsonl};
use her_core::fsutil::read::{self, Kind, ReadError};
use her_core::prefs::queue::{QueueError, read_queue};
use her_core::prefs::sessions::KeptReply;
use her_core::prefs::{PreferenceRecord, PrefsError, RatingScore, Role};

/// Where the data came from, for the run's record.
#[derive(Debug, Clone, Serialize)]
pub struct DataSource {
    pub name: String,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Prompts(#[from] PromptError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Prefs(#[from] PrefsError),
    #[error("the KTO export of the preferences has a line that is no KTO sample: {0}")]
    KtoLine(serde_json::Error),
}

/// Which kept replies become samples or prompts.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeptFilter<'a> {
    /// Only this character (case-insensitive).
    pub character: Option<&'a str>,
    /// Only replies rated at least this many stars (or thumbs up).
    pub min_stars: Option<u8>,
}

impl KeptFilter<'_> {
    fn keeps(&self, kept: &KeptReply) -> bool {
        let character = self
            .character
            .is_none_or(|c| c.eq_ignore_ascii_case(&kept.character));
        let stars = self.min_stars.is_none_or(|min| passes(kept.rating, min));
        character && stars
    }
}

fn passes(rating: Option<RatingScore>, min_stars: u8) -> bool {
    match rating {
        Some(RatingScore::Stars(n)) => n >= min_stars,
        Some(RatingScore::ThumbsUp) => true,
        Some(RatingScore::ThumbsDown) | None => false,
    }
}

/// The source that names the studio's sessions folder.
fn sessions_source(dir: &Path, digest: &str) -> DataSource {
    DataSource {
        name: format!("sessions in {}", dir.display()),
        sha256: her_core::hashing::sha256_hex(digest.as_bytes()),
    }
}

fn file_source(path: &Path) -> Result<DataSource, ReadError> {
    let bytes = read::bytes(path, Kind::Dataset)?;
    Ok(DataSource {
        name: path.display().to_string(),
        sha256: her_core::hashing::sha256_hex(&bytes),
    })
}

/// SFT samples from `{"messages": [...]}` JSONL files.
pub fn sft_from_files(paths: &[PathBuf]) -> Result<(Vec<Sample>, Vec<DataSource>), DatasetError> {
    let mut samples = Vec::new();
    let mut sources = Vec::new();
    for path in paths {
        let (read, sha256) = read_jsonl_hashed(path)?;
        samples.extend(read);
        sources.push(DataSource {
            name: path.display().to_string(),
            sha256,
        });
    }
    Ok((samples, sources))
}

/// SFT samples from the replies kept in the sessions under `dir`: the
/// context, then the reply as the assistant turn.
pub fn sft_from_kept(
    kept: Vec<KeptReply>,
    filter: KeptFilter<'_>,
    dir: &Path,
) -> (Vec<Sample>, DataSource) {
    let mut samples = Vec::new();
    for kept in kept.into_iter().filter(|k| filter.keeps(k)) {
        let mut messages: Vec<Message> = kept
            .context
            .iter()
            .map(|m| Message {
                role: m.role.as_str().to_string(),
                content: m.content.clone(),
            })
            .collect();
        messages.push(Message {
            role: "assistant".into(),
            content: kept.reply,
        });
        samples.push(Sample { messages });
    }
    let digest: String = samples.iter().map(Sample::sha256).collect();
    (samples, sessions_source(dir, &digest))
}

/// DPO pairs from TRL preference files.
pub fn pairs_from_files(paths: &[PathBuf]) -> Result<Vec<PairSample>, DatasetError> {
    let mut pairs = Vec::new();
    for path in paths {
        pairs.extend(read_dpo_jsonl(path)?);
    }
    Ok(pairs)
}

/// DPO pairs from the studio's pairs with a winner (the context's plans
/// left out, as the chat history has them).
pub fn pairs_from_records(records: Vec<PreferenceRecord>) -> Vec<PairSample> {
    records
        .into_iter()
        .filter_map(|r| match r {
            PreferenceRecord::Pair(p) => {
                let (chosen, rejected) = p.winner_loser()?;
                Some(PairSample {
                    prompt: p
                        .context
                        .iter()
                        .map(|m| Message {
                            role: m.role.as_str().to_string(),
                            content: if m.role == Role::Assistant {
                                her_core::format::strip_system_thinking(&m.content)
                            } else {
                                m.content.clone()
                            },
                        })
                        .collect(),
                    chosen: chosen.to_string(),
                    rejected: rejected.to_string(),
                })
            }
            PreferenceRecord::Rating(_) => None,
        })
        .collect()
}

/// KTO replies from TRL files.
pub fn kto_from_files(paths: &[PathBuf]) -> Result<Vec<KtoSample>, DatasetError> {
    let mut samples = Vec::new();
    for path in paths {
        samples.extend(read_kto_jsonl(path)?);
    }
    Ok(samples)
}

/// KTO replies from the studio's records as the KTO export labels them (3
/// stars and praise of one layer are left out), and how many rated replies
/// were left out for an empty completion (they teach nothing).
pub fn kto_from_records(
    records: &[PreferenceRecord],
) -> Result<(Vec<KtoSample>, usize), DatasetError> {
    let (text, _) = her_core::prefs::render(records, her_core::prefs::Format::Kto)?;
    let mut samples = Vec::new();
    let mut empty = 0;
    for line in text.lines() {
        let sample = serde_json::from_str::<KtoSample>(line).map_err(DatasetError::KtoLine)?;
        match sample.problem() {
            None => samples.push(sample),
            Some(_) => empty += 1,
        }
    }
    Ok((samples, empty))
}

/// RL prompts from prompt files and annotation queues (their contexts).
pub fn rl_prompts_from_files(
    prompt_files: &[PathBuf],
    queues: &[PathBuf],
) -> Result<(Vec<RlPrompt>, Vec<DataSource>), DatasetError> {
    let mut prompts = Vec::new();
    let mut sources = Vec::new();
    for path in prompt_files {
        prompts.extend(read_prompts_jsonl(path)?);
        sources.push(file_source(path)?);
    }
    for path in queues {
        let items = read_queue(path)?;
        prompts.extend(
            items
                .into_iter()
                .map(|item| RlPrompt::new(item.character, item.context)),
        );
        sources.push(file_source(path)?);
    }
    Ok((prompts, sources))
}

/// RL prompts from the contexts of the replies kept in the sessions under `dir`.
pub fn rl_prompts_from_kept(
    kept: Vec<KeptReply>,
    filter: KeptFilter<'_>,
    dir: &Path,
) -> (Vec<RlPrompt>, DataSource) {
    let prompts: Vec<RlPrompt> = kept
        .into_iter()
        .filter(|k| filter.keeps(k))
        .map(|k| RlPrompt::new(k.character, k.context))
        .collect();
    let digest: String = prompts.iter().map(|p| p.id.as_str()).collect();
    (prompts, sessions_source(dir, &digest))
}
