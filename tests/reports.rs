//! Reports end to end: sharded runs merge into the same matrix as one run; diff, merge and
//! report behave as documented; the HTML report renders in headless Chromium.

mod support;

use std::path::Path;
use std::process::Output;

use support::ko_matrix;

fn ko_matrix_in_repo(args: &[&str]) -> Output {
    ko_matrix().current_dir(env!("CARGO_MANIFEST_DIR")).args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn two_shards_merge_into_the_matrix_of_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, s1, s2, merged) =
        (dir.path().join("whole"), dir.path().join("s1"), dir.path().join("s2"), dir.path().join("merged"));
    let base = ["run", "--versions", "v0.15.1,v0.15.2", "--scenarios", "registry/*", "--out"];
    for (out, shard) in [(&whole, None), (&s1, Some("1/2")), (&s2, Some("2/2"))] {
        let mut args: Vec<&str> = base.to_vec();
        args.push(out.to_str().unwrap());
        if let Some(shard) = shard {
            args.extend(["--shard", shard]);
        }
        let run = ko_matrix_in_repo(&args);
        assert!(run.status.success(), "{}", text(&run));
    }
    let (n1, n2) = (
        json(&s1.join("matrix.json"))["cells"].as_array().unwrap().len(),
        json(&s2.join("matrix.json"))["cells"].as_array().unwrap().len(),
    );
    assert!(n1 > 0 && n2 > 0, "both shards ran cells: {n1} + {n2}");
    assert_eq!(n1 + n2, json(&whole.join("matrix.json"))["cells"].as_array().unwrap().len());

    let merge = ko_matrix_in_repo(&[
        "merge",
        "--out",
        merged.to_str().unwrap(),
        s1.join("matrix.json").to_str().unwrap(),
        s2.join("matrix.json").to_str().unwrap(),
    ]);
    assert!(merge.status.success(), "{}", text(&merge));
    let diff = ko_matrix_in_repo(&[
        "diff",
        whole.join("matrix.json").to_str().unwrap(),
        merged.join("matrix.json").to_str().unwrap(),
    ]);
    assert_eq!(diff.status.code(), Some(0), "the merged shards equal one run:\n{}", text(&diff));
    for report in ["matrix.md", "report.html", "junit.xml"] {
        assert!(merged.join(report).is_file(), "merge writes {report}");
    }

    // A shard that never reported is named, with the cells it took along.
    let one = ko_matrix_in_repo(&[
        "merge",
        "--out",
        dir.path().join("one").to_str().unwrap(),
        s1.join("matrix.json").to_str().unwrap(),
    ]);
    assert!(one.status.success(), "{}", text(&one));
    assert!(
        text(&one).contains(&format!("warning: shard 2/2: no matrix.json given, so its {n2} cells are absent: ko@")),
        "{}",
        text(&one)
    );
    let check = ko_matrix_in_repo(&["check", dir.path().join("one/matrix.json").to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(1), "check fails on the absent cells: {}", text(&check));
    assert!(text(&check).contains("missing: ko@"), "{}", text(&check));

    // Overlapping shards are refused.
    let overlap = ko_matrix_in_repo(&[
        "merge",
        "--out",
        merged.to_str().unwrap(),
        s1.join("matrix.json").to_str().unwrap(),
        s1.join("matrix.json").to_str().unwrap(),
    ]);
    assert_eq!(overlap.status.code(), Some(2), "{}", text(&overlap));
    assert!(text(&overlap).contains("appears in more than one shard"), "{}", text(&overlap));

    // A changed cell shows up in diff, with exit 1.
    let mut changed = json(&whole.join("matrix.json"));
    let cell = changed["cells"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["scenario"] == "registry/anonymous" && c["version"] == "v0.15.2")
        .unwrap();
    cell["outcome"] = "fail".into();
    cell["class"] = "unauthorized".into();
    let changed_path = dir.path().join("changed.json");
    std::fs::write(&changed_path, serde_json::to_vec(&changed).unwrap()).unwrap();
    let diff =
        ko_matrix_in_repo(&["diff", whole.join("matrix.json").to_str().unwrap(), changed_path.to_str().unwrap()]);
    assert_eq!(diff.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&diff.stdout), "ko@v0.15.2::registry/anonymous: pass → fail(unauthorized)\n");

    // `report` re-renders from matrix.json alone.
    for report in ["matrix.md", "report.html", "junit.xml"] {
        std::fs::remove_file(whole.join(report)).unwrap();
    }
    let rerender = ko_matrix_in_repo(&["report", whole.to_str().unwrap()]);
    assert!(rerender.status.success(), "{}", text(&rerender));
    let junit = std::fs::read_to_string(whole.join("junit.xml")).unwrap();
    assert_eq!(junit.matches("<testcase ").count(), n1 + n2);
    // Every cell is as the committed snapshots record it: no testcase fails, and an expected
    // failure passes naming its outcome.
    assert!(junit.contains("failures=\"0\" errors=\"0\""), "{junit}");
    assert!(junit.contains("<system-out>fail(unauthorized) as the snapshot records: The registry refused the Basic credentials ko sent (401): a wrong user or password. ko exited 1"), "the diagnosis leads: {junit}");
    let md = std::fs::read_to_string(whole.join("matrix.md")).unwrap();
    // Both versions give every registry cell alike, so they share one column.
    assert!(md.contains("| ko | v0.15.1 … v0.15.2 (2) |"), "{md}");
    assert!(md.contains("| `registry/wrong-password` | ▫️ fail(unauthorized) |\n"), "{md}");

    // A file that is not a matrix is bad input, located.
    std::fs::write(dir.path().join("bad.json"), "{\"cells\": 3}").unwrap();
    let bad =
        ko_matrix_in_repo(&["diff", dir.path().join("bad.json").to_str().unwrap(), changed_path.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(text(&bad).contains("bad.json:1:"), "{}", text(&bad));
}

#[test]
fn the_html_report_renders_in_headless_chromium() {
    let chromium = support::program("chromium", "Debian's chromium");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = ko_matrix_in_repo(&[
        "run",
        "--versions",
        "v0.15.1,v0.15.2",
        "--scenarios",
        "registry/anonymous,registry/wrong-password,ecr/env-session",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run));
    // A link from before cells named their tool opens the first tool's cell.
    let page = format!("file://{}#cell={}", out.join("report.html").display(), "v0.15.1::registry/wrong-password");
    let profile = dir.path().join("profile");
    let html = support::chromium_dom(&chromium, &profile, &page);
    assert_eq!(html.matches("class=\"cell ").count(), 6, "six cells in the grid:\n{html}");
    assert!(
        html.contains("data-outcome=\"pass\"")
            && html.contains("data-outcome=\"fail\"")
            && html.contains(">fail(unauthorized)</td>"),
        "{html}"
    );
    // The seed regression stands out; the failure both versions share is muted.
    assert!(html.contains("<table class=\"grid\" id=\"grid-ko\" data-tool=\"ko\">"), "a grid per tool: {html}");
    assert!(html.contains("class=\"cell fail regression\" data-cell=\"ko@v0.15.2::ecr/env-session\""), "{html}");
    assert!(
        html.contains("<th class=\"regressed\" title=\"1 regression(s) against the previous version\">v0.15.2 ▼1</th>"),
        "{html}"
    );
    assert_eq!(
        html.matches("data-mark=\"shared-failure\"").count(),
        2,
        "registry/wrong-password fails alike in both: {html}"
    );
    assert_eq!(html.matches("data-mark=\"regression\"").count(), 1, "{html}");
    // The script ran: the cell named in the URL has its detail open, with the evidence.
    assert!(html.contains("<h2>ko@v0.15.1::registry/wrong-password: fail(unauthorized)</h2>"), "{html}");
    assert!(
        html.contains("Gateway record") && html.contains("basic.ko-matrix.test") && html.contains("KO_DOCKER_REPO"),
        "{html}"
    );
    assert!(html.contains("<p class=\"diagnosis\">The registry refused the Basic credentials ko sent (401): a wrong user or password.</p>"), "the detail says why: {html}");
    assert!(html.contains("class=\"cell fail shared-failure selected\""), "the clicked cell is highlighted: {html}");
    assert!(
        html.contains("<p>Fails the same way in every version: an expected failure, not a regression.</p>"),
        "the detail explains the muted cell: {html}"
    );
    let regressed = support::chromium_dom(
        &chromium,
        &profile,
        &format!("file://{}#cell={}", out.join("report.html").display(), "ko@v0.15.2::ecr/env-session"),
    );
    assert!(regressed.contains("<p>Regression: ecr/env-session was pass in v0.15.1. The committed snapshots record it. Explain it: ko-matrix bisect --tool ko --good v0.15.1 --bad v0.15.2 --scenario ecr/env-session --mode deps</p>"), "{regressed}");

    let shot = dir.path().join("report.png");
    support::chromium(
        &chromium,
        &profile,
        &page,
        &[&format!("--screenshot={}", shot.display()), "--window-size=1200,900", "--virtual-time-budget=3000"],
    );
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(png.len() > 10_000, "a rendered page, not a blank one ({} bytes)", png.len());
    let keep = Path::new(env!("CARGO_MANIFEST_DIR")).join("results/latest/report-screenshot.png");
    if std::fs::create_dir_all(keep.parent().unwrap()).is_ok() {
        let _ = std::fs::copy(&shot, keep);
    }
}
