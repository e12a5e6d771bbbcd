//! Charts and badges as SVG text, drawn here so the site needs no charting library. Colours
//! are the Okabe–Ito palette (told apart with any common colour-vision deficiency), and never
//! the only signal: each series has its own marker and a label, each badge a symbol and a word.

use crate::outcome::Outcome;
use crate::report::html::escape;

/// Series colours (Okabe–Ito), and a marker shape per series.
const PALETTE: [&str; 7] = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"];

/// A marker of shape `n` (circle, square, triangle, diamond, cross, then again) at (x, y).
fn marker(n: usize, x: f64, y: f64, colour: &str) -> String {
    match n % 5 {
        0 => format!("<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4\" fill=\"{colour}\"/>"),
        1 => format!("<rect x=\"{:.1}\" y=\"{:.1}\" width=\"8\" height=\"8\" fill=\"{colour}\"/>", x - 4.0, y - 4.0),
        2 => format!(
            "<polygon points=\"{x:.1},{:.1} {:.1},{:.1} {:.1},{:.1}\" fill=\"{colour}\"/>",
            y - 5.0,
            x - 5.0,
            y + 4.0,
            x + 5.0,
            y + 4.0
        ),
        3 => format!(
            "<polygon points=\"{x:.1},{:.1} {:.1},{y:.1} {x:.1},{:.1} {:.1},{y:.1}\" fill=\"{colour}\"/>",
            y - 5.0,
            x + 5.0,
            y + 5.0,
            x - 5.0
        ),
        _ => format!(
            "<path d=\"M{:.1} {:.1}L{:.1} {:.1}M{:.1} {:.1}L{:.1} {:.1}\" stroke=\"{colour}\" stroke-width=\"2.5\"/>",
            x - 4.0,
            y - 4.0,
            x + 4.0,
            y + 4.0,
            x - 4.0,
            y + 4.0,
            x + 4.0,
            y - 4.0
        ),
    }
}

/// Pass rate (passing cells of those with a verdict) per release, a line per family:
/// `series` holds each family's rate per release in `releases`' order (`None`: no verdict).
pub fn pass_rate_chart(title: &str, releases: &[String], series: &[(String, Vec<Option<f64>>)]) -> String {
    let (left, top, step, height) = (40.0, 20.0, 36.0_f64, 160.0);
    let plot_width = step * releases.len().saturating_sub(1).max(1) as f64;
    let label_width = 8.0 * series.iter().map(|(n, _)| n.len()).max().unwrap_or(4) as f64 + 16.0;
    let (width, full_height) = (left + plot_width + label_width + 20.0, top + height + 70.0);
    let x = |i: usize| left + step * i as f64;
    let y = |rate: f64| top + height * (1.0 - rate);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" role=\"img\" width=\"{width:.0}\" height=\"{full_height:.0}\" viewBox=\"0 0 {width:.0} {full_height:.0}\" font-family=\"system-ui, sans-serif\" font-size=\"11\"><title>{}</title>",
        escape(title)
    );
    for pct in [0, 50, 100] {
        let at = y(pct as f64 / 100.0);
        out.push_str(&format!(
            "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{at:.1}\" y2=\"{at:.1}\" stroke=\"#d0d7de\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{pct}%</text>",
            left + plot_width,
            left - 6.0,
            at + 4.0
        ));
    }
    for (i, release) in releases.iter().enumerate() {
        out.push_str(&format!(
            "<text transform=\"translate({:.1},{:.1}) rotate(45)\">{}</text>",
            x(i) - 4.0,
            top + height + 14.0,
            escape(release)
        ));
    }
    for (n, (family, rates)) in series.iter().enumerate() {
        let colour = PALETTE[n % PALETTE.len()];
        let dash = ["", " stroke-dasharray=\"6 3\"", " stroke-dasharray=\"2 3\""][n % 3];
        // A release without a verdict breaks the line rather than inventing a value.
        let mut path = String::new();
        let mut pen_down = false;
        for (i, rate) in rates.iter().enumerate() {
            match rate {
                Some(r) => {
                    path.push_str(&format!("{}{:.1} {:.1}", if pen_down { "L" } else { "M" }, x(i), y(*r)));
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        out.push_str(&format!("<path d=\"{path}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/>"));
        for (i, rate) in rates.iter().enumerate() {
            if let Some(r) = rate {
                out.push_str(&format!(
                    "<g><title>{} {}: {:.0}% pass</title>{}</g>",
                    escape(family),
                    escape(&releases[i]),
                    r * 100.0,
                    marker(n, x(i), y(*r), colour)
                ));
            }
        }
    }
    // Each family's name at the right, level with its line's end (pushed apart where ends
    // meet): a line is told by its label and marker, not only its colour.
    let mut ends: Vec<(usize, f64)> = series
        .iter()
        .enumerate()
        .filter_map(|(n, (_, rates))| rates.iter().rev().find_map(|r| *r).map(|r| (n, y(r))))
        .collect();
    ends.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut below = f64::MIN;
    for (n, end) in ends {
        let at = end.max(below + 13.0);
        below = at;
        let colour = PALETTE[n % PALETTE.len()];
        out.push_str(&format!(
            "{}<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{colour}\" font-weight=\"600\">{}</text>",
            marker(n, left + plot_width + 14.0, at, colour),
            left + plot_width + 24.0,
            at + 4.0,
            escape(&series[n].0)
        ));
    }
    out.push_str("</svg>");
    out
}

/// A bar per item with its count written above it.
pub fn bar_chart(title: &str, items: &[(String, usize)]) -> String {
    let (left, top, step, height) = (30.0, 20.0, 28.0, 120.0);
    let max = items.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1) as f64;
    let width = left + step * items.len().max(1) as f64 + 20.0;
    let full_height = top + height + 80.0;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" role=\"img\" width=\"{width:.0}\" height=\"{full_height:.0}\" viewBox=\"0 0 {width:.0} {full_height:.0}\" font-family=\"system-ui, sans-serif\" font-size=\"11\"><title>{}</title><line x1=\"{left}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#57606a\"/>",
        escape(title),
        width - 10.0,
        top + height,
        top + height
    );
    for (i, (name, n)) in items.iter().enumerate() {
        let h = height * *n as f64 / max;
        let x = left + step * i as f64 + 4.0;
        out.push_str(&format!(
            "<g><title>{}: {n} cell(s) changed</title><rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{n}</text></g><text transform=\"translate({:.1},{:.1}) rotate(45)\">{}</text>",
            escape(name),
            top + height - h,
            step - 8.0,
            PALETTE[0],
            x + (step - 8.0) / 2.0,
            top + height - h - 4.0,
            x,
            top + height + 12.0,
            escape(name)
        ));
    }
    out.push_str("</svg>");
    out
}

