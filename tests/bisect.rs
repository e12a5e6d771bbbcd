//! Real bisections of the ko#1245 cell through the CLI, with bisect.json checked: between
//! releases, and through ko's dependency upgrades down to the module inside cosign's upgrade.
//! (Deps mode builds ko 17 times: about 8 minutes cold, 2 once the builds are cached.)

mod support;

use support::ko_matrix;

#[test]
fn releases_bisect_names_v0_15_2_and_refuses_ends_that_agree() {
    let out = tempfile::tempdir().unwrap();
    let run = ko_matrix()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "bisect",
            "--good",
            "v0.15.1",
            "--bad",
            "v0.15.2",
            "--scenario",
            "ecr/env-session",
            "--candidates",
            "v0.15.1,v0.15.2",
            "--out",
        ])
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("culprit: v0.15.2 is the first bad release (the last good is v0.15.1)"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("bisect.json")).unwrap()).unwrap();
    assert_eq!(
        (report["good_outcome"].as_str(), report["bad_outcome"].as_str()),
        (Some("pass"), Some("fail(unauthorized)"))
    );
    assert_eq!(report["probes"].as_array().unwrap().len(), 2, "the two ends were re-run first: {report}");

    let agree = ko_matrix()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "bisect",
            "--good",
            "v0.15.1",
            "--bad",
            "v0.15.3",
            "--scenario",
            "ecr/env-session",
            "--candidates",
            "v0.15.2",
            "--out",
        ])
        .arg(out.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&agree.stderr);
    assert_eq!(agree.status.code(), Some(2), "ends that agree are a wrong premise, exit 2: {stderr}");
    assert!(
        stderr.contains("good (v0.15.1) and bad (v0.15.3) both give `pass` for ecr/env-session: nothing to bisect"),
        "{stderr}"
    );

    let unknown = ko_matrix()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["bisect", "--good", "v0.15.1", "--bad", "v0.15.2", "--scenario", "ecr/nope"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr.contains("no scenario `ecr/nope`; known scenarios: ")
            && stderr.contains(", ecr/cred-helper-ecr-login, "),
        "the error lists the choices: {stderr}"
    );
}

#[test]
fn deps_bisect_narrows_cosigns_upgrade_to_the_aws_sdk_core() {
    let out = tempfile::tempdir().unwrap();
    let run = ko_matrix()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "bisect",
            "--good",
            "v0.15.1",
            "--bad",
            "v0.15.2",
            "--scenario",
            "ecr/env-session",
            "--mode",
            "deps",
            "--out",
        ])
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("culprit: 1 of the 60 dependency upgrades from v0.15.1 to v0.15.2 break the cell: github.com/sigstore/cosign/v2 v2.2.1 → v2.2.3"), "{stdout}");
    assert!(
        stdout.contains("chain: github.com/sigstore/cosign/v2 v2.2.1 → v2.2.3 breaks the cell because it raises github.com/aws/aws-sdk-go-v2 v1.21.2 → v1.24.1; that alone"),
        "the second stage names the module inside cosign's upgrade: {stdout}"
    );
    assert!(!stdout.contains("separates the builds"), "the ranked chain replaces the long list: {stdout}");
    for line in stdout.lines().filter(|l| l.contains(" + ")) {
        assert!(line.matches('@').count() <= 3, "a probe line lists at most three modules: {line}");
    }

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("bisect.json")).unwrap()).unwrap();
    let narrowing = &report["narrowing"];
    assert_eq!(narrowing["culprit"][0]["module"], "github.com/aws/aws-sdk-go-v2", "{narrowing}");
    assert_eq!(narrowing["culprit"].as_array().unwrap().len(), 1, "{narrowing}");
    let raised = narrowing["raised"].as_array().unwrap();
    assert!(
        raised.len() > 10 && raised.iter().all(|u| u["module"] != "github.com/sigstore/cosign/v2"),
        "the delta, less cosign itself: {narrowing}"
    );
    assert!(!report["separating_modules"].as_array().unwrap().is_empty(), "the full list stays in bisect.json");
    let probes = report["probes"].as_array().unwrap();
    let stage_two: Vec<_> = probes.iter().filter(|p| p["what"].as_str().unwrap().starts_with("stage 2:")).collect();
    assert!(
        !stage_two.is_empty()
            && stage_two
                .iter()
                .all(|p| !p["upgrades"].as_array().unwrap().is_empty()
                    && !p["build_list"].as_array().unwrap().is_empty()),
        "every probe's set and build list are kept"
    );
}
