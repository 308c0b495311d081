use super::*;
use crate::prefs::test_support::{pair, provenance};

fn adapter(sha: &str) -> Provenance {
    let mut p = provenance("P");
    p.adapter_sha256 = Some(sha.into());
    p
}

fn base(model: &str) -> Provenance {
    let mut p = provenance("P");
    p.model = model.into();
    p
}

/// Game `n` in `character` between `first` and `second` (in that
/// candidate order); unique texts, so dedup keeps every game.
fn game(
    character: &str,
    n: usize,
    first: &Provenance,
    second: &Provenance,
    verdict: Verdict,
) -> PreferenceRecord {
    let (x, y) = (format!("{character} x{n}"), format!("{character} y{n}"));
    let mut p = pair(&format!("{character}-{n}"), &x, &y, verdict);
    p.character = character.into();
    p.cand_1_provenance = Some(first.clone());
    p.cand_2_provenance = Some(second.clone());
    PreferenceRecord::Pair(p)
}

/// `games` games in which `strong` wins `wins` times; the side it is
/// shown on alternates.
fn series(
    character: &str,
    strong: &Provenance,
    weak: &Provenance,
    games: usize,
    wins: usize,
) -> Vec<PreferenceRecord> {
    (0..games)
        .map(|i| {
            let strong_won = i < wins;
            if i % 2 == 0 {
                let v = if strong_won {
                    Verdict::Cand1
                } else {
                    Verdict::Cand2
                };
                game(character, i, strong, weak, v)
            } else {
                let v = if strong_won {
                    Verdict::Cand2
                } else {
                    Verdict::Cand1
                };
                game(character, i, weak, strong, v)
            }
        })
        .collect()
}

fn find<'a>(board: &'a Board, player: &str) -> Option<&'a Standing> {
    board.standings.iter().find(|s| s.player == player)
}

#[test]
fn players_are_adapters_or_base_models() {
    let mut labels = BTreeMap::new();
    assert_eq!(player_of(&base("her-32b"), &labels), "base:her-32b");
    let sha = "0123456789abcdef0123";
    assert_eq!(player_of(&adapter(sha), &labels), "adapter:0123456789ab");
    assert_eq!(player_of(&adapter("é"), &labels), "adapter:é");
    labels.insert("0123456789ab".to_string(), "lora-v2".to_string());
    assert_eq!(player_of(&adapter(sha), &labels), "lora-v2");
    labels.insert(sha.to_string(), "lora-v2-full".to_string());
    assert_eq!(player_of(&adapter(sha), &labels), "lora-v2-full");
}

#[test]
fn a_player_winning_80_percent_ranks_first_with_a_separate_interval() -> Result<(), StatsError> {
    let a = adapter("aaaaaaaaaaaaaaaa");
    let b = base("her-32b");
    let records = series("Elizabeth", &a, &b, 100, 80);
    let board = leaderboard(&records, &LeaderboardOptions::default())?.overall;
    let players: Vec<&str> = board.standings.iter().map(|s| s.player.as_str()).collect();
    assert_eq!(players, ["adapter:aaaaaaaaaaaa", "base:her-32b"]);
    let (sa, sb) = (&board.standings[0], &board.standings[1]);
    assert!(sa.score > sb.score);
    assert!(
        sa.ci_low > sb.score && sb.ci_high < sa.score,
        "{sa:?} {sb:?}"
    );
    assert!(sa.ci_low < sa.score && sa.score < sa.ci_high);
    assert_eq!(
        (sa.wins, sa.losses, sa.ties, sa.both_bad, sa.n),
        (80, 20, 0, 0, 100)
    );
    assert_eq!((sb.wins, sb.losses, sb.n), (20, 80, 100));
    // 4:1 odds is ln 4 apart in log-strength (the small prior shrinks it
    // a little): about 240 Elo-like points.
    let gap = sa.log_strength - sb.log_strength;
    assert!(gap > 1.3 && gap < 4f64.ln(), "{gap}");
    assert!((sa.score + sb.score - 2000.0).abs() < 1e-9);
    assert!(board.converged);
    assert_eq!(board.games, 100);
    // Deterministic: the same records and seed give the same board.
    let again = leaderboard(&records, &LeaderboardOptions::default())?.overall;
    assert_eq!(board, again);
    Ok(())
}

#[test]
fn characters_get_their_own_boards() -> Result<(), StatsError> {
    let a = adapter("aaaaaaaaaaaaaaaa");
    let b = adapter("bbbbbbbbbbbbbbbb");
    let mut records = series("Elizabeth", &a, &b, 40, 32);
    records.extend(series(" Darcy ", &b, &a, 40, 32));
    let mut labels = BTreeMap::new();
    labels.insert("aaaaaaaaaaaaaaaa".to_string(), "lora-a".to_string());
    let options = LeaderboardOptions {
        labels,
        resamples: 200,
        seed: 7,
    };
    let lb = leaderboard(&records, &options)?;
    let top = |board: Option<&Board>| {
        board
            .and_then(|b| b.standings.first())
            .map(|s| s.player.clone())
    };
    assert_eq!(
        top(lb.by_character.get("Elizabeth")).as_deref(),
        Some("lora-a")
    );
    assert_eq!(
        top(lb.by_character.get("Darcy")).as_deref(),
        Some("adapter:bbbbbbbbbbbb")
    );
    assert_eq!(lb.by_character.len(), 2);
    // Overall they are even: 40 wins each.
    let overall = &lb.overall;
    assert!(overall.standings.iter().all(|s| s.wins == 40 && s.n == 80));
    let spread = overall.standings[0].score - overall.standings[1].score;
    assert!(spread.abs() < 1e-6, "{spread}");
    assert!(
        overall
            .standings
            .iter()
            .all(|s| s.ci_low < 1000.0 && s.ci_high > 1000.0)
    );
    Ok(())
}

