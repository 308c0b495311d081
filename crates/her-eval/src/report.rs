//! The terminal report: the judge's calibration, then two tables — the
//! judge's scores and the rules' — with one row per dimension, one column per
//! system (mean and 95% interval), and each adapter's paired difference from
//! the first system (the base model, or the gate's baseline).

use super::bootstrap::COLUMNS;
use super::results::{ColumnSummary, EvalResults, SystemResult, UnitResult, paired_differences_of};
use super::score::column_titles;

fn short_hash(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The report as text (also saved as `report.txt`).
pub fn report_table(results: &EvalResults) -> String {
    let s = &results.settings;
    let mut out = format!(
        "evaluation '{}' · {} scene(s) × {} seed(s) · up to {} turns · next speaker: {}\n",
        results.name,
        results.scenes.len(),
        s.seeds.len(),
        s.rounds,
        s.next_speaker
    );
    out.push_str(&format!(
        "model {} ({}…) · judge {} ({}…): scores from different judges are not comparable\n",
        file_name(&results.model.path),
        short_hash(&results.model.sha256),
        file_name(&results.judge.path),
        short_hash(&results.judge.sha256),
    ));
    match &results.judge_calibration {
        Some(status) => out.push_str(&status.report_lines()),
        None => out.push_str("judge calibration: not recorded in these results\n"),
    }
    for system in &results.systems {
        if let Some(a) = &system.adapter {
            out.push_str(&format!(
                "adapter {}: {} ({}…)\n",
                system.label,
                a.path.display(),
                short_hash(&a.sha256)
            ));
        }
    }
    out.push_str("\nthe judge's scores\n");
    out.push_str(&table(
        results,
        |system| &system.summary,
        |u| Some(u.scores.columns()),
    ));
    if results.systems.iter().any(|s| !s.rule_summary.is_empty()) {
        out.push_str("\nthe rules' scores (flaws found without a model, same formula)\n");
        out.push_str(&table(
            results,
            |system| &system.rule_summary,
            UnitResult::rule_columns,
        ));
    }
    out.push_str(
        "\nscore = clamp(100 − 5·(Σ flaw severity − 0.3·actor turns), 0, 100); [95% bootstrap \
         interval]; Δ = paired difference from the first column\n",
    );
    out
}

/// One row per dimension, one column per system, then the differences.
fn table(
    results: &EvalResults,
    summary: impl Fn(&SystemResult) -> &Vec<ColumnSummary>,
    columns: impl Fn(&UnitResult) -> Option<[f64; COLUMNS]>,
) -> String {
    const CELL: usize = 21;
    let s = &results.settings;
    let mut header = format!("{:<22}", "dimension");
    for system in &results.systems {
        header.push_str(&format!(" {:>CELL$}", clip(&system.label, CELL)));
    }
    let first = results.systems.first();
    let others: Vec<_> = results.systems.iter().skip(1).collect();
    for system in &others {
        let label = format!("Δ {}", clip(&system.label, CELL - 2));
        header.push_str(&format!(" {label:>CELL$}"));
    }
    let mut out = header.trim_end().to_string();
    out.push('\n');
    let differences: Vec<_> = others
        .iter()
        .map(|system| {
            first.and_then(|base| {
                paired_differences_of(base, system, s.resamples, s.bootstrap_seed, &columns).ok()
            })
        })
        .collect();
    for (i, title) in column_titles().iter().enumerate() {
        let mut row = format!("{title:<22}");
        for system in &results.systems {
            let cell = summary(system).get(i).map_or("—".to_string(), |c| {
                format!("{:.1} [{:.1}, {:.1}]", c.mean, c.low, c.high)
            });
            row.push_str(&format!(" {cell:>CELL$}"));
        }
        for d in &differences {
            let cell = d
                .as_ref()
                .and_then(|(_, ivs)| ivs.get(i))
                .map_or("—".to_string(), |iv| {
                    format!("{:+.1} [{:+.1}, {:+.1}]", iv.point, iv.low, iv.high)
                });
            row.push_str(&format!(" {cell:>CELL$}"));
        }
        out.push_str(row.trim_end());
        out.push('\n');
    }
    out
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let kept: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{kept}…")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::results::tests::{results, system};

    #[test]
    fn every_dimension_and_system_is_a_row_or_column() {
        let r = results(vec![
            system("base", &[[3, 2, 1, 0], [2, 2, 2, 2]]),
            system(
                "a-long-adapter-name-for-sure",
                &[[1, 1, 1, 0], [1, 2, 1, 1]],
            ),
        ]);
        let text = report_table(&r);
        for title in column_titles() {
            assert!(text.contains(title), "{title}\n{text}");
        }
        assert!(text.contains("not comparable"));
        assert!(text.contains("Δ a-long-adapter-nam…"));
        // The judge's table, then the rules' table.
        let overall: Vec<&str> = text.lines().filter(|l| l.starts_with("Overall")).collect();
        assert_eq!(overall.len(), 2, "{text}");
        for row in overall {
            assert_eq!(row.matches('[').count(), 3, "{row}");
        }
        assert!(text.contains("the rules' scores"));
        assert!(text.contains("judge calibration: not recorded"));
        assert_eq!(report_table(&r), text);
    }

    #[test]
    fn the_judges_calibration_is_shown() {
        let mut r = results(vec![system("base", &[[1, 1, 1, 1]])]);
        r.judge_calibration = Some(crate::CalibrationStatus::of(
            &"c".repeat(64),
            None,
            [0.75; 4],
            None,
        ));
        let text = report_table(&r);
        assert!(
            text.contains("judge calibration: uncalibrated (judge cccccccccccc…)")
                && text.contains("her eval calibrate"),
            "{text}"
        );
    }
}
