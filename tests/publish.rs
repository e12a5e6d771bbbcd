//! `ko-matrix publish` end to end: three nights of matrix.json (the first as two unmerged
//! shards) with differing outcomes become a site whose pages Chromium renders: the tool page
//! names each scenario's first bad and first fixed release and joins alike releases, the
//! release page explains its regression, the cell page links to its log and tells its
//! history, and the search box filters. Screenshots of each page kind are kept.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{json, Value};
use support::ko_matrix;

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Where the runner that wrote a night kept its logs: gone by the time the site is built, as
/// on CI, so the logs are found beside the matrix instead.
const RUNNER_LOGS: &str = "/home/runner/work/ko-matrix/results/shard-1/logs";

/// A cell as matrix.json records it; `label` is `pass`, `fail(<class>)`, `flaky` or `infra-error`.
fn cell(tool: &str, version: &str, scenario: &str, label: &str) -> Value {
    let (outcome, class) = match label.strip_prefix("fail(") {
        Some(class) => ("fail", Some(class.trim_end_matches(')'))),
        None => (label, None),
    };
    let (detail, diagnosis) = match (outcome, scenario) {
        ("fail", "ecr/env-session") => (
            format!("{tool} exited 1: Error: failed to publish images: PUT https://123456789012.dkr.ecr.us-east-1.amazonaws.com/v2/app/blobs/uploads/: unexpected status code 401 Unauthorized"),
            Some("No request reached api.ecr.*: ko did not fetch an ECR token; the pushes went out anonymous and ECR answered 401."),
        ),
        ("fail", _) => (
            format!("{tool} exited 1: unexpected status code 401 Unauthorized"),
            Some("The registry refused the Basic credentials ko sent (401): a wrong user or password."),
        ),
        ("flaky", _) => ("flaky: first run pass; retry fail(unauthorized): 401".to_string(), None),
        ("infra-error", _) => ("infra-error: base-image registry 127.0.0.1:40123 unreachable".to_string(), None),
        _ => (String::new(), None),
    };
    let log = format!("{RUNNER_LOGS}/{}@{tool}-{version}.log", scenario.replace('/', "__"));
    // Where each kind of scenario's credentials come from, as the cell's environment shows.
    let env = match scenario {
        s if s.starts_with("ecr/") => {
            json!({"HOME": "/tmp/cell/home", "AWS_ACCESS_KEY_ID": "AKIA****", "AWS_SESSION_TOKEN": "****"})
        }
        s if s.contains("podman") => json!({"HOME": "/tmp/cell/home", "REGISTRY_AUTH_FILE": "/tmp/cell/auth.json"}),
        _ => json!({"HOME": "/tmp/cell/home", "DOCKER_CONFIG": "/tmp/cell/home/.docker"}),
    };
    let mut cell = json!({
        "tool": tool, "version": version, "scenario": scenario, "outcome": outcome, "detail": detail,
        "duration_ms": 2100, "tool_ms": 1800, "log": log,
        "env": env,
        "requests": [{"at_ms": 12, "method": "GET", "host": "registry.ko-matrix.test", "path": "/v2/", "status": 401}]
    });
    if let Some(class) = class {
        cell["class"] = class.into();
    }
    if let Some(diagnosis) = diagnosis {
        cell["diagnosis"] = diagnosis.into();
    }
    if outcome == "flaky" {
        cell["attempts"] = json!(["pass", "fail(unauthorized)"]);
    }
    cell
}

fn matrix(started: &str, shard: Option<&str>, cells: Vec<Value>) -> Value {
    let mut versions: Vec<Value> = Vec::new();
    for c in &cells {
        let info = json!({"tool": c["tool"], "version": c["version"], "route": "release", "sha256": "ab12"});
        if !versions.contains(&info) {
            versions.push(info);
        }
    }
    let mut scenarios: Vec<Value> = cells.iter().map(|c| c["scenario"].clone()).collect();
    scenarios.sort_by_key(|s| s.to_string());
    scenarios.dedup();
    let mut report = json!({
        "ko_matrix_version": "0.1.0", "started": started, "runtime": "process",
        "containment": "user+network namespace", "leak_check": "minted keys (embedded AWS emulator)",
        "versions": versions, "selected_scenarios": scenarios, "cells": cells
    });
    if let Some(shard) = shard {
        report["shard"] = shard.into();
    }
    report
}

