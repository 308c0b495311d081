//! The evaluation as an SVG image for sharing: grouped bars per dimension
//! (one colour per system) with 95% interval whiskers on a 0–100 axis.

use std::fmt::Write;

use super::results::EvalResults;
use super::score::column_titles;

const WIDTH: f64 = 820.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 56.0;
const BOTTOM: f64 = 70.0;
const COLOURS: [&str; 6] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1",
];

/// XML-escapes text for an element or attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// y coordinate of a score in 0..=100.
fn y_of(score: f64) -> f64 {
    let plot = HEIGHT - TOP - BOTTOM;
    TOP + plot * (1.0 - score.clamp(0.0, 100.0) / 100.0)
}

/// The chart as a standalone SVG document.
pub fn chart_svg(results: &EvalResults) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(
        s,
        "<rect width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#ffffff\"/>"
    );
    let judge = results
        .judge
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let _ = writeln!(
        s,
        "<text x=\"{LEFT}\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{}</text>",
        escape(&format!(
            "her eval '{}': mini-CoSER scores (95% intervals)",
            results.name
        ))
    );
    let _ = writeln!(
        s,
        "<text x=\"{LEFT}\" y=\"40\" fill=\"#555555\">{}</text>",
        escape(&format!(
            "{} scene(s) × {} seed(s), judge {judge}",
            results.scenes.len(),
            results.settings.seeds.len()
        ))
    );
    // Grid and axis labels.
    for tick in (0..=100).step_by(20) {
        let y = y_of(f64::from(tick));
        let _ = writeln!(
            s,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#dddddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555555\">{tick}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0
        );
    }
    let titles = column_titles();
    let groups = titles.len() as f64;
    let group_width = (WIDTH - LEFT - RIGHT) / groups;
    let systems = results.systems.len().max(1) as f64;
    let bar = (group_width * 0.8 / systems).min(48.0);
    for (g, title) in titles.iter().enumerate() {
        let centre = LEFT + group_width * (g as f64 + 0.5);
        let start = centre - bar * systems / 2.0;
        for (k, system) in results.systems.iter().enumerate() {
            let Some(column) = system.summary.get(g) else {
                continue;
            };
            let colour = COLOURS[k % COLOURS.len()];
            let x = start + bar * k as f64;
            let top = y_of(column.mean);
            let _ = writeln!(
                s,
                "<rect x=\"{:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\">\
                 <title>{}</title></rect>",
                x + 1.0,
                bar - 2.0,
                y_of(0.0) - top,
                escape(&format!(
                    "{} · {}: {:.1} [{:.1}, {:.1}]",
                    system.label, title, column.mean, column.low, column.high
                ))
            );
            let mid = x + bar / 2.0;
            let (lo, hi) = (y_of(column.low), y_of(column.high));
            let _ = writeln!(
                s,
                "<path d=\"M{mid:.1} {lo:.1}V{hi:.1}M{:.1} {lo:.1}h{:.1}M{:.1} {hi:.1}h{:.1}\" \
                 stroke=\"#222222\" stroke-width=\"1.5\" fill=\"none\"/>",
                mid - 4.0,
                8.0,
                mid - 4.0,
                8.0
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{centre:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            y_of(0.0) + 18.0,
            escape(title)
        );
    }
    // Legend.
    let mut x = LEFT;
    let y = HEIGHT - 22.0;
    for (k, system) in results.systems.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let _ = writeln!(
            s,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{colour}\"/>\
             <text x=\"{:.1}\" y=\"{y:.1}\">{}</text>",
            y - 10.0,
            x + 16.0,
            escape(&system.label)
        );
        x += 30.0 + 7.0 * system.label.chars().count() as f64;
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::results::tests::{results, system};

    #[test]
    fn bars_whiskers_and_escaped_labels() {
        let r = results(vec![
            system("base", &[[3, 2, 1, 0], [2, 2, 2, 2]]),
            system("<lizzy & co>", &[[1, 1, 1, 0], [1, 2, 1, 1]]),
        ]);
        let svg = chart_svg(&r);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>\n"));
        // 5 groups × 2 systems bars (+ the background and 2 legend squares).
        assert_eq!(svg.matches("<rect").count(), 10 + 1 + 2);
        assert_eq!(svg.matches("<path").count(), 10);
        assert!(svg.contains("&lt;lizzy &amp; co&gt;") && !svg.contains("<lizzy"));
        for title in column_titles() {
            assert!(svg.contains(&format!(">{title}</text>")));
        }
        assert_eq!(chart_svg(&r), svg);
    }

    #[test]
    fn scores_map_onto_the_plot() {
        assert_eq!(y_of(100.0), TOP);
        assert_eq!(y_of(0.0), HEIGHT - BOTTOM);
        assert_eq!(y_of(150.0), TOP);
    }
}
