//! `report.html`: one self-contained page (no external assets): the grid coloured by
//! outcome with the class in each failed cell; a click opens the cell's detail — ko's
//! error, the gateway's request record, the environment it got (secrets masked). Opening
//! the page at `#cell=<version>::<scenario>` shows that cell's detail directly.

use super::{cell_label, MatrixReport};
use crate::outcome::Outcome;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn css_class(outcome: Outcome) -> &'static str {
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
#detail { margin-top: 20px; border: 1px solid #d0d7de; padding: 12px 16px; border-radius: 6px; }
#detail[hidden] { display: none; }
#detail pre { white-space: pre-wrap; word-break: break-all; background: #f6f8fa; padding: 8px; }
#detail table { border-collapse: collapse; font-family: ui-monospace, monospace; font-size: 12px; }
#detail td, #detail th { border-bottom: 1px solid #eaeef2; padding: 2px 8px; text-align: left; }
"#;

const SCRIPT: &str = r#"
const data = JSON.parse(document.getElementById('cells').textContent);
const byId = Object.fromEntries(data.map(c => [c.version + '::' + c.scenario, c]));
function text(tag, value) { const e = document.createElement(tag); e.textContent = value; return e; }
function table(headers, rows) {
  const t = document.createElement('table');
  const head = t.insertRow(); headers.forEach(h => head.appendChild(text('th', h)));
  rows.forEach(r => { const row = t.insertRow(); r.forEach(v => row.insertCell().textContent = v); });
  return t;
}
function show(id) {
  const c = byId[id]; if (!c) return;
  document.querySelectorAll('td.selected').forEach(e => e.classList.remove('selected'));
  const td = document.querySelector('td[data-cell="' + CSS.escape(id) + '"]'); if (td) td.classList.add('selected');
  const d = document.getElementById('detail'); d.replaceChildren(); d.hidden = false;
  d.appendChild(text('h2', c.version + ' × ' + c.scenario + ': ' + c.label));
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
if (location.hash.startsWith('#cell=')) show(decodeURIComponent(location.hash.slice(6)));
"#;

pub fn render(report: &MatrixReport) -> String {
    let versions: Vec<&str> = report.versions.iter().map(|v| v.version.as_str()).collect();
    let mut grid = String::from("<table class=\"grid\" id=\"grid\"><thead><tr><th>scenario</th>");
    for v in &versions {
        grid.push_str(&format!("<th>{}</th>", escape(v)));
    }
    grid.push_str("</tr></thead><tbody>");
    for scenario in report.scenarios() {
        grid.push_str(&format!("<tr><th>{}</th>", escape(scenario)));
        for v in &versions {
            match report.cell(scenario, v) {
                Some(c) => grid.push_str(&format!(
                    "<td class=\"cell {}\" data-cell=\"{}\" data-outcome=\"{}\" title=\"{}\">{}</td>",
                    css_class(c.outcome),
                    escape(&format!("{}::{}", c.version, c.scenario)),
                    css_class(c.outcome),
                    escape(&c.detail),
                    escape(&cell_label(c))
                )),
                None => grid.push_str("<td>–</td>"),
            }
        }
        grid.push_str("</tr>");
    }
    grid.push_str("</tbody></table>");
    let cells: Vec<serde_json::Value> = report
        .cells
        .iter()
        .map(|c| {
            let mut v = serde_json::to_value(c).expect("cells serialise");
            v["label"] = cell_label(c).into();
            v
        })
        .collect();
    // `</` inside a script element would end it early.
    let data = serde_json::to_string(&cells).expect("cells serialise").replace("</", "<\\/");
    let versions_meta = report.versions.iter().map(|v| format!("{} ({})", v.version, v.route)).collect::<Vec<_>>().join(", ");
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>ko-matrix report</title><style>{STYLE}</style></head>\n<body>\n<h1>ko-matrix: {}</h1>\n<div class=\"meta\">started {} · services: {} · ko {}</div>\n{grid}\n<section id=\"detail\" hidden></section>\n<script id=\"cells\" type=\"application/json\">{data}</script>\n<script>{SCRIPT}</script>\n</body></html>\n",
        escape(&report.summary()),
        escape(&report.started),
        escape(&report.runtime),
        escape(&versions_meta)
    )
}