fn write(path: &Path, value: &Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

/// Three nights: the first as two shards; the second adds the fix and finds v0.15.2 flaky; the
/// third adds three releases that behave like v0.15.3 and keeps its logs beside its matrix.
fn history(dir: &Path) -> PathBuf {
    let nights = dir.join("nights");
    let (env, anon, wrong, podman) =
        ("ecr/env-session", "registry/anonymous", "registry/wrong-password", "registry/podman-registry-auth-file");
    let ko_base = |v: &str| vec![cell("ko", v, anon, "pass"), cell("ko", v, wrong, "fail(unauthorized)")];
    let mut shard1 = vec![cell("ko", "v0.15.1", env, "pass"), cell("ko", "v0.15.2", env, "fail(unauthorized)")];
    shard1.extend(ko_base("v0.15.1"));
    let mut shard2 = ko_base("v0.15.2");
    shard2.extend([cell("crane", "v0.19.1", podman, "fail(unauthorized)"), cell("crane", "v0.20.7", podman, "pass")]);
    write(&nights.join("2026-11-29-shard-1.json"), &matrix("2026-11-29T03:17:00Z", Some("1/2"), shard1));
    write(&nights.join("2026-11-29-shard-2.json"), &matrix("2026-11-29T03:21:00Z", Some("2/2"), shard2));

    let mut second = vec![cell("ko", "v0.15.2", env, "flaky"), cell("ko", "v0.15.3", env, "pass")];
    second.extend(ko_base("v0.15.3"));
    write(&nights.join("2026-11-30.json"), &matrix("2026-11-30T03:17:00Z", None, second));

    let mut third = vec![
        cell("ko", "v0.15.1", env, "pass"),
        cell("ko", "v0.15.2", env, "fail(unauthorized)"),
        cell("ko", "v0.15.1", anon, "infra-error"),
    ];
    for v in ["v0.15.3", "v0.16.0", "v0.17.0", "v0.18.0"] {
        third.push(cell("ko", v, env, "pass"));
        third.extend(ko_base(v));
    }
    let night3 = nights.join("2026-12-01");
    for c in &third {
        let name = Path::new(c["log"].as_str().unwrap()).file_name().unwrap().to_owned();
        let body = format!("+ ko build --bare .\n{}\n", c["detail"].as_str().unwrap());
        std::fs::create_dir_all(night3.join("logs")).unwrap();
        std::fs::write(night3.join("logs").join(name), body).unwrap();
    }
    write(&night3.join("matrix.json"), &matrix("2026-12-01T03:17:00Z", None, third));
    write(
        &nights.join("2026-12-01-bisect.json"),
        &json!({
            "tool": "ko", "mode": "deps", "scenario": env, "good": "v0.15.1", "bad": "v0.15.2",
            "good_outcome": "pass", "bad_outcome": "fail(unauthorized)",
            "culprit": "github.com/awslabs/amazon-ecr-credential-helper/ecr-login v0.7.1 → v0.8.0",
            "culprit_items": [], "builds": 3, "wall_ms": 90000, "containment": "user+network namespace",
            "probes": [
                {"k": 1, "what": "v0.15.1 + 4 upgrades", "verdict": "bad", "outcome": "fail(unauthorized)"},
                {"k": 2, "what": "v0.15.1 + ecr-login v0.8.0", "verdict": "bad", "outcome": "fail(unauthorized)"}
            ],
            "narrowing": {"raised": [], "added": [], "culprit": [], "carried": [],
                          "chain": "ecr-login v0.8.0 raised aws-sdk-go-v2/config, which no longer reads AWS_SESSION_TOKEN for ECR."}
        }),
    );
    nights
}

#[test]
fn the_site_from_three_nights_renders_in_chromium() {
    let chromium = support::program("chromium", "Debian's chromium");
    let dir = tempfile::tempdir().unwrap();
    let nights = history(dir.path());
    let site = dir.path().join("site");
    let out =
        ko_matrix().args(["publish", nights.to_str().unwrap(), "--out", site.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("published 3 night(s) from 4 file(s): 2 tool, 8 release, 20 cell page(s)"),
        "the two shards are one night: {}",
        text(&out)
    );
    let url = |page: &str| format!("file://{}", site.join(page).display());
    let profile = dir.path().join("profile");

    // The tool page: first bad and first fixed per scenario, alike releases in one column.
    let ko = support::chromium_dom(&chromium, &profile, &url("tools/ko.html"));
    let row =
        ko.split("<th>ecr/env-session</th>").nth(1).expect("a row for ecr/env-session").split("</tr>").next().unwrap();
    assert!(
        row.contains("<td class=\"v first-bad\"><a href=\"../releases/ko/v0.15.2.html\">v0.15.2</a></td>")
            && row.contains("<td class=\"v first-fixed\"><a href=\"../releases/ko/v0.15.3.html\">v0.15.3</a></td>"),
        "first bad v0.15.2, first fixed v0.15.3: {row}"
    );
    assert!(
        row.contains("▼ fail(unauthorized)") && row.contains("▲ pass"),
        "marked by symbols, not colour alone: {row}"
    );
    assert!(ko.contains("title=\"v0.15.3, v0.16.0, v0.17.0, v0.18.0\""), "four alike releases, one column: {ko}");
    assert!(ko.contains("<small>4 alike</small>"), "{ko}");
    let wrong = ko.split("<th>registry/wrong-password</th>").nth(1).unwrap().split("</tr>").next().unwrap();
    assert!(wrong.contains("never passed"), "a failure every release shares names no first bad: {wrong}");
    assert!(ko.contains("<svg") && ko.contains("<title>ko: pass rate per release, by family</title>"), "{ko}");
    let crane = support::chromium_dom(&chromium, &profile, &url("tools/crane.html"));
    assert!(
        crane.contains("v0.19.1</a> (oldest tested)</td>")
            && crane.contains("first-fixed\"><a href=\"../releases/crane/v0.20.7.html\">"),
        "{crane}"
    );

    // The search box, offline: `?q=` fills it and hides the rows that do not match.
    let filtered = support::chromium_dom(&chromium, &profile, &format!("{}?q=ecr", url("tools/ko.html")));
    assert!(filtered.contains("1 of 3 shown"), "{filtered}");
    assert!(
        filtered.contains("<tr data-family=\"registry\" data-search=\"ko registry/anonymous")
            && filtered.contains("hidden=\"\""),
        "{filtered}"
    );
    let by_source = support::chromium_dom(&chromium, &profile, &format!("{}?q=aws_session_token", url("index.html")));
    assert!(by_source.contains("1 of 4 shown"), "the credential variables are searchable: {by_source}");
    let by_vendor = support::chromium_dom(&chromium, &profile, &format!("{}?vendor=registry", url("index.html")));
    assert!(by_vendor.contains("3 of 4 shown"), "{by_vendor}");

    // The release page: the regression with its diagnosis, deciding line, bisect command and chain.
    let release = support::chromium_dom(&chromium, &profile, &url("releases/ko/v0.15.2.html"));
    assert!(release.contains("<h3>▼ Regressions: 1</h3>"), "{release}");
    assert!(release.contains("No request reached api.ecr.*: ko did not fetch an ECR token"), "{release}");
    assert!(release.contains("unexpected status code 401 Unauthorized</pre>"), "{release}");
    assert!(
        release
            .contains("ko-matrix bisect --tool ko --good v0.15.1 --bad v0.15.2 --scenario ecr/env-session --mode deps"),
        "{release}"
    );
    assert!(
        release.contains("no longer reads AWS_SESSION_TOKEN for ECR.")
            && release.contains("v0.15.1 + ecr-login v0.8.0: fail(unauthorized)"),
        "{release}"
    );
    let fixed = support::chromium_dom(&chromium, &profile, &url("releases/ko/v0.15.3.html"));
    assert!(fixed.contains("<h3>▲ Fixes: 1</h3>"), "{fixed}");

    // The cell page: its log, its history, when it last changed, the flaky night.
    let cell_page = "cells/ko/v0.15.2/ecr/env-session.html";
    let cell = support::chromium_dom(&chromium, &profile, &url(cell_page));
    let log = "../../../../logs/ko/v0.15.2/ecr/env-session.log";
    assert!(cell.contains(&format!("<a class=\"log\" href=\"{log}\">")), "the cell page links to its log: {cell}");
    let log_text = std::fs::read_to_string(site.join("cells/ko/v0.15.2/ecr").join(log)).unwrap();
    assert!(log_text.contains("401 Unauthorized"), "{log_text}");
    assert!(cell.contains("Last changed on 2026-12-01: flaky → fail(unauthorized)."), "{cell}");
    assert!(cell.contains("↻ flaky</strong> on 2026-11-30."), "{cell}");
    assert!(cell.contains("Never an infra-error."), "{cell}");
    let infra = support::chromium_dom(&chromium, &profile, &url("cells/ko/v0.15.1/registry/anonymous.html"));
    assert!(infra.contains("⚠ an infra-error</strong> on 2026-12-01."), "{infra}");

    // The index: every night, the chart of changes per night.
    let index = support::chromium_dom(&chromium, &profile, &url("index.html"));
    assert!(index.contains("3 night(s), 2026-11-29 to 2026-12-01"), "{index}");
    assert!(
        index.contains("<title>2026-12-01: 2 cell(s) changed</title>"),
        "flaky → fail, pass → infra-error: {index}"
    );
    let badge = std::fs::read_to_string(site.join("badges/ko/v0.15.2/ecr/env-session.svg")).unwrap();
    assert!(badge.contains("<title>ko v0.15.2 · ecr/env-session: ✗ broken (unauthorized)</title>"), "{badge}");

    // A screenshot of each page kind.
    let keep = Path::new(env!("CARGO_MANIFEST_DIR")).join("results/latest");
    for (name, page) in [
        ("tool", "tools/ko.html"),
        ("release", "releases/ko/v0.15.2.html"),
        ("cell", cell_page),
        ("index", "index.html"),
    ] {
        let shot = dir.path().join(format!("publish-{name}.png"));
        support::chromium(
            &chromium,
            &profile,
            &url(page),
            &[&format!("--screenshot={}", shot.display()), "--window-size=1100,700", "--virtual-time-budget=3000"],
        );
        let png = std::fs::read(&shot).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(png.len() > 10_000, "{name}: a rendered page, not a blank one ({} bytes)", png.len());
        if std::fs::create_dir_all(&keep).is_ok() {
            let _ = std::fs::copy(&shot, keep.join(format!("publish-{name}.png")));
        }
    }
}

#[test]
fn bad_input_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let nights = history(dir.path());
    std::fs::write(nights.join("notes.json"), "{\"cells\": 3}").unwrap();
    let out = ko_matrix()
        .args(["publish", nights.to_str().unwrap(), "--out", dir.path().join("site").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("notes.json:1:") && text(&out).contains("not a ko-matrix matrix.json"),
        "{}",
        text(&out)
    );

    std::fs::remove_file(nights.join("notes.json")).unwrap();
    let busy = dir.path().join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("keep.txt"), "mine").unwrap();
    let out =
        ko_matrix().args(["publish", nights.to_str().unwrap(), "--out", busy.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not empty and not an earlier site"), "{}", text(&out));
    assert!(busy.join("keep.txt").is_file());

    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = ko_matrix().args(["publish", empty.to_str().unwrap(), "--out", busy.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("holds no matrix.json"), "{}", text(&out));
}
