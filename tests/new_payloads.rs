//! The payloads a cell makes for itself and the definition keys that drive them, against the
//! real tools: the chart the harness packs is one `helm` reads; a tool defined in TOML alone
//! (regctl's definition under another name) logs in with renamed flags, sets a plain-HTTP
//! registry up with its own command, and passes only when the gateway saw it push the tag the
//! harness then resolves — a tool that exits 0 without pushing fails.

mod support;

use std::path::Path;
use std::sync::Arc;

use ko_matrix::cache::Cache;
use ko_matrix::events::Silent;
use ko_matrix::payload::Chart;
use ko_matrix::report::{self, MatrixReport};
use ko_matrix::tool::{self, FetchSettings, Source, ToolFetcher};
use support::ko_matrix;

/// helm v3.13.3 from the go route (the shared cache; a build takes minutes when cold).
fn helm() -> std::path::PathBuf {
    let settings = FetchSettings { source: Source::Go, ..FetchSettings::default() };
    let helm = tool::by_name("helm").expect("helm is built in");
    let fetcher = ToolFetcher::new(helm, Cache::from_env().unwrap(), settings, Arc::new(Silent));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(fetcher.fetch("v3.13.3")).unwrap_or_else(|e| panic!("{e}")).path
}

#[test]
fn helm_reads_the_chart_the_harness_packs() {
    let helm = helm();
    let dir = tempfile::tempdir().unwrap();
    for name in ["v3.13.3", "app", "cells-dockerhub-index-v1-key-helm-v3.17.4"] {
        let chart = Chart::named(name);
        let file = dir.path().join(chart.file_name());
        std::fs::write(&file, &chart.bytes).unwrap();
        let run = |args: &[&str]| {
            let out = std::process::Command::new(&helm)
                .args(args)
                .arg(&file)
                .env_clear()
                .env("HOME", dir.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "helm {args:?} {name}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap()
        };
        let shown = run(&["show", "chart"]);
        assert!(shown.contains(&format!("name: {name}\n")) && shown.contains("version: 0.1.0\n"), "{shown}");
        assert!(shown.contains("apiVersion: v2\n"), "{shown}");
        let rendered = run(&["template", "release"]);
        assert!(rendered.contains(&format!("name: release-{name}\n")), "{rendered}");
        assert!(rendered.contains("message: \"pushed by ko-matrix\""), "{rendered}");
    }
}

const SCENARIOS: [&str; 4] =
    ["registry/basic-auths", "registry/no-credentials", "registry/tool-login", "http/loopback-127-0-0-1-insecure"];

#[test]
fn a_tool_defined_in_toml_alone_resolves_the_tag_it_pushed() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo.join("scenarios"), dir.path().join("scenarios")).unwrap();
    std::fs::create_dir(dir.path().join("tools")).unwrap();
    let regctl = std::fs::read_to_string(repo.join("tools/regctl.toml")).unwrap();
    std::fs::write(dir.path().join("tools/rgctl.toml"), &regctl).unwrap();
    // Exits 0 and pushes nothing: `version` in place of the push.
    let push = regctl.lines().find(|l| l.starts_with("push = ")).expect("regctl's push");
    std::fs::write(dir.path().join("tools/liar.toml"), regctl.replace(push, "push = [\"version\"]")).unwrap();
    let globs = SCENARIOS.map(|s| format!("{s:?}")).join(", ");
    let matrix = format!(
        "[tools.rgctl]\nversions = [\"v0.11.7\"]\nsource = \"go\"\nscenarios = [{globs}]\n\n[tools.liar]\nversions = [\"v0.11.7\"]\nsource = \"go\"\nscenarios = [\"registry/anonymous\"]\n"
    );
    std::fs::write(dir.path().join("matrix.toml"), matrix).unwrap();

    let out = ko_matrix().current_dir(dir.path()).args(["run", "--out", "out"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");

    let run = MatrixReport::read(&dir.path().join("out/matrix.json")).unwrap();
    let committed = report::read_snapshots(&repo.join("results")).unwrap();
    for scenario in SCENARIOS {
        let cell = run.cell("rgctl", "v0.11.7", scenario).unwrap_or_else(|| panic!("no rgctl cell for {scenario}"));
        let regctl = committed.label("regctl", "v0.11.7", scenario).expect("regctl's snapshot has the cell");
        assert_eq!(cell.label(), regctl, "rgctl@v0.11.7::{scenario}; log: {}", cell.log.display());
    }
    let log = |tool: &str, scenario: &str| {
        std::fs::read_to_string(dir.path().join(&run.cell(tool, "v0.11.7", scenario).unwrap().log)).unwrap()
    };
    let login = log("rgctl", "registry/tool-login");
    assert!(login.contains("$ rgctl registry login basic.ko-matrix.test --user "), "{login}");
    assert!(login.contains(" --pass-stdin "), "{login}");
    let insecure = log("rgctl", "http/loopback-127-0-0-1-insecure");
    assert!(insecure.contains("$ rgctl registry set --tls disabled 127.0.0.1:"), "{insecure}");
    let pushed = log("rgctl", "registry/basic-auths");
    assert!(pushed.contains("== fetch back\nfetched back sha256:"), "{pushed}");

    let liar = run.cell("liar", "v0.11.7", "registry/anonymous").unwrap();
    assert_eq!(liar.label(), "fail(other)");
    assert!(
        liar.detail.contains("but the gateway saw no PUT of ") && liar.detail.contains(":latest"),
        "{}",
        liar.detail
    );
}
