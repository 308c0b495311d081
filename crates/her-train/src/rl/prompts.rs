//! What RL rollouts answer: a character and the conversation so far, ending
//! with a turn the character replies to. From a JSONL file (the SFT
//! `messages` layout, or TRL's prompt-only `prompt` layout), an annotation
//! queue, or the studio's sessions.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use her_core::fsutil::read::{self, Kind, ReadError};
use her_core::hashing::sha256_hex;
use her_core::prefs::{ContextMessage, Role};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RlPrompt {
    /// Stable within a run: the prompt's content hash, shortened.
    pub id: String,
    /// Who replies ("" when the source does not say).
    pub character: String,
    pub context: Vec<ContextMessage>,
}

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("'{}' line {line}: {reason}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("'{}' holds no prompts", path.display())]
    Empty { path: PathBuf },
}

impl RlPrompt {
    pub fn new(character: String, context: Vec<ContextMessage>) -> Self {
        let digest = sha256_hex(
            serde_json::to_string(&(&character, &context))
                .unwrap_or_default()
                .as_bytes(),
        );
        Self {
            id: digest.get(..16).unwrap_or(&digest).to_string(),
            character,
            context,
        }
    }

    /// The ChatML text the engine continues: the context, the assistant
    /// header and the `<system_thinking>` prefill, as in the chat.
    pub fn render(&self) -> String {
        her_core::chatml::context_prompt(&self.context)
    }
}

/// One JSONL line: `messages` (a trailing assistant turn is the answer and
/// is dropped) or `prompt`, with an optional `character`.
#[derive(Deserialize)]
struct Line {
    #[serde(default)]
    messages: Option<Vec<ContextMessage>>,
    #[serde(default)]
    prompt: Option<Vec<ContextMessage>>,
    #[serde(default)]
    character: Option<String>,
}

pub fn read_prompts_jsonl(path: &Path) -> Result<Vec<RlPrompt>, PromptError> {
    let mut out = Vec::new();
    for raw in read::lines(path, Kind::Dataset)? {
        let raw = raw?;
        if raw.is_blank() {
            continue;
        }
        let bad = |reason: String| PromptError::Line {
            path: path.to_path_buf(),
            line: raw.number,
            reason,
        };
        let line: Line = serde_json::from_str(raw.text().map_err(bad)?).map_err(|e| {
            bad(format!(
                "not a {{\"messages\": [...]}} or {{\"prompt\": [...]}} object: {e}"
            ))
        })?;
        let mut context = line
            .messages
            .or(line.prompt)
            .ok_or_else(|| bad("has neither \"messages\" nor \"prompt\"".into()))?;
        if context.last().is_some_and(|m| m.role == Role::Assistant) {
            context.pop();
        }
        if !context.iter().any(|m| m.role == Role::User) {
            return Err(bad("has no user turn to reply to".into()));
        }
        out.push(RlPrompt::new(line.character.unwrap_or_default(), context));
    }
    if out.is_empty() {
        return Err(PromptError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(out)
}

/// Keeps the first of prompts with the same id (the same content).
pub fn dedup(prompts: Vec<RlPrompt>) -> Vec<RlPrompt> {
    let mut seen = std::collections::HashSet::new();
    prompts
        .into_iter()
        .filter(|p| seen.insert(p.id.clone()))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn both_layouts_read_and_a_trailing_answer_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.jsonl");
        std::fs::write(
            &path,
            concat!(
                r#"{"messages":[{"role":"system","content":"S"},{"role":"user","content":"Hi"},{"role":"assistant","content":"A"}],"character":"Lizzy"}"#,
                "\n\n",
                r#"{"prompt":[{"role":"user","content":"Hi"}]}"#,
                "\n"
            ),
        )
        .unwrap();
        let prompts = read_prompts_jsonl(&path).unwrap();
        assert_eq!(prompts.len(), 2);
        assert_eq!(prompts[0].character, "Lizzy");
        assert_eq!(prompts[0].context.len(), 2);
        assert_eq!(
            prompts[0].render(),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<system_thinking>"
        );
        assert_ne!(prompts[0].id, prompts[1].id);
        let again = dedup(vec![prompts[1].clone(), prompts[1].clone()]);
        assert_eq!(again.len(), 1);
    }

    #[test]
    fn bad_lines_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.jsonl");
        std::fs::write(&path, "{\"prompt\":[{\"role\":\"user\",\"content\":\"Hi\"}]}\n{\"prompt\":[{\"role\":\"system\",\"content\":\"S\"}]}\n").unwrap();
        let err = read_prompts_jsonl(&path).unwrap_err().to_string();
        assert!(
            err.contains("p.jsonl' line 2") && err.contains("no user turn"),
            "{err}"
        );
        std::fs::write(&path, "\n").unwrap();
        assert!(
            read_prompts_jsonl(&path)
                .unwrap_err()
                .to_string()
                .contains("no prompts")
        );
        std::fs::write(&path, "[1]\n").unwrap();
        assert!(
            read_prompts_jsonl(&path)
                .unwrap_err()
                .to_string()
                .contains("line 1")
        );
    }
}
