//! A real bisection within CI's budget: the ko#1245 cell between cached releases, through
//! the CLI, with bisect.json checked. (Deps mode builds ko many times; its run is in the
//! issue notes, its search logic in the unit tests.)

mod support;

use support::ko_matrix;

#[test]
fn releases_bisect_names_v0_15_2_and_refuses_ends_that_agree() {
    let out = tempfile::tempdir().unwrap();
    let run = ko_matrix()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["bisect", "--good", "v0.15.1", "--bad", "v0.15.2", "--scenario", "ecr/env-session", "--candidates", "v0.15.1,v0.15.2", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("culprit: v0.15.2 is the first bad release (the last good is v0.15.1)"), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.path().join("bisect.json")).unwrap()).unwrap();
    assert_eq!((report["good_outcome"].as_str(), report["bad_outcome"].as_str()), (Some("pass"), Some("fail(unauthorized)")));
    assert_eq!(report["probes"].as_array().unwrap().len(), 2, "the two ends were re-run first: {report}");

    let agree = ko_matrix()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["bisect", "--good", "v0.15.1", "--bad", "v0.15.3", "--scenario", "ecr/env-session", "--candidates", "v0.15.2", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&agree.stderr);
    assert_eq!(agree.status.code(), Some(2), "ends that agree are a wrong premise, exit 2: {stderr}");
    assert!(stderr.contains("good (v0.15.1) and bad (v0.15.3) both give `pass` for ecr/env-session: nothing to bisect"), "{stderr}");

    let unknown = ko_matrix().current_dir(env!("CARGO_MANIFEST_DIR")).args(["bisect", "--good", "v0.15.1", "--bad", "v0.15.2", "--scenario", "ecr/nope"]).output().unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no scenario `ecr/nope`; known scenarios: ecr/cred-helper-ecr-login"), "{}", String::from_utf8_lossy(&unknown.stderr));
}