#[test]
fn pairs_without_two_players_are_skipped_and_counted() -> Result<(), StatsError> {
    let a = adapter("aaaaaaaaaaaaaaaa");
    let b = base("her-32b");
    let mut records = series("Elizabeth", &a, &b, 6, 4);
    // Two seeds of one adapter.
    records.push(game(
        "Elizabeth",
        100,
        &a,
        &adapter("aaaaaaaaaaaaaaaa"),
        Verdict::Cand1,
    ));
    // An edit: the human-written side has no provenance.
    let mut edit = game("Elizabeth", 101, &a, &b, Verdict::Cand2);
    if let PreferenceRecord::Pair(p) = &mut edit {
        p.cand_2_provenance = None;
    }
    records.push(edit);
    let mut bare = game("Darcy", 102, &a, &b, Verdict::Cand1);
    if let PreferenceRecord::Pair(p) = &mut bare {
        p.cand_1_provenance = None;
        p.cand_2_provenance = None;
    }
    records.push(bare);
    // A duplicate of game 0 (same annotator, pair and context) counts once.
    records.push(records[0].clone());
    let lb = leaderboard(&records, &LeaderboardOptions::default())?;
    let o = &lb.overall;
    assert_eq!(
        (o.games, o.skipped_no_provenance, o.skipped_same_player),
        (6, 2, 1)
    );
    let darcy = lb.by_character.get("Darcy").cloned().unwrap_or_default();
    assert_eq!((darcy.games, darcy.skipped_no_provenance), (0, 1));
    assert!(darcy.standings.is_empty());
    Ok(())
}

#[test]
fn ties_and_both_bad_are_tallied_and_both_bad_weighs_half() -> Result<(), StatsError> {
    let a = adapter("aaaaaaaaaaaaaaaa");
    let b = base("her-32b");
    let c = base("her-8b");
    let mut records = vec![
        game("E", 0, &a, &b, Verdict::Cand1),
        game("E", 1, &b, &a, Verdict::Tie),
        game("E", 2, &a, &c, Verdict::BothBad),
        game("E", 3, &c, &b, Verdict::Cand2),
    ];
    let board = leaderboard(&records, &LeaderboardOptions::default())?.overall;
    let sa = find(&board, "adapter:aaaaaaaaaaaa").cloned();
    let tallies = sa.map(|s| (s.wins, s.losses, s.ties, s.both_bad, s.n));
    assert_eq!(tallies, Some((1, 0, 1, 1, 3)));
    let sc = find(&board, "base:her-8b").map(|s| (s.losses, s.both_bad, s.n));
    assert_eq!(sc, Some((1, 1, 2)));

    // Two both-bad games move the fit as much as one tie.
    let tie_fit = |extra: Vec<PreferenceRecord>| -> Result<Vec<f64>, StatsError> {
        let mut all = vec![game("E", 10, &a, &b, Verdict::Cand1)];
        all.extend(extra);
        let board = leaderboard(&all, &LeaderboardOptions::default())?.overall;
        Ok(board.standings.iter().map(|s| s.log_strength).collect())
    };
    let one_tie = tie_fit(vec![game("E", 11, &a, &b, Verdict::Tie)])?;
    let two_bad = tie_fit(vec![
        game("E", 11, &a, &b, Verdict::BothBad),
        game("E", 12, &b, &a, Verdict::BothBad),
    ])?;
    assert!(
        one_tie
            .iter()
            .zip(&two_bad)
            .all(|(x, y)| (x - y).abs() < 1e-9)
    );
    records.clear();
    assert_eq!(
        leaderboard(&records, &LeaderboardOptions::default())?.overall,
        Board::default()
    );
    Ok(())
}

#[test]
fn the_text_report_is_a_table_sorted_by_score() -> Result<(), StatsError> {
    let a = adapter("aaaaaaaaaaaaaaaa");
    let b = base("her-32b");
    let mut records = series("Elizabeth", &b, &a, 10, 7);
    records.push(game("Elizabeth", 50, &a, &a, Verdict::Cand1));
    let options = LeaderboardOptions {
        resamples: 100,
        ..LeaderboardOptions::default()
    };
    let lb = leaderboard(&records, &options)?;
    let text = lb.render_text();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[1].starts_with("95% bootstrap intervals from 100 resamples (seed "));
    assert_eq!(lines[3], "All characters");
    assert_eq!(
        lines[4],
        "    #  player                score       95% CI     W     L     T    BB      n"
    );
    let s = &lb.overall.standings;
    let row = |rank: usize, s: &Standing| {
        format!(
            "  {rank:>3}  {:<20}  {:>5.0}  {:>11}  {:>4}  {:>4}  {:>4}  {:>4}  {:>5}",
            s.player,
            s.score,
            format!("{:.0}-{:.0}", s.ci_low, s.ci_high),
            s.wins,
            s.losses,
            s.ties,
            s.both_bad,
            s.n
        )
    };
    assert_eq!(lines[5], row(1, &s[0]));
    assert!(
        lines[5].contains("base:her-32b") && lines[5].ends_with("   7     3     0     0     10")
    );
    assert_eq!(lines[6], row(2, &s[1]));
    assert_eq!(
        lines[7],
        "  10 games; skipped 0 pairs without provenance on both sides, 1 same-player pairs"
    );
    assert_eq!(lines[9], "Elizabeth");
    assert_eq!(lines.len(), 14);
    Ok(())
}
