//! Reading run folders back: what a run is, how far it got, its loss curve,
//! and which adapter file to load from it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use her_core::fsutil::read::{self, Kind};

/// One run as a list or a chart shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub name: String,
    pub path: PathBuf,
    /// (step, loss) of every optimizer step logged.
    pub losses: Vec<(f64, f64)>,
    /// (step, held-out loss).
    pub evals: Vec<(f64, f64)>,
    pub total_steps: u64,
    pub tokens_per_s: f64,
    pub peak_mib: f64,
    /// The finished adapter, when the run completed.
    pub adapter: Option<PathBuf>,
    /// The newest checkpoint folder, if any.
    pub checkpoint: Option<PathBuf>,
    /// "sft", "dpo", "kto" or "rl" (from `run.json`; "" when unknown).
    pub kind: String,
    /// RL: (step, mean reward) and (step, KL to the reference).
    pub rewards: Vec<(f64, f64)>,
    pub kls: Vec<(f64, f64)>,
    /// RL: the step whose replies wait for the user's stars.
    pub awaiting_ratings: Option<u64>,
}

impl RunSummary {
    pub fn steps_done(&self) -> u64 {
        self.losses.last().map_or(0, |(s, _)| *s as u64)
    }

    pub fn status(&self) -> &'static str {
        match (&self.adapter, self.steps_done()) {
            (Some(_), _) => "done",
            (None, 0) => "starting",
            (None, _) => "running or stopped",
        }
    }
}

#[derive(Deserialize)]
struct Line {
    kind: String,
    step: u64,
    #[serde(default)]
    loss: f64,
    #[serde(default)]
    eval_loss: f64,
    #[serde(default)]
    total_steps: u64,
    #[serde(default)]
    tokens_per_s: f64,
    #[serde(default)]
    peak_mib: f64,
    #[serde(default)]
    reward_mean: Option<f64>,
    #[serde(default)]
    kl: Option<f64>,
    #[serde(default)]
    rollout_tokens_per_s: Option<f64>,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    kind: String,
}

/// Reads one run folder; `None` if it is not a run (no `run.json`).
pub fn read_run(path: &Path) -> Option<RunSummary> {
    if !path.join("run.json").is_file() {
        return None;
    }
    let mut run = RunSummary {
        name: path.file_name()?.to_string_lossy().into_owned(),
        path: path.to_path_buf(),
        losses: Vec::new(),
        evals: Vec::new(),
        total_steps: 0,
        tokens_per_s: 0.0,
        peak_mib: 0.0,
        adapter: Some(path.join("adapter.gguf")).filter(|p| p.is_file()),
        checkpoint: super::checkpoint::latest(&path.join("checkpoints")),
        kind: read::bytes(&path.join("run.json"), Kind::RunRecord)
            .ok()
            .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
            .map(|m| m.kind)
            .unwrap_or_default(),
        rewards: Vec::new(),
        kls: Vec::new(),
        awaiting_ratings: super::rl::human::pending(path).map(|ask| ask.step),
    };
    // A line being written right now may be cut: skip what does not parse.
    for line in read::jsonl_records::<Line>(&path.join("metrics.jsonl"), Kind::RunRecord) {
        match line.kind.as_str() {
            "step" => {
                let x = line.step as f64;
                run.losses.push((x, line.loss));
                run.total_steps = line.total_steps;
                run.tokens_per_s = line.rollout_tokens_per_s.unwrap_or(line.tokens_per_s);
                run.peak_mib = line.peak_mib;
                if let Some(r) = line.reward_mean {
                    run.rewards.push((x, r));
                }
                if let Some(kl) = line.kl {
                    run.kls.push((x, kl));
                }
            }
            "eval" => run.evals.push((line.step as f64, line.eval_loss)),
            _ => {}
        }
    }
    Some(run)
}

/// Every run under `runs`, newest first by name (names start with a date).
pub fn list_runs(runs: &Path) -> Vec<RunSummary> {
    let Ok(entries) = std::fs::read_dir(runs) else {
        return Vec::new();
    };
    let mut list: Vec<RunSummary> = entries
        .filter_map(Result::ok)
        .filter_map(|e| read_run(&e.path()))
        .collect();
    list.sort_by(|a, b| b.name.cmp(&a.name));
    list
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_steps_evals_and_skips_a_cut_line() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("2026-11-25-x-sft");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("run.json"), "{}").unwrap();
        std::fs::write(
            run.join("metrics.jsonl"),
            "{\"kind\":\"eval\",\"step\":0,\"eval_loss\":3.0}\n\
             {\"kind\":\"step\",\"step\":1,\"loss\":2.5,\"total_steps\":4,\"tokens_per_s\":90.0,\"peak_mib\":512.0}\n\
             {\"kind\":\"step\",\"step\":2,\"loss\":2.0,\"total_steps\":4}\n\
             {\"kind\":\"step\",\"st",
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("not-a-run")).unwrap();
        let runs = list_runs(dir.path());
        assert_eq!(runs.len(), 1);
        let r = &runs[0];
        assert_eq!(r.losses, vec![(1.0, 2.5), (2.0, 2.0)]);
        assert_eq!(r.evals, vec![(0.0, 3.0)]);
        assert_eq!((r.steps_done(), r.total_steps), (2, 4));
        assert_eq!(r.status(), "running or stopped");
        assert!(r.rewards.is_empty() && r.awaiting_ratings.is_none());
    }

    #[test]
    fn an_rl_run_has_its_reward_and_kl_curves_and_a_pending_question() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("r");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("run.json"), "{\"kind\":\"rl\"}").unwrap();
        std::fs::write(
            run.join("metrics.jsonl"),
            "{\"kind\":\"step\",\"step\":1,\"loss\":0.1,\"reward_mean\":0.25,\"kl\":0.0,\"rollout_tokens_per_s\":120.0}\n",
        )
        .unwrap();
        let ask = crate::rl::human::Ask {
            step: 2,
            groups: Vec::new(),
        };
        crate::rl::human::publish(&run, &ask).unwrap();
        let r = read_run(&run).unwrap();
        assert_eq!(r.kind, "rl");
        assert_eq!(
            (r.rewards.clone(), r.kls.clone()),
            (vec![(1.0, 0.25)], vec![(1.0, 0.0)])
        );
        assert_eq!((r.tokens_per_s, r.awaiting_ratings), (120.0, Some(2)));
    }
}
