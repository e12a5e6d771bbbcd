//! `report.html`: one self-contained page (no external assets): a grid per tool, coloured by
//! outcome with the class in each failed cell; a click opens the cell's detail — the tool's
//! error, the gateway's request record, the environment it got (secrets masked). Opening
//! the page at `#cell=<tool>@<version>::<scenario>` shows that cell's detail directly (a
//! link without `<tool>@` opens the first tool's cell). There is a grid per tool. Each cell is
//! marked by its change against the previous version: a regression stands out, a fix is
//! clear, and a failure that every version shares is muted. A tool's copies (`copy/`
//! scenarios, `[source]` to `[target]`) have a grid of their own, `<tool> · copy`.

use super::{Group, MatrixReport, Verb, VersionRun};
use crate::outcome::Outcome;
use crate::report::regressions::{Analysis, Mark};
use crate::result::CellResult;

pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The CSS class an outcome's cell is drawn with (the site's pages use the same).
pub(crate) fn css_class(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Pass => "pass",
        Outcome::Fail => "fail",
        Outcome::InfraError => "infra",
        Outcome::Skipped => "skipped",
        Outcome::Flaky => "flaky",
    }
}

const STYLE: &str = r#"
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1b1f24; }
h1 { font-size: 20px; margin: 0 0 4px; }
.meta { color: #57606a; margin-bottom: 16px; }
table.grid { border-collapse: collapse; }
.grid th, .grid td { border: 1px solid #d0d7de; padding: 6px 10px; text-align: left; }
.grid th { background: #f6f8fa; }
.grid td.cell { cursor: pointer; font-family: ui-monospace, monospace; }
td.pass { background: #dafbe1; } td.fail { background: #ffebe9; } td.flaky { background: #fff8c5; }
td.infra { background: #e7dcff; } td.skipped { background: #eaeef2; } td.selected { outline: 3px solid #0969da; }
td.cell.regression, .swatch.regression { background: #cf222e; color: #fff; font-weight: 700; }
td.cell.regression::before, .swatch.regression::before { content: "▼ "; }
td.cell.fix, .swatch.fix { box-shadow: inset 0 0 0 2px #1a7f37; font-weight: 700; }
td.cell.fix::before, .swatch.fix::before { content: "▲ "; color: #1a7f37; }
td.cell.class-change::before, .swatch.class-change::before { content: "≠ "; }
td.cell.shared-failure, .swatch.shared-failure { background: #f6f8fa; color: #8c959f; }
th.regressed { background: #cf222e; color: #fff; }
td.cell.flaky::before { content: "↻ "; }
#flaky li { font-family: ui-monospace, monospace; margin: 2px 0; }
.legend span { display: inline-block; padding: 2px 8px; margin-right: 8px; border: 1px solid #d0d7de; font-family: ui-monospace, monospace; }
#detail { margin-top: 20px; border: 1px solid #d0d7de; padding: 12px 16px; border-radius: 6px; }
#detail[hidden] { display: none; }
#detail p.diagnosis { font-size: 15px; font-weight: 600; }
#detail pre { white-space: pre-wrap; word-break: break-all; background: #f6f8fa; padding: 8px; }
#detail table { border-collapse: collapse; font-family: ui-monospace, monospace; font-size: 12px; }
#detail td, #detail th { border-bottom: 1px solid #eaeef2; padding: 2px 8px; text-align: left; }
"#;

const LEGEND: &str = "<div class=\"legend meta\">change against the previous version: <span class=\"swatch regression\">regression</span><span class=\"swatch fix\">fix</span><span class=\"swatch class-change\">class changed</span><span class=\"swatch shared-failure\">fails in every version</span></div>";

const SCRIPT: &str = r#"
const data = JSON.parse(document.getElementById('cells').textContent);
const byId = Object.fromEntries(data.map(c => [c.tool + '@' + c.version + '::' + c.scenario, c]));
// Links from before tools were a parameter name no tool: the first tool's cell.
const legacy = id => data.find(c => c.version + '::' + c.scenario === id);
function text(tag, value) { const e = document.createElement(tag); e.textContent = value; return e; }
function table(headers, rows) {
  const t = document.createElement('table');
  const head = t.insertRow(); headers.forEach(h => head.appendChild(text('th', h)));
  rows.forEach(r => { const row = t.insertRow(); r.forEach(v => row.insertCell().textContent = v); });
  return t;
}
function show(id) {
  const c = byId[id] || legacy(id); if (!c) return;
  id = c.tool + '@' + c.version + '::' + c.scenario;
  document.querySelectorAll('td.selected').forEach(e => e.classList.remove('selected'));
  const td = document.querySelector('td[data-cell="' + CSS.escape(id) + '"]'); if (td) td.classList.add('selected');
  const d = document.getElementById('detail'); d.replaceChildren(); d.hidden = false;
  d.appendChild(text('h2', id + ': ' + c.label));
  if (c.diagnosis) { const p = text('p', c.diagnosis); p.className = 'diagnosis'; d.appendChild(p); }
  if (c.change) d.appendChild(text('p', c.change));
  d.appendChild(text('h3', 'What happened')); d.appendChild(text('pre', c.detail));
  if (c.attempts && c.attempts.length > 1) d.appendChild(text('p', 'runs: ' + c.attempts.join(' → ')));
  d.appendChild(text('p', 'log: ' + c.log + (c.retry_log ? ' (retry: ' + c.retry_log + ')' : '')));
  d.appendChild(text('h3', 'Gateway record'));
  d.appendChild(table(['+ms', 'method', 'host', 'path', 'status', 'note'],
    (c.requests || []).map(r => [r.at_ms, r.method, r.host, r.path, r.status, r.note || ''])));
  d.appendChild(text('h3', 'Environment (secrets masked)'));
  d.appendChild(table(['name', 'value'], Object.entries(c.env || {})));
  history.replaceState(null, '', '#cell=' + encodeURIComponent(id));
}
document.querySelectorAll('td.cell').forEach(td => td.addEventListener('click', () => show(td.dataset.cell)));
const fromHash = () => { if (location.hash.startsWith('#cell=')) show(decodeURIComponent(location.hash.slice(6))); };
fromHash();
// The flaky list links to its cells.
window.addEventListener('hashchange', fromHash);
"#;

/// A regressed version's column header says how many cells regressed in it.
/// A run of versions with alike cells is one column, its versions in the header's title.
fn version_header(tool: &str, run: &VersionRun<'_>, analysis: &Analysis) -> String {
    let alike = match run.versions.len() {
        1 => String::new(),
        _ => format!(" title=\"alike in {}\"", run.versions.join(", ")),
    };
    match analysis.regressions().filter(|t| t.tool == tool && t.to_version == run.first()).count() {
        0 => format!("<th{alike}>{}</th>", escape(&run.header())),
        n => format!(
            "<th class=\"regressed\" title=\"{n} regression(s) against the previous version\">{} ▼{n}</th>",
            escape(&run.header())
        ),
    }
}

/// The sentence the detail pane shows about a cell's change along the version axis.
fn change_sentence(cell: &CellResult, analysis: &Analysis) -> Option<String> {
    let (version, scenario) = (&cell.version, &cell.scenario);
    let mark = analysis.mark(cell);
    if mark == Mark::SharedFailure {
        return Some("Fails the same way in every version: an expected failure, not a regression.".into());
    }
    let t = analysis
        .transitions
        .iter()
        .find(|t| t.tool == cell.tool && &t.to_version == version && &t.scenario == scenario)?;
    let known = if t.known { " The committed snapshots record it." } else { "" };
    Some(match mark {
        Mark::Regression => format!(
            "Regression: {} was {} in {}.{known} Explain it: {}",
            scenario,
            t.from_label,
            t.from_version,
            t.bisect_command()
        ),
        Mark::Fix => format!("Fix: {} failed ({}) in {}.", scenario, t.from_label, t.from_version),
        _ => format!("Failure class changed: {} in {}.", t.from_label, t.from_version),
    })
}

/// One tool's grid of one verb (its pushes, or its copies): scenarios down, versions across.
fn tool_grid(report: &MatrixReport, group: &Group, analysis: &Analysis) -> String {
    let tool = group.tool;
    let runs = report.version_runs(tool);
    let verb = match group.verb {
        Verb::Push => String::new(),
        verb => format!(" data-verb=\"{}\"", verb.as_str()),
    };
    let mut grid = format!(
        "<h2>{}</h2>\n<table class=\"grid\" id=\"grid-{}\" data-tool=\"{}\"{verb}><thead><tr><th>scenario</th>",
        escape(&group.title()),
        escape(&group.slug()),
        escape(tool)
    );
    for run in &runs {
        grid.push_str(&version_header(tool, run, analysis));
    }
    grid.push_str("</tr></thead><tbody>");
    for scenario in &group.scenarios {
        grid.push_str(&format!("<tr><th>{}</th>", escape(scenario)));
        for v in runs.iter().map(|run| run.first()) {
            match report.cell(tool, v, scenario) {
                Some(c) => {
                    let mark = analysis.mark(c).as_str();
                    grid.push_str(&format!(
                        "<td class=\"cell {} {mark}\" data-cell=\"{}\" data-outcome=\"{}\" data-mark=\"{mark}\" title=\"{}\">{}</td>",
                        css_class(c.outcome),
                        escape(&c.id()),
                        css_class(c.outcome),
                        escape(&c.detail),
                        escape(&c.label())
                    ))
                }
                None => grid.push_str("<td>–</td>"),
            }
        }
        grid.push_str("</tr>");
    }
    grid.push_str("</tbody></table>\n");
    grid
}

/// The flaky cells, each linked to its detail, with its runs and both logs; nothing when
/// there is none.
fn flaky_section(report: &MatrixReport) -> String {
    let flaky: Vec<&CellResult> = crate::report::flaky::cells(report).collect();
    if flaky.is_empty() {
        return String::new();
    }
    let items: String = flaky
        .iter()
        .map(|c| {
            let retry =
                c.retry_log.as_ref().map(|p| format!(", {}", escape(&p.display().to_string()))).unwrap_or_default();
            format!(
                "<li><a href=\"#cell={0}\">{0}</a> ran {1} · logs: {2}{retry}</li>",
                escape(&c.id()),
                escape(&crate::report::flaky::runs(c)),
                escape(&c.log.display().to_string())
            )
        })
        .collect();
    format!(
        "<section id=\"flaky\"><h2>↻ Flaky cells: {}</h2>\n<p class=\"meta\">Their two runs disagreed. Each passes the snapshot check when either run matches it; <code>ko-matrix regressions --history</code> finds cells flaky on consecutive nights.</p>\n<ul>{items}</ul></section>\n",
        flaky.len()
    )
}

pub fn render(report: &MatrixReport, analysis: &Analysis) -> String {
    let mut grid: String = report.groups().iter().map(|group| tool_grid(report, group, analysis)).collect();
    grid.push_str(&flaky_section(report));
    let cells: Vec<serde_json::Value> = report
        .cells
        .iter()
        .map(|c| {
            let mut v = serde_json::to_value(c).expect("cells serialise");
            v["label"] = c.label().into();
            v["change"] = change_sentence(c, analysis).into();
            v
        })
        .collect();
    // `</` inside a script element would end it early.
    let data = serde_json::to_string(&cells).expect("cells serialise").replace("</", "<\\/");
    let versions_meta = report
        .versions
        .iter()
        .map(|v| format!("{}@{} ({})", v.tool, v.version, v.route))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>ko-matrix report</title><style>{STYLE}</style></head>\n<body>\n<h1>ko-matrix: {}</h1>\n<div class=\"meta\">started {} · services: {} · containment: {} · leak check: {} · {}</div>\n{LEGEND}\n{grid}\n<section id=\"detail\" hidden></section>\n<script id=\"cells\" type=\"application/json\">{data}</script>\n<script>{SCRIPT}</script>\n</body></html>\n",
        escape(&report.summary()),
        escape(&report.started),
        escape(&report.runtime),
        escape(&report.containment),
        escape(&report.leak_check),
        escape(&versions_meta)
    )
}
