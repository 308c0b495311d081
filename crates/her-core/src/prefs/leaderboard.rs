//! `her prefs leaderboard`: which model or adapter writes the preferred
//! replies. Players are what produced the candidates (from provenance);
//! every A/B pair between two different players is a game, fitted with
//! Bradley–Terry, with bootstrap intervals, overall and per character.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::pairs::dedup;
use super::record::{PreferencePair, PreferenceRecord, Provenance, Verdict};
use super::stats::{
    Comparison, Interval, Outcome, StatsError, bootstrap_bt, elo_from_score, fit_bt,
};

/// The default bootstrap seed: fixed so a report regenerates identically.
pub const DEFAULT_SEED: u64 = 0x4845_525f_4c42; // "HER_LB"

/// Weight of a both-bad verdict, counted as a tie. Chatbot Arena counts
/// "both bad" as a tie too: neither reply won, so it is evidence the two are
/// close. But weaker evidence than a real tie: the annotator rejected both
/// rather than weighing them, and two failures can miss by very different
/// amounts. Half a tie keeps that information without letting a pile of
/// bad prompts pull every player to the middle. (Dropping them instead would
/// also drop the signal that two adapters fail on the same prompts.)
pub const BOTH_BAD_WEIGHT: f64 = 0.5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderboardOptions {
    /// Adapter sha256 (in full, or its first 12 hex digits) → a human name,
    /// e.g. from `queue::adapter_labels`.
    pub labels: BTreeMap<String, String>,
    pub resamples: usize,
    pub seed: u64,
}

impl Default for LeaderboardOptions {
    fn default() -> Self {
        Self {
            labels: BTreeMap::new(),
            resamples: 1000,
            seed: DEFAULT_SEED,
        }
    }
}

/// The player that produced a reply: an adapter (by label or by the first
/// 12 hex digits of its sha256), else the base model.
pub fn player_of(prov: &Provenance, labels: &BTreeMap<String, String>) -> String {
    match &prov.adapter_sha256 {
        Some(sha) => {
            let short: String = sha.chars().take(12).collect();
            let label = labels.get(sha).or_else(|| labels.get(&short));
            label.cloned().unwrap_or_else(|| format!("adapter:{short}"))
        }
        None => format!("base:{}", prov.model),
    }
}

/// One player's line on a board.
#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    pub player: String,
    /// Elo-like: 1000 is the board's average, +400 is 10:1 odds.
    pub score: f64,
    /// 95% bootstrap interval of `score`.
    pub ci_low: f64,
    pub ci_high: f64,
    /// Centred Bradley–Terry log-strength behind `score`.
    pub log_strength: f64,
    pub wins: usize,
    pub losses: usize,
    pub ties: usize,
    pub both_bad: usize,
    /// Games played: wins + losses + ties + both bad.
    pub n: usize,
}

/// The standings of one set of pairs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Board {
    /// Best first (by score, then by name).
    pub standings: Vec<Standing>,
    /// Pairs between two different players that were counted.
    pub games: usize,
    /// Pairs without provenance on one side or both (an edit, old records).
    pub skipped_no_provenance: usize,
    /// Pairs whose two replies came from one player (e.g. two seeds of one
    /// adapter): no information on who is better.
    pub skipped_same_player: usize,
    /// Whether the full-data fit converged.
    pub converged: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Leaderboard {
    pub overall: Board,
    /// Characters as written in the records (trimmed).
    pub by_character: BTreeMap<String, Board>,
    pub resamples: usize,
    pub seed: u64,
}

/// Builds the leaderboard from a log's records. Ratings are ignored; pairs
/// go through [`dedup`] first, so an annotator's changed mind counts once.
/// Which annotators count is the caller's choice (see `Filter`).
pub fn leaderboard(
    records: &[PreferenceRecord],
    options: &LeaderboardOptions,
) -> Result<Leaderboard, StatsError> {
    let pairs: Vec<PreferencePair> = dedup(records.to_vec())
        .into_iter()
        .filter_map(|r| match r {
            PreferenceRecord::Pair(p) => Some(p),
            PreferenceRecord::Rating(_) => None,
        })
        .collect();
    let all: Vec<&PreferencePair> = pairs.iter().collect();
    let mut characters: BTreeMap<String, Vec<&PreferencePair>> = BTreeMap::new();
    for p in &pairs {
        characters
            .entry(p.character.trim().to_string())
            .or_default()
            .push(p);
    }
    let mut by_character = BTreeMap::new();
    for (character, pairs) in characters {
        by_character.insert(character, board(&pairs, options)?);
    }
    Ok(Leaderboard {
        overall: board(&all, options)?,
        by_character,
        resamples: options.resamples,
        seed: options.seed,
    })
}

/// A game: the two players in cand_1, cand_2 order and the verdict.
type Game = (String, String, Verdict);