/// What a badge says of an outcome: a symbol and a word, on its colour.
pub fn verdict(outcome: Outcome, label: &str) -> (String, &'static str, &'static str) {
    match outcome {
        Outcome::Pass => ("✓ works".into(), "#0a5f8f", "#fff"),
        Outcome::Fail => {
            (format!("✗ broken ({})", label.trim_start_matches("fail(").trim_end_matches(')')), "#a63d00", "#fff")
        }
        Outcome::Flaky => ("↻ flaky".into(), "#E69F00", "#000"),
        Outcome::InfraError => ("⚠ not judged (infra-error)".into(), "#8e4a78", "#fff"),
        Outcome::Skipped => ("– skipped".into(), "#5f6368", "#fff"),
    }
}

/// A flat badge: `left` on grey, `right` on `colour` in `ink`.
pub fn badge(left: &str, right: &str, colour: &str, ink: &str) -> String {
    // Widths from the character count: no font metrics at hand, so a generous 7px a character.
    let w = |t: &str| 7.0 * t.chars().count() as f64 + 12.0;
    let (lw, rw) = (w(left), w(right));
    let (l, r) = (escape(left), escape(right));
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"20\" role=\"img\" aria-label=\"{l}: {r}\"><title>{l}: {r}</title><rect width=\"{lw:.0}\" height=\"20\" fill=\"#555\"/><rect x=\"{lw:.0}\" width=\"{rw:.0}\" height=\"20\" fill=\"{colour}\"/><g font-family=\"Verdana, DejaVu Sans, sans-serif\" font-size=\"11\"><text x=\"6\" y=\"14\" fill=\"#fff\">{l}</text><text x=\"{tx:.0}\" y=\"14\" fill=\"{ink}\">{r}</text></g></svg>",
        width = lw + rw,
        tx = lw + 6.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_badge_says_its_verdict_in_words_and_escapes_names() {
        let (word, colour, ink) = verdict(Outcome::Fail, "fail(unauthorized)");
        assert_eq!(word, "✗ broken (unauthorized)");
        let svg = badge("ko v0.15.2 · ecr/<env>", &word, colour, ink);
        assert!(svg.contains("<title>ko v0.15.2 · ecr/&lt;env&gt;: ✗ broken (unauthorized)</title>"), "{svg}");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }

    #[test]
    fn a_release_without_a_verdict_breaks_the_line() {
        let releases: Vec<String> = ["v1", "v2", "v3"].iter().map(|s| s.to_string()).collect();
        let svg = pass_rate_chart("t", &releases, &[("ecr".into(), vec![Some(1.0), None, Some(0.5)])]);
        assert!(svg.contains("d=\"M40.0 20.0M112.0 100.0\""), "{svg}");
        assert!(svg.contains("<title>ecr v3: 50% pass</title>"), "{svg}");
        assert!(svg.contains(">ecr</text>"), "the line is labelled: {svg}");
    }
}
