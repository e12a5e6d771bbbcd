//! The payload a cell makes for itself, against the real tool: the chart the harness packs is
//! one `helm` reads (`helm show chart`, `helm template`).

mod support;

use std::sync::Arc;

use ko_matrix::cache::Cache;
use ko_matrix::events::Silent;
use ko_matrix::payload::Chart;
use ko_matrix::tool::{self, FetchSettings, Source, ToolFetcher};

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