fn board(pairs: &[&PreferencePair], options: &LeaderboardOptions) -> Result<Board, StatsError> {
    let mut out = Board::default();
    let mut games: Vec<Game> = Vec::new();
    for p in pairs {
        let (Some(a), Some(b)) = (&p.cand_1_provenance, &p.cand_2_provenance) else {
            out.skipped_no_provenance += 1;
            continue;
        };
        let (a, b) = (player_of(a, &options.labels), player_of(b, &options.labels));
        if a == b {
            out.skipped_same_player += 1;
        } else {
            games.push((a, b, p.verdict));
        }
    }
    out.games = games.len();
    if games.is_empty() {
        return Ok(out);
    }
    // Players in name order, so indices (and the fit) do not depend on the
    // order of the log.
    let names: Vec<&str> = games
        .iter()
        .flat_map(|(a, b, _)| [a.as_str(), b.as_str()])
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let index = |name: &str| names.binary_search(&name).unwrap_or(0);
    let comparisons: Vec<Comparison> = games
        .iter()
        .map(|(a, b, v)| comparison(index(a), index(b), *v))
        .collect();
    let fit = fit_bt(&comparisons, names.len())?;
    let intervals = bootstrap_bt(&comparisons, names.len(), options.resamples, options.seed)?;
    out.converged = fit.converged;
    out.standings = names
        .iter()
        .zip(intervals)
        .map(|(name, interval)| standing(name, interval, &games))
        .collect();
    out.standings.sort_by(|x, y| {
        y.score
            .total_cmp(&x.score)
            .then_with(|| x.player.cmp(&y.player))
    });
    Ok(out)
}

fn comparison(a: usize, b: usize, verdict: Verdict) -> Comparison {
    match verdict {
        Verdict::Cand1 => Comparison::new(a, b, Outcome::AWins),
        Verdict::Cand2 => Comparison::new(a, b, Outcome::BWins),
        Verdict::Tie => Comparison::new(a, b, Outcome::Tie),
        Verdict::BothBad => Comparison::weighted(a, b, Outcome::Tie, BOTH_BAD_WEIGHT),
    }
}

/// A player's line: the interval (its point is the full-data fit) on the
/// Elo-like scale, and the raw tallies.
fn standing(name: &str, interval: Interval, games: &[Game]) -> Standing {
    let elo = interval.map(elo_from_score);
    let mut s = Standing {
        player: name.to_string(),
        score: elo.point,
        ci_low: elo.low,
        ci_high: elo.high,
        log_strength: interval.point,
        wins: 0,
        losses: 0,
        ties: 0,
        both_bad: 0,
        n: 0,
    };
    for (a, b, verdict) in games {
        // The verdict from this player's side; other games pass by.
        let mine = if a == name {
            *verdict
        } else if b == name {
            verdict.swapped()
        } else {
            continue;
        };
        s.n += 1;
        match mine {
            Verdict::Cand1 => s.wins += 1,
            Verdict::Cand2 => s.losses += 1,
            Verdict::Tie => s.ties += 1,
            Verdict::BothBad => s.both_bad += 1,
        }
    }
    s
}

impl Leaderboard {
    /// A plain-text report for the terminal: the overall board, then one per
    /// character.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Leaderboard: Bradley-Terry on an Elo-like scale (1000 = average; +400 = 10:1 odds)"
        );
        let _ = writeln!(
            out,
            "95% bootstrap intervals from {} resamples (seed {}); both bad counts as half a tie",
            self.resamples, self.seed
        );
        let _ = writeln!(out, "\nAll characters");
        self.overall.render_into(&mut out);
        for (character, board) in &self.by_character {
            let _ = writeln!(out, "\n{character}");
            board.render_into(&mut out);
        }
        out
    }
}

impl Board {
    fn render_into(&self, out: &mut String) {
        if self.standings.is_empty() {
            let _ = writeln!(out, "  no games between different players");
        } else {
            self.render_table(out);
        }
        let _ = writeln!(out, "  {}", self.footer());
    }

    fn render_table(&self, out: &mut String) {
        let width = self
            .standings
            .iter()
            .map(|s| s.player.chars().count())
            .max()
            .unwrap_or(0)
            .max("player".len());
        let _ = writeln!(
            out,
            "  {:>3}  {:<width$}  {:>5}  {:>11}  {:>4}  {:>4}  {:>4}  {:>4}  {:>5}",
            "#", "player", "score", "95% CI", "W", "L", "T", "BB", "n"
        );
        for (rank, s) in self.standings.iter().enumerate() {
            let ci = format!("{:.0}-{:.0}", s.ci_low, s.ci_high);
            let _ = writeln!(
                out,
                "  {:>3}  {:<width$}  {:>5.0}  {:>11}  {:>4}  {:>4}  {:>4}  {:>4}  {:>5}",
                rank + 1,
                s.player,
                s.score,
                ci,
                s.wins,
                s.losses,
                s.ties,
                s.both_bad,
                s.n
            );
        }
        if !self.converged {
            let _ = writeln!(out, "  (the fit did not fully converge)");
        }
    }

    fn footer(&self) -> String {
        format!(
            "{} games; skipped {} pairs without provenance on both sides, {} same-player pairs",
            self.games, self.skipped_no_provenance, self.skipped_same_player
        )
    }
}

#[cfg(test)]
mod tests;
