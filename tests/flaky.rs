//! Flaky cells stay visible, from hand-written matrix.json files: matrix.md and report.html
//! count and list them, the nightly's merge script annotates them, and `regressions
//! --history` names cells flaky on consecutive nights.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{json, Value};
use support::ko_matrix;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

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

#[test]
fn the_nightly_merge_annotates_each_flaky_cell() {
    let dir = tempfile::tempdir().unwrap();
    let shards = dir.path().join("shards");
    let mut first = one_flaky_cell();
    let second = first.split_off(2);
    write_matrix(&shards.join("shard-1/matrix.json"), "2026-12-01T03:17:00Z", first);
    write_matrix(&shards.join("shard-2/matrix.json"), "2026-12-01T03:17:05Z", second);
    let summary = dir.path().join("step-summary");
    let out = std::process::Command::new("bash")
        .arg(repo().join("scripts/nightly/merge"))
        .env("KO_MATRIX", env!("CARGO_BIN_EXE_ko-matrix"))
        .env("SHARDS_DIR", &shards)
        .env("OUT", dir.path().join("merged"))
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("GITHUB_OUTPUT", dir.path().join("output"))
        .output()
        .unwrap();
    // Both cells are as the committed snapshots record them (the flaky one in one of its runs).
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let warnings: Vec<&str> = stdout.lines().filter(|l| l.starts_with("::")).collect();
    assert_eq!(
        warnings,
        ["::warning title=flaky cell::ko@v0.15.2::ecr/env-session ran pass then fail(unauthorized)"],
        "{}",
        text(&out)
    );
    let summary = std::fs::read_to_string(&summary).unwrap();
    assert!(summary.contains("1 flaky") && summary.contains("#### 🔁 Flaky cells: 1"), "{summary}");
}

#[test]
fn regressions_history_names_cells_flaky_on_consecutive_nights_only() {
    let dir = tempfile::tempdir().unwrap();
    let nights = dir.path().join("nights");
    let flaky = ["pass", "fail(unauthorized)"];
    let (env, anonymous) = ("ecr/env-session", "registry/anonymous");
    // registry/anonymous is flaky on the 29th and the 1st: not in a row. ecr/env-session on
    // the 30th and the 1st: in a row. Two layouts: DIR/*/matrix.json and DIR/*.json.
    write_matrix(
        &nights.join("2026-11-29/matrix.json"),
        "2026-11-29T03:17:00Z",
        vec![cell("ko@v0.15.2", env, &["pass"]), cell("ko@v0.15.2", anonymous, &flaky)],
    );
    write_matrix(
        &nights.join("2026-11-30.json"),
        "2026-11-30T03:17:00Z",
        vec![cell("ko@v0.15.2", env, &flaky), cell("ko@v0.15.2", anonymous, &["pass"])],
    );
    // Tonight's is also in the directory: read once.
    let tonight = write_matrix(
        &nights.join("2026-12-01/matrix.json"),
        "2026-12-01T03:17:00Z",
        vec![cell("ko@v0.15.2", env, &flaky), cell("ko@v0.15.2", anonymous, &flaky)],
    );
    let regressions =
        |args: &[&str]| ko_matrix().current_dir(dir.path()).arg("regressions").args(args).output().unwrap();
    let (nights_arg, tonight_arg) = (nights.to_str().unwrap(), tonight.to_str().unwrap());

    let out = regressions(&["--history", nights_arg, tonight_arg]);
    assert_eq!(out.status.code(), Some(0), "a flaky streak is reported, never fails: {}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "flaky on 2 nights in a row: ko@v0.15.2::ecr/env-session (2026-11-30, 2026-12-01)\n"
    );
    assert!(
        text(&out)
            .contains("1 cell(s) flaky on consecutive nights, across 3 night(s): 2026-11-29, 2026-11-30, 2026-12-01"),
        "{}",
        text(&out)
    );

    let out = regressions(&["--format", "markdown", "--history", nights_arg, tonight_arg]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "\n#### 🔁 Flaky on consecutive nights\n\n\
         - 🔁 **ko@v0.15.2::ecr/env-session** flaky on 2 nights in a row (2026-11-30, 2026-12-01)\n"
    );

    // Given as files, in any order: the same nights.
    let out = regressions(&[
        "--history",
        nights.join("2026-11-30.json").to_str().unwrap(),
        "--history",
        nights.join("2026-11-29/matrix.json").to_str().unwrap(),
        "--format",
        "github",
        tonight_arg,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "::warning title=flaky cell::ko@v0.15.2::ecr/env-session ran pass then fail(unauthorized)\n\
         ::warning title=flaky cell::ko@v0.15.2::registry/anonymous ran pass then fail(unauthorized)\n\
         ::warning title=flaky on 2 nights in a row::ko@v0.15.2::ecr/env-session was flaky on 2026-11-30, 2026-12-01\n"
    );

    // The 29th and the 1st alone are adjacent: the command knows only the nights it is given.
    let out = regressions(&["--history", nights.join("2026-11-29/matrix.json").to_str().unwrap(), tonight_arg]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "flaky on 2 nights in a row: ko@v0.15.2::registry/anonymous (2026-11-29, 2026-12-01)\n"
    );

    // One night given twice under two names, or a history that is not there, is bad input.
    std::fs::copy(nights.join("2026-11-30.json"), nights.join("copy.json")).unwrap();
    let out = regressions(&["--history", nights_arg, tonight_arg]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("are the same run (started 2026-11-30T03:17:00Z)"), "{}", text(&out));
    let out = regressions(&["--history", "nowhere", tonight_arg]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--history nowhere: no such file or directory"), "{}", text(&out));
}

#[test]
fn regressions_github_format_reports_a_new_regression_as_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let matrix = write_matrix(
        &dir.path().join("matrix.json"),
        "2026-12-01T03:17:00Z",
        vec![
            cell("ko@v0.15.1", "ecr/env-session", &["pass"]),
            cell("ko@v0.15.2", "ecr/env-session", &["fail(unauthorized)"]),
        ],
    );
    let out = ko_matrix()
        .current_dir(dir.path())
        .args(["regressions", "--format", "github", matrix.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "::error title=regression::ko@v0.15.1 → v0.15.2::ecr/env-session: pass → fail(unauthorized): ko exited 1 at v0.15.2 \
         (explain it: ko-matrix bisect --tool ko --good v0.15.1 --bad v0.15.2 --scenario ecr/env-session --mode deps)\n"
    );
}
