//! The site's pages: an index (tools, nights, a chart of cells changed per night, a search
//! over every scenario), a page per tool (its grid, runs of alike releases collapsed, first bad
//! and first fixed per scenario, a pass-rate chart), a page per release (what changed against
//! the one before) and a page per cell at a URL that follows from its name
//! (`cells/<tool>/<version>/<scenario>.html`). Every text is escaped; outcomes and changes
//! carry a symbol each (matrix.md's meanings, in characters common text fonts have rather than
//! emoji, which a machine without an emoji font shows as boxes), so colour is never the only
//! signal.

use std::collections::BTreeMap;

use super::{segment, svg, History, SiteFile};
use crate::outcome::Outcome;
use crate::report::html::{css_class, escape as e};
use crate::report::regressions::{Mark, Transition};
use crate::result::{family, CellResult};

const CSS: &str = r#"body{font:14px/1.45 system-ui,sans-serif;margin:20px 28px;color:#1b1f24;max-width:1400px}
a{color:#0a5f8f}h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:22px 0 6px}
nav{margin-bottom:10px;color:#57606a}.meta{color:#57606a}
table{border-collapse:collapse}th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
thead th{background:#f6f8fa;position:sticky;top:0}tr.family th{background:#eef1f4;text-transform:uppercase;letter-spacing:.05em}
td.v{font-family:ui-monospace,monospace;font-size:12px;white-space:nowrap}td.v a{color:inherit;text-decoration:none}
.pass{background:#e1effa}.fail{background:#fbe3d6}.flaky{background:#fdf1c7}.infra{background:#f1e0eb}.skipped{background:#eceef0}
.regression{background:#a63d00;color:#fff;font-weight:700}.fix{box-shadow:inset 0 0 0 2px #009E73;font-weight:700}
.shared-failure{background:#f6f8fa;color:#57606a}th.run{background:#eef1f4}
.first-bad{font-weight:700;color:#a63d00}.first-fixed{font-weight:700;color:#006b4f}
pre{white-space:pre-wrap;word-break:break-word;background:#f6f8fa;padding:8px}code{font-family:ui-monospace,monospace}
.legend span{display:inline-block;margin-right:12px}.filter{margin:10px 0}.filter input{width:22em;padding:4px}
li{margin:4px 0}.chart{display:block;margin:8px 0;max-width:100%;height:auto}"#;

const JS: &str = r#"// The search box and vendor choice: rows whose words hold every word typed, in the chosen
// vendor's family. Plain script, no network: works from file:// too.
(function () {
  const box = document.getElementById('filter'); if (!box) return;
  const vendor = document.getElementById('vendor');
  const rows = Array.from(document.querySelectorAll('tr[data-search]'));
  const shown = document.getElementById('shown');
  function apply() {
    const words = box.value.toLowerCase().split(/\s+/).filter(Boolean);
    const family = vendor ? vendor.value : '';
    let n = 0;
    rows.forEach(r => {
      const ok = words.every(w => r.dataset.search.includes(w)) && (!family || r.dataset.family === family);
      r.hidden = !ok; if (ok) n++;
    });
    document.querySelectorAll('tr.family').forEach(h => {
      h.hidden = !rows.some(r => !r.hidden && r.dataset.family === h.dataset.family);
    });
    if (shown) shown.textContent = n + ' of ' + rows.length + ' shown';
  }
  const given = new URLSearchParams(location.search);
  box.value = given.get('q') || '';
  if (vendor) vendor.value = given.get('vendor') || '';
  box.addEventListener('input', apply);
  if (vendor) vendor.addEventListener('change', apply);
  apply();
})();
"#;

const LEGEND: &str = "<p class=\"legend meta\"><span>✓ pass</span><span>✗ fail</span><span>↻ flaky</span><span>⚠ infra-error (not the tool's verdict)</span><span>– skipped</span> · against the release before: <span>▼ regression</span><span>▲ fix</span><span>≠ failure class changed</span><span>▫ fails alike in every release</span></p>";

pub fn tool_path(tool: &str) -> String {
    format!("tools/{}.html", segment(tool))
}

pub fn release_path(tool: &str, version: &str) -> String {
    format!("releases/{}/{}.html", segment(tool), segment(version))
}

/// `cells/ko/v0.15.2/ecr/env-session.html`: follows from the cell's name alone.
pub fn cell_path(tool: &str, version: &str, scenario: &str) -> String {
    format!("cells/{}/{}/{}.html", segment(tool), segment(version), scenario_path(scenario))
}

fn scenario_path(scenario: &str) -> String {
    scenario.split('/').map(segment).collect::<Vec<_>>().join("/")
}

fn log_path(tool: &str, version: &str, scenario: &str) -> String {
    format!("logs/{}/{}/{}.log", segment(tool), segment(version), scenario_path(scenario))
}

fn cell_badge_path(tool: &str, version: &str, scenario: &str) -> String {
    format!("badges/{}/{}/{}.svg", segment(tool), segment(version), scenario_path(scenario))
}

fn release_badge_path(tool: &str, version: &str) -> String {
    format!("badges/{}/{}.svg", segment(tool), segment(version))
}

/// A link from the page at `from` to the file at `to`, both relative to the site's root.
fn href(from: &str, to: &str) -> String {
    format!("{}{}", "../".repeat(from.matches('/').count()), to)
}

fn page(path: &str, title: &str, body: &str) -> SiteFile {
    let root = href(path, "");
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{}</title><link rel=\"stylesheet\" href=\"{root}site.css\"></head>\n<body>\n<nav><a href=\"{root}index.html\">ko-matrix compatibility</a></nav>\n{body}\n<script src=\"{root}filter.js\"></script>\n</body></html>\n",
        e(title)
    );
    SiteFile { path: path.to_string(), content: html.into_bytes() }
}

fn outcome_symbol(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Pass => "✓",
        Outcome::Fail => "✗",
        Outcome::Flaky => "↻",
        Outcome::InfraError => "⚠",
        Outcome::Skipped => "–",
    }
}

/// A cell's symbol: its change against the release before where it has one, else its outcome.
fn symbol(cell: &CellResult, mark: Mark) -> &'static str {
    match mark {
        Mark::Regression => "▼",
        Mark::Fix => "▲",
        Mark::ClassChange => "≠",
        Mark::SharedFailure => "▫",
        Mark::Steady | Mark::NoVerdict => outcome_symbol(cell.outcome),
    }
}

/// Every file of the site.
pub fn all(history: &History, log_for: impl Fn(&CellResult) -> Option<Vec<u8>>) -> Vec<SiteFile> {
    let mut files = vec![
        SiteFile { path: "site.css".into(), content: CSS.as_bytes().to_vec() },
        SiteFile { path: "filter.js".into(), content: JS.as_bytes().to_vec() },
        index(history),
    ];
    for tool in history.tools() {
        files.push(tool_page(history, tool));
        let versions = history.versions(tool);
        for (i, version) in versions.iter().enumerate() {
            let previous = i.checked_sub(1).map(|p| versions[p].as_str());
            let next = versions.get(i + 1).map(String::as_str);
            files.push(release_page(history, tool, version, previous, next));
            files.push(release_badge(history, tool, version));
        }
    }
    for cell in &history.latest.cells {
        let log = log_for(cell);
        if let Some(bytes) = &log {
            files.push(SiteFile { path: log_path(&cell.tool, &cell.version, &cell.scenario), content: bytes.clone() });
        }
        files.push(cell_page(history, cell, log.is_some()));
        let (word, colour, ink) = svg::verdict(cell.outcome, &cell.label());
        let left = format!("{} {} · {}", cell.tool, cell.version, cell.scenario);
        files.push(SiteFile {
            path: cell_badge_path(&cell.tool, &cell.version, &cell.scenario),
            content: svg::badge(&left, &word, colour, ink).into_bytes(),
        });
    }
    files
}

/// The search box and the vendor choice over the rows that follow.
fn filter_box(families: &[&str]) -> String {
    let options: String = families.iter().map(|f| format!("<option value=\"{0}\">{0}</option>", e(f))).collect();
    format!(
        "<div class=\"filter\"><label for=\"filter\">Search scenarios, vendors, credential sources: </label><input id=\"filter\" type=\"search\" placeholder=\"e.g. ecr env, podman, docker config\"> <label for=\"vendor\">vendor </label><select id=\"vendor\"><option value=\"\">all</option>{options}</select> <span id=\"shown\" class=\"meta\"></span></div>"
    )
}

/// The words a row is found by: its scenario, family and tool, and the names of the
/// variables its cell was given (where the credentials came from: `AWS_WEB_IDENTITY_TOKEN_FILE`,
/// `REGISTRY_AUTH_FILE`, …).
fn search_words(tool: &str, scenario: &str, cell: Option<&CellResult>) -> String {
    let mut words = format!("{tool} {scenario} {} {}", family(scenario), scenario.replace(['/', '-'], " "));
    if let Some(cell) = cell {
        for name in cell.env.keys() {
            words.push(' ');
            words.push_str(name);
        }
    }
    words.to_lowercase()
}

fn families<'a>(scenarios: &[&'a str]) -> Vec<&'a str> {
    let mut out: Vec<&str> = scenarios.iter().map(|s| family(s)).collect();
    out.dedup();
    out
}

fn index(history: &History) -> SiteFile {
    let path = "index.html";
    let newest = history.nights.last().expect("a history has a night");
    let mut body = format!(
        "<h1>ko-matrix compatibility</h1>\n<p class=\"meta\">{} night(s), {} to {} · newest: {}</p>\n{LEGEND}\n<h2>Tools</h2>\n<ul>",
        history.nights.len(),
        e(&history.nights[0].name),
        e(&newest.name),
        e(&newest.report.summary())
    );
    for tool in history.tools() {
        let versions = history.versions(tool);
        let regressions = history.analysis.regressions().filter(|t| t.tool == tool).count();
        body.push_str(&format!(
            "<li><a href=\"{}\">{}</a>: {} release(s), {} to {} · {regressions} regression(s) along them</li>",
            tool_path(tool),
            e(tool),
            versions.len(),
            e(versions.first().map_or("", String::as_str)),
            e(versions.last().map_or("", String::as_str))
        ));
    }
    body.push_str("</ul>\n<h2>Every scenario</h2>\n");
    let mut all_scenarios: Vec<&str> = history.tools().into_iter().flat_map(|t| history.scenarios(t)).collect();
    all_scenarios.sort();
    all_scenarios.dedup();
    body.push_str(&filter_box(&families(&all_scenarios)));
    body.push_str("<table id=\"scenarios\"><thead><tr><th>tool</th><th>scenario</th><th>newest release</th><th>first bad</th><th>first fixed</th></tr></thead><tbody>");
    for tool in history.tools() {
        let versions = history.versions(tool);
        for scenario in history.scenarios(tool) {
            let newest = versions.iter().rev().find_map(|v| history.cell(tool, v, scenario));
            let shown = newest.map_or("–".to_string(), |c| {
                format!(
                    "<a href=\"{}\">{} {} {}</a>",
                    cell_path(tool, &c.version, scenario),
                    symbol(c, history.mark(c)),
                    e(&c.version),
                    e(&c.label())
                )
            });
            body.push_str(&format!(
                "<tr data-family=\"{}\" data-search=\"{}\"><td>{}</td><td>{}</td><td class=\"v\">{shown}</td>{}</tr>",
                e(family(scenario)),
                e(&search_words(tool, scenario, newest)),
                e(tool),
                e(scenario),
                milestone_cells(path, history, tool, scenario)
            ));
        }
    }
    body.push_str("</tbody></table>\n<h2>Nights</h2>\n");
    body.push_str(&svg::bar_chart("Cells whose outcome changed, per night", &history.changed_per_night()));
    body.push_str("<ul>");
    for (night, (_, changed)) in history.nights.iter().zip(history.changed_per_night()).rev() {
        let sources: Vec<String> = night.sources.iter().map(|p| p.display().to_string()).collect();
        body.push_str(&format!(
            "<li>{}: {} · {changed} cell(s) changed · <span class=\"meta\">{}</span></li>",
            e(&night.name),
            e(&night.report.summary()),
            e(&sources.join(", "))
        ));
    }
    body.push_str("</ul>");
    page(path, "ko-matrix compatibility", &body)
}

/// The first-bad and first-fixed cells of a row, each linked to its release.
fn milestone_cells(from: &str, history: &History, tool: &str, scenario: &str) -> String {
    let ms = history.milestones(tool, scenario);
    let link = |v: &str, class: &str, note: &str| {
        format!("<td class=\"v {class}\"><a href=\"{}\">{}</a>{note}</td>", href(from, &release_path(tool, v)), e(v))
    };
    if ms.never_passed {
        return "<td class=\"v shared-failure\" colspan=\"2\">▫ never passed</td>".into();
    }
    let bad = match &ms.first_bad {
        Some(v) if ms.bad_from_oldest => link(v, "first-bad", " (oldest tested)"),
        Some(v) => link(v, "first-bad", ""),
        None => "<td class=\"v\">–</td>".into(),
    };
    let fixed = match (&ms.first_fixed, &ms.first_bad) {
        (Some(v), _) => link(v, "first-fixed", ""),
        (None, Some(_)) => "<td class=\"v\">not yet</td>".into(),
        (None, None) => "<td class=\"v\">–</td>".into(),
    };
    format!("{bad}{fixed}")
}

/// Releases in order, runs of neighbours that behave alike (the same label in every
/// scenario) joined into one column so a long axis stays readable.
pub fn alike_runs(history: &History, tool: &str) -> Vec<Vec<String>> {
    let scenarios = history.scenarios(tool);
    let column = |v: &String| -> Vec<Option<String>> {
        scenarios.iter().map(|s| history.cell(tool, v, s).map(CellResult::label)).collect()
    };
    crate::report::runs_alike(history.versions(tool), column)
}

fn tool_page(history: &History, tool: &str) -> SiteFile {
    let path = tool_path(tool);
    let versions = history.versions(tool);
    let scenarios = history.scenarios(tool);
    let runs = alike_runs(history, tool);
    let mut body = format!(
        "<h1>{}: {} release(s) × {} scenario(s)</h1>\n<p class=\"meta\">each release's newest result over {} night(s); releases that behave alike in every scenario share a column</p>\n{LEGEND}\n",
        e(tool),
        versions.len(),
        scenarios.len(),
        history.nights.len()
    );
    body.push_str(&filter_box(&families(&scenarios)));
    body.push_str("<table id=\"grid\"><thead><tr><th>scenario</th><th>first bad</th><th>first fixed</th>");
    for run in &runs {
        let link = |v: &String| format!("<a href=\"{}\">{}</a>", href(&path, &release_path(tool, v)), e(v));
        match run.as_slice() {
            [one] => body.push_str(&format!("<th>{}</th>", link(one))),
            [first, .., last] => body.push_str(&format!(
                "<th class=\"run\" title=\"{}\">{} … {}<br><small>{} alike</small></th>",
                e(&run.join(", ")),
                link(first),
                link(last),
                run.len()
            )),
            [] => {}
        }
    }
    body.push_str("</tr></thead><tbody>");
    let width = 3 + runs.len();
    let mut current_family = "";
    for scenario in &scenarios {
        if family(scenario) != current_family {
            current_family = family(scenario);
            body.push_str(&format!(
                "<tr class=\"family\" data-family=\"{0}\"><th colspan=\"{width}\">{0}</th></tr>",
                e(current_family)
            ));
        }
        let newest = versions.iter().rev().find_map(|v| history.cell(tool, v, scenario));
        body.push_str(&format!(
            "<tr data-family=\"{}\" data-search=\"{}\"><th>{}</th>{}",
            e(current_family),
            e(&search_words(tool, scenario, newest)),
            e(scenario),
            milestone_cells(&path, history, tool, scenario)
        ));
        for run in &runs {
            // A run's releases share every label; the first carries the change into it.
            match history.cell(tool, &run[0], scenario) {
                Some(c) => {
                    let mark = history.mark(c);
                    body.push_str(&format!(
                        "<td class=\"v {} {}\" title=\"{}\"><a href=\"{}\">{} {}</a></td>",
                        css_class(c.outcome),
                        mark.as_str(),
                        e(c.diagnosis.as_deref().unwrap_or(&c.detail)),
                        href(&path, &cell_path(tool, &c.version, scenario)),
                        symbol(c, mark),
                        e(&c.label())
                    ))
                }
                None => body.push_str("<td class=\"v\">–</td>"),
            }
        }
        body.push_str("</tr>");
    }
    body.push_str("</tbody></table>\n<h2>Pass rate per release, by family</h2>\n");
    body.push_str(&pass_rate(history, tool, &versions, &scenarios));
    page(&path, &format!("{tool}: compatibility"), &body)
}

fn pass_rate(history: &History, tool: &str, versions: &[String], scenarios: &[&str]) -> String {
    let series: Vec<(String, Vec<Option<f64>>)> = families(scenarios)
        .into_iter()
        .map(|fam| {
            let rates = versions
                .iter()
                .map(|v| {
                    let verdicts: Vec<&CellResult> = scenarios
                        .iter()
                        .filter(|s| family(s) == fam)
                        .filter_map(|s| history.cell(tool, v, s))
                        .filter(|c| matches!(c.outcome, Outcome::Pass | Outcome::Fail))
                        .collect();
                    let passed = verdicts.iter().filter(|c| c.outcome == Outcome::Pass).count();
                    (!verdicts.is_empty()).then(|| passed as f64 / verdicts.len() as f64)
                })
                .collect();
            (fam.to_string(), rates)
        })
        .collect();
    svg::pass_rate_chart(&format!("{tool}: pass rate per release, by family"), versions, &series)
}

fn counts(history: &History, tool: &str, version: &str) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for cell in history.latest.cells.iter().filter(|c| c.tool == tool && c.version == version) {
        *counts.entry(css_class(cell.outcome)).or_insert(0) += 1;
    }
    counts
}

fn release_badge(history: &History, tool: &str, version: &str) -> SiteFile {
    let counts = counts(history, tool, version);
    let (pass, all) = (counts.get("pass").copied().unwrap_or(0), counts.values().sum::<usize>());
    let regressed = history.changes_into(tool, version).iter().filter(|t| t.mark == Mark::Regression).count();
    let (word, colour, ink) = match regressed {
        0 => (format!("✓ {pass}/{all} pass"), "#0a5f8f", "#fff"),
        n => (format!("✗ {pass}/{all} pass, {n} regressed"), "#a63d00", "#fff"),
    };
    SiteFile {
        path: release_badge_path(tool, version),
        content: svg::badge(&format!("{tool} {version}"), &word, colour, ink).into_bytes(),
    }
}

fn release_page(history: &History, tool: &str, version: &str, previous: Option<&str>, next: Option<&str>) -> SiteFile {
    let path = release_path(tool, version);
    let counts = counts(history, tool, version);
    let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let around = [
        previous.map(|p| format!("← <a href=\"{}\">{}</a>", href(&path, &release_path(tool, p)), e(p))),
        Some(format!("<a href=\"{}\">all {} releases</a>", href(&path, &tool_path(tool)), e(tool))),
        next.map(|n| format!("<a href=\"{}\">{}</a> →", href(&path, &release_path(tool, n)), e(n))),
    ];
    let mut body = format!(
        "<h1>{} {}</h1>\n<p class=\"meta\">{}</p>\n<p><img src=\"{}\" alt=\"badge: {} {}\"> {}</p>\n",
        e(tool),
        e(version),
        around.into_iter().flatten().collect::<Vec<_>>().join(" · "),
        href(&path, &release_badge_path(tool, version)),
        e(tool),
        e(version),
        e(&summary.join(", "))
    );
    let changes = history.changes_into(tool, version);
    match previous {
        None => body.push_str("<p>The oldest release tested: nothing before it to compare with.</p>"),
        Some(_) if changes.is_empty() => {
            body.push_str("<p>No scenario changed against the release before.</p>");
        }
        Some(p) => body.push_str(&format!("<h2>Against {}</h2>", e(p))),
    }
    for (mark, title) in
        [(Mark::Regression, "▼ Regressions"), (Mark::Fix, "▲ Fixes"), (Mark::ClassChange, "≠ Class changes")]
    {
        let of_mark: Vec<&&Transition> = changes.iter().filter(|t| t.mark == mark).collect();
        if of_mark.is_empty() {
            continue;
        }
        body.push_str(&format!("<h3>{title}: {}</h3><ul class=\"changes\">", of_mark.len()));
        for t in of_mark {
            body.push_str(&change_item(history, &path, t));
        }
        body.push_str("</ul>");
    }
    body.push_str("<h2>Every scenario</h2><table><thead><tr><th>scenario</th><th>outcome</th></tr></thead><tbody>");
    for scenario in history.scenarios(tool) {
        if let Some(c) = history.cell(tool, version, scenario) {
            body.push_str(&format!(
                "<tr><th>{}</th><td class=\"v {}\"><a href=\"{}\">{} {}</a></td></tr>",
                e(scenario),
                css_class(c.outcome),
                href(&path, &cell_path(tool, version, scenario)),
                symbol(c, history.mark(c)),
                e(&c.label())
            ));
        }
    }
    body.push_str("</tbody></table>");
    page(&path, &format!("{tool} {version}"), &body)
}

/// One change into a release: its cell, why (the diagnosis and the tool's deciding line), and
/// for a regression the bisect command and, where one ran, the bisection's chain.
fn change_item(history: &History, from: &str, t: &Transition) -> String {
    let cell = history.cell(&t.tool, &t.to_version, &t.scenario);
    // A fix's explanation is why the release before failed.
    let explained = if t.mark == Mark::Fix { history.cell(&t.tool, &t.from_version, &t.scenario) } else { cell };
    let mut item = format!(
        "<li><a href=\"{}\">{}</a>: {} {} → {} {}",
        href(from, &cell_path(&t.tool, &t.to_version, &t.scenario)),
        e(&t.scenario),
        e(&t.from_version),
        e(&t.from_label),
        e(&t.to_version),
        e(&t.to_label)
    );
    if let Some(diagnosis) = explained.and_then(|c| c.diagnosis.as_deref()) {
        item.push_str(&format!("<p class=\"diagnosis\">{}</p>", e(diagnosis)));
    }
    let line = if t.mark == Mark::Fix { explained.map_or("", |c| c.detail.as_str()) } else { t.detail.as_str() };
    if !line.is_empty() {
        item.push_str(&format!("<pre class=\"detail\">{}</pre>", e(line)));
    }
    if t.mark == Mark::Regression {
        item.push_str(&format!("<p>Explain it: <code class=\"bisect\">{}</code></p>", e(&t.bisect_command())));
        for b in history.bisections_of(t) {
            item.push_str(&format!(
                "<p>Bisected ({} → {}): <strong>{}</strong></p><ol class=\"chain\">",
                e(&b.good),
                e(&b.bad),
                e(&b.culprit)
            ));
            for probe in &b.probes {
                item.push_str(&format!("<li>{}: {}</li>", e(&probe.what), e(&probe.outcome)));
            }
            item.push_str("</ol>");
            if let Some(narrowing) = &b.narrowing {
                item.push_str(&format!("<p class=\"chain\">{}</p>", e(&narrowing.chain)));
            }
        }
    }
    item.push_str("</li>");
    item
}

fn cell_page(history: &History, cell: &CellResult, has_log: bool) -> SiteFile {
    let path = cell_path(&cell.tool, &cell.version, &cell.scenario);
    let id = cell.id();
    let mark = history.mark(cell);
    let runs = history.runs(&id);
    let night = |i: usize| history.nights[i].name.as_str();
    let mut body = format!(
        "<h1>{}</h1>\n<p class=\"meta\"><a href=\"{}\">{} {}</a> · <a href=\"{}\">every {} release</a></p>\n<p><img src=\"{}\" alt=\"badge: {}\"></p>\n<p class=\"verdict {}\">{} <strong>{}</strong> on {}</p>\n",
        e(&id),
        href(&path, &release_path(&cell.tool, &cell.version)),
        e(&cell.tool),
        e(&cell.version),
        href(&path, &tool_path(&cell.tool)),
        e(&cell.tool),
        href(&path, &cell_badge_path(&cell.tool, &cell.version, &cell.scenario)),
        e(&cell.label()),
        css_class(cell.outcome),
        symbol(cell, mark),
        e(&cell.label()),
        e(runs.last().map_or("", |(i, _)| night(*i)))
    );
    if let Some(t) = history
        .analysis
        .transitions
        .iter()
        .find(|t| t.tool == cell.tool && t.to_version == cell.version && t.scenario == cell.scenario)
    {
        body.push_str(&format!(
            "<p>{} against {}: it was {}.</p>",
            e(t.mark.as_str()),
            e(&t.from_version),
            e(&t.from_label)
        ));
        if t.mark == Mark::Regression {
            body.push_str(&format!("<p>Explain it: <code class=\"bisect\">{}</code></p>", e(&t.bisect_command())));
        }
    } else if mark == Mark::SharedFailure {
        body.push_str("<p>Fails the same way in every release: an expected failure, not a regression.</p>");
    }
    if let Some(d) = &cell.diagnosis {
        body.push_str(&format!("<p class=\"diagnosis\">{}</p>", e(d)));
    }
    if !cell.detail.is_empty() {
        body.push_str(&format!("<pre class=\"detail\">{}</pre>", e(&cell.detail)));
    }
    if has_log {
        body.push_str(&format!(
            "<p><a class=\"log\" href=\"{}\">the log of its newest run</a></p>",
            href(&path, &log_path(&cell.tool, &cell.version, &cell.scenario))
        ));
    } else {
        body.push_str(&format!("<p class=\"meta\">log not kept: {}</p>", e(&cell.log.display().to_string())));
    }
    // When it last changed, and whether it was ever flaky or an infra-error.
    let changed = runs.windows(2).rev().find(|w| w[0].1.label() != w[1].1.label());
    body.push_str(&match changed {
        Some(w) => format!(
            "<p class=\"changed\">Last changed on {}: {} → {}.</p>",
            e(night(w[1].0)),
            e(&w[0].1.label()),
            e(&w[1].1.label())
        ),
        None => format!("<p class=\"changed\">Unchanged over {} night(s).</p>", runs.len()),
    });
    for (outcome, word) in [(Outcome::Flaky, "flaky"), (Outcome::InfraError, "an infra-error")] {
        let on: Vec<&str> = runs.iter().filter(|(_, c)| c.outcome == outcome).map(|(i, _)| night(*i)).collect();
        body.push_str(&match on.as_slice() {
            [] => format!("<p>Never {word}.</p>"),
            nights => {
                format!("<p><strong>{} {word}</strong> on {}.</p>", outcome_symbol(outcome), e(&nights.join(", ")))
            }
        });
    }
    body.push_str("<h2>Every night</h2><table><thead><tr><th>night</th><th>outcome</th><th>the tool's deciding line</th></tr></thead><tbody>");
    for (i, c) in runs.iter().rev() {
        body.push_str(&format!(
            "<tr><td>{}</td><td class=\"v {}\">{} {}</td><td>{}</td></tr>",
            e(night(*i)),
            css_class(c.outcome),
            outcome_symbol(c.outcome),
            e(&c.label()),
            e(&c.detail)
        ));
    }
    body.push_str("</tbody></table>");
    page(&path, &id, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::FailClass;
    use crate::report::publish::History;
    use crate::report::tests::{cell, report_of};
    use crate::report::MatrixReport;

    fn history(cells: Vec<CellResult>) -> History {
        let report = MatrixReport { started: "2026-12-01T03:00:00Z".into(), ..report_of(cells) };
        History::new(vec![("n.json".into(), report)], Vec::new()).unwrap()
    }

    #[test]
    fn neighbours_alike_in_every_scenario_share_a_column() {
        let fail = |s, v| cell(s, v, Outcome::Fail, Some(FailClass::Unauthorized));
        let pass = |s, v| cell(s, v, Outcome::Pass, None);
        let h = history(vec![
            pass("a/x", "v1.0.0"),
            pass("a/x", "v1.1.0"),
            pass("a/x", "v1.2.0"),
            fail("a/x", "v1.3.0"),
            pass("a/x", "v1.4.0"),
            fail("a/y", "v1.0.0"),
            fail("a/y", "v1.1.0"),
            fail("a/y", "v1.2.0"),
            fail("a/y", "v1.3.0"),
            // Alike in a/x, not in a/y: no run.
            pass("a/y", "v1.4.0"),
        ]);
        assert_eq!(alike_runs(&h, "ko"), vec![vec!["v1.0.0", "v1.1.0", "v1.2.0"], vec!["v1.3.0"], vec!["v1.4.0"]]);
        let page = String::from_utf8(tool_page(&h, "ko").content).unwrap();
        assert!(page.contains("title=\"v1.0.0, v1.1.0, v1.2.0\""), "{page}");
        assert!(page.contains("<small>3 alike</small>"), "{page}");
    }

    #[test]
    fn every_text_is_escaped_and_paths_follow_from_names() {
        let mut hostile = cell("a/<b>", "v1", Outcome::Fail, Some(FailClass::Other));
        hostile.detail = "</pre><script>alert(1)</script>".into();
        let h = history(vec![hostile]);
        let files = all(&h, |_| None);
        let page = files.iter().find(|f| f.path == "cells/ko/v1/a/_b_.html").expect("the cell's page");
        let text = String::from_utf8(page.content.clone()).unwrap();
        assert!(!text.contains("<script>alert"), "{text}");
        assert!(text.contains("&lt;/pre&gt;&lt;script&gt;"), "{text}");
        assert_eq!(href("cells/ko/v1/a/_b_.html", "index.html"), "../../../../index.html");
        assert_eq!(cell_path("ko", "v0.15.2", "ecr/env-session"), "cells/ko/v0.15.2/ecr/env-session.html");
    }
}
