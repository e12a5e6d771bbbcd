//! Flaky cells stay visible, from hand-written matrix.json files: matrix.md and report.html
//! count and list them.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{json, Value};
use support::ko_matrix;

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A cell of `tool@version` on `scenario`: `runs` are its attempts; two that differ make it flaky.
fn cell(id: &str, scenario: &str, runs: &[&str]) -> Value {
    let (tool, version) = id.split_once('@').unwrap();
    let label = if runs.len() == 2 && runs[0] != runs[1] { "flaky" } else { runs[0] };
    let (outcome, class) = match label.strip_prefix("fail(") {
        Some(rest) => ("fail", Some(rest.trim_end_matches(')'))),
        None => (label, None),
    };
    let log = format!("/out/logs/{tool}@{version}--{}.log", scenario.replace('/', "--"));
    let mut cell = json!({
        "tool": tool, "version": version, "scenario": scenario, "outcome": outcome, "class": class,
        "detail": format!("{tool} exited 1 at {version}"), "duration_ms": 10, "tool_ms": 9, "log": log,
    });
    if runs.len() == 2 {
        cell["attempts"] = json!(runs);
        cell["retry_log"] = json!(log.replace(".log", ".retry.log"));
        if label == "flaky" {
            cell["detail"] =
                json!(format!("flaky: first run {}: ko exited 0; retry {}: ko exited 1: 401", runs[0], runs[1]));
        }
    }
    cell
}

/// Writes a matrix.json that started at `started` with `cells` to `path`.
fn write_matrix(path: &Path, started: &str, cells: Vec<Value>) -> PathBuf {
    let mut versions: Vec<Value> = Vec::new();
    let mut scenarios: Vec<Value> = Vec::new();
    for c in &cells {
        let version = json!({"tool": c["tool"], "version": c["version"], "route": "go", "sha256": "x"});
        if !versions.contains(&version) {
            versions.push(version);
        }
        if !scenarios.contains(&c["scenario"]) {
            scenarios.push(c["scenario"].clone());
        }
    }
    let report = json!({
        "ko_matrix_version": env!("CARGO_PKG_VERSION"), "started": started, "runtime": "process",
        "containment": "user+network namespace", "versions": versions, "selected_scenarios": scenarios,
        "cells": cells,
    });
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_vec_pretty(&report).unwrap()).unwrap();
    path.to_path_buf()
}

/// ko v0.15.1 passes ecr/env-session, v0.15.2 ran it twice: pass, then fail(unauthorized).
fn one_flaky_cell() -> Vec<Value> {
    vec![
        cell("ko@v0.15.1", "ecr/env-session", &["pass"]),
        cell("ko@v0.15.2", "ecr/env-session", &["pass", "fail(unauthorized)"]),
        cell("ko@v0.15.1", "registry/anonymous", &["pass"]),
        cell("ko@v0.15.2", "registry/anonymous", &["pass"]),
    ]
}

#[test]
fn matrix_md_and_report_html_count_and_list_flaky_cells() {
    let dir = tempfile::tempdir().unwrap();
    write_matrix(&dir.path().join("matrix.json"), "2026-12-01T03:17:00Z", one_flaky_cell());
    let out =
        ko_matrix().current_dir(dir.path()).args(["report", ".", "--snapshots", "no-snapshots"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let md = std::fs::read_to_string(dir.path().join("matrix.md")).unwrap();
    assert!(md.starts_with("### ko-matrix: 4 cells: 3 pass, 0 fail, 1 flaky, 0 infra-error\n"), "{md}");
    assert!(md.contains("| `ecr/env-session` | ✅ pass | 🔁 flaky |"), "{md}");
    let section = &md[md.find("#### 🔁 Flaky cells: 1\n").unwrap_or_else(|| panic!("no Flaky section: {md}"))..];
    assert!(
        section.contains(
            "- 🔁 **ko@v0.15.2::ecr/env-session** ran pass then fail(unauthorized)\n\
             \x20 - `flaky: first run pass: ko exited 0; retry fail(unauthorized): ko exited 1: 401`\n\
             \x20 - logs: first run `/out/logs/ko@v0.15.2--ecr--env-session.log`, retry `/out/logs/ko@v0.15.2--ecr--env-session.retry.log`\n"
        ),
        "{md}"
    );

    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("<h1>ko-matrix: 4 cells: 3 pass, 0 fail, 1 flaky, 0 infra-error</h1>"), "{html}");
    assert!(html.contains("<h2>↻ Flaky cells: 1</h2>"), "{html}");
    assert!(
        html.contains(
            "<li><a href=\"#cell=ko@v0.15.2::ecr/env-session\">ko@v0.15.2::ecr/env-session</a> ran pass then fail(unauthorized) · logs: /out/logs/ko@v0.15.2--ecr--env-session.log, /out/logs/ko@v0.15.2--ecr--env-session.retry.log</li>"
        ),
        "{html}"
    );
    // The cell is marked by a symbol, not by its colour alone.
    assert!(html.contains("class=\"cell flaky no-verdict\" data-cell=\"ko@v0.15.2::ecr/env-session\""), "{html}");
    assert!(html.contains("td.cell.flaky::before { content: \"↻ \"; }"), "{html}");

    // Without a flaky cell, neither report has the section.
    let steady: Vec<Value> = one_flaky_cell().into_iter().filter(|c| c["outcome"] != "flaky").collect();
    write_matrix(&dir.path().join("matrix.json"), "2026-12-01T03:17:00Z", steady);
    let out = ko_matrix().current_dir(dir.path()).args(["report", "."]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!std::fs::read_to_string(dir.path().join("matrix.md")).unwrap().contains("Flaky cells"));
    assert!(!std::fs::read_to_string(dir.path().join("report.html")).unwrap().contains("Flaky cells"));
}
