//! Live human ratings for RL, through the run folder so the trainer and the
//! chat can run in different terminals: the trainer writes the replies it
//! sampled as `ratings/step-N.ask.json` and waits; the TUI (`/runs`, then
//! `r`) shows them and writes `ratings/step-N.answer.json` with 1–5 stars
//! for each. Both files are written atomically and kept, so the run can be
//! audited.

use her_core::fsutil::IoError;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::super::run::RunError;
use her_core::fsutil::read::{self, Kind};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AskGroup {
    pub prompt_id: String,
    pub character: String,
    /// The turn being answered (the last user message).
    pub last_turn: String,
    /// Raw replies, plan included.
    pub candidates: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ask {
    pub step: u64,
    pub groups: Vec<AskGroup>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub step: u64,
    /// Stars (1–5) per group, per candidate.
    pub stars: Vec<Vec<u8>>,
    pub annotator: String,
}

fn dir(run: &Path) -> PathBuf {
    run.join("ratings")
}

fn ask_path(run: &Path, step: u64) -> PathBuf {
    dir(run).join(format!("step-{step:06}.ask.json"))
}

fn answer_path(run: &Path, step: u64) -> PathBuf {
    dir(run).join(format!("step-{step:06}.answer.json"))
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), RunError> {
    let io = |cause| RunError::Io(IoError::new("write", path.to_path_buf(), cause));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let bytes = serde_json::to_vec_pretty(value)?;
    her_core::fsutil::write_atomic(path, &bytes, true).map_err(io)
}

/// Publishes the replies of `ask.step` for rating.
pub fn publish(run: &Path, ask: &Ask) -> Result<(), RunError> {
    write_json(&ask_path(run, ask.step), ask)
}

/// Whether `answer` fits `ask`: a rating for every candidate, each 1–5.
pub fn check(ask: &Ask, answer: &Answer) -> Result<(), String> {
    if answer.step != ask.step || answer.stars.len() != ask.groups.len() {
        return Err(format!(
            "the answer is for step {} with {} groups; the question is step {} with {}",
            answer.step,
            answer.stars.len(),
            ask.step,
            ask.groups.len()
        ));
    }
    for (g, (stars, group)) in answer.stars.iter().zip(&ask.groups).enumerate() {
        if stars.len() != group.candidates.len() {
            return Err(format!(
                "group {}: {} ratings for {} replies",
                g + 1,
                stars.len(),
                group.candidates.len()
            ));
        }
        if let Some(bad) = stars.iter().find(|s| !(1..=5).contains(*s)) {
            return Err(format!("group {}: {bad} is not 1-5 stars", g + 1));
        }
    }
    Ok(())
}

/// Saves the user's answer (the TUI's side).
pub fn respond(run: &Path, answer: &Answer) -> Result<(), RunError> {
    write_json(&answer_path(run, answer.step), answer)
}

/// The oldest question of `run` still without an answer.
pub fn pending(run: &Path) -> Option<Ask> {
    let mut asks: Vec<PathBuf> = std::fs::read_dir(dir(run))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".ask.json"))
        .collect();
    asks.sort();
    asks.into_iter().find_map(|p| {
        let ask: Ask = serde_json::from_slice(&read::bytes(&p, Kind::RunRecord).ok()?).ok()?;
        (!answer_path(run, ask.step).exists()).then_some(ask)
    })
}

/// Waits for a valid answer to `ask`; `None` when `stop` is set first. An
/// answer that does not fit is logged and waited past (it is left in place
/// for the user to see).
pub fn wait(run: &Path, ask: &Ask, stop: &AtomicBool) -> Option<Answer> {
    let path = answer_path(run, ask.step);
    let mut warned = false;
    loop {
        if let Ok(bytes) = read::bytes(&path, Kind::RunRecord) {
            match serde_json::from_slice::<Answer>(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|a| check(ask, &a).map(|()| a))
            {
                Ok(answer) => return Some(answer),
                Err(reason) if !warned => {
                    tracing::warn!(path = %path.display(), %reason, "unusable rating answer");
                    warned = true;
                }
                Err(_) => {}
            }
        }
        if stop.load(Ordering::SeqCst) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ask() -> Ask {
        Ask {
            step: 3,
            groups: vec![AskGroup {
                prompt_id: "p".into(),
                character: "Lizzy".into(),
                last_turn: "Hi".into(),
                candidates: vec!["a".into(), "b".into()],
            }],
        }
    }

    #[test]
    fn a_published_question_is_pending_until_answered() {
        let run = tempfile::tempdir().unwrap();
        assert_eq!(pending(run.path()), None);
        publish(run.path(), &ask()).unwrap();
        assert_eq!(pending(run.path()), Some(ask()));
        let answer = Answer {
            step: 3,
            stars: vec![vec![5, 1]],
            annotator: "me".into(),
        };
        respond(run.path(), &answer).unwrap();
        assert_eq!(pending(run.path()), None);
        assert_eq!(
            wait(run.path(), &ask(), &AtomicBool::new(false)),
            Some(answer)
        );
    }

    #[test]
    fn answers_that_do_not_fit_are_refused() {
        let a = |stars: Vec<Vec<u8>>| Answer {
            step: 3,
            stars,
            annotator: "me".into(),
        };
        assert!(check(&ask(), &a(vec![vec![5, 1]])).is_ok());
        assert!(
            check(&ask(), &a(vec![vec![5]]))
                .unwrap_err()
                .contains("1 ratings for 2")
        );
        assert!(
            check(&ask(), &a(vec![vec![5, 0]]))
                .unwrap_err()
                .contains("not 1-5")
        );
        assert!(check(&ask(), &a(vec![])).is_err());
        // A stop while waiting returns at once.
        let run = tempfile::tempdir().unwrap();
        assert_eq!(wait(run.path(), &ask(), &AtomicBool::new(true)), None);
    }
}
