//! Registries as users address them (`scenarios/http/`, `scenarios/topology/`): each client
//! meets the address and scheme it would meet on a real machine, through `ko-matrix shell`
//! and real Go clients (crane, oras).

mod support;

use std::process::Stdio;

use support::ko_matrix;

/// Runs `ko-matrix shell CELL -- sh -c SCRIPT` from the repository root: (exit code, stdout,
/// stderr). `$KO_MATRIX_GATEWAY_RECORD` names the cell's gateway record.
fn shell(cell: &str, script: &str) -> (i32, String, String) {
    let out = ko_matrix()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["shell", cell, "--", "sh", "-c", script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_tls_client_at_a_plain_http_registry_fails_with_its_own_error() {
    let script = r#"crane push image.tar kind-registry:5000/t/app; echo "exit $?"; cat "$KO_MATRIX_GATEWAY_RECORD""#;
    let (code, stdout, stderr) = shell("crane@v0.22.1::http/single-label", script);
    assert_eq!(code, 0, "{stdout}{stderr}");
    // Go's own words for a plain-HTTP answer to its TLS hello: nothing terminated TLS for it.
    assert!(
        stderr.contains(r#"Get "https://kind-registry:5000/v2/": http: server gave HTTP response to HTTPS client"#),
        "{stderr}"
    );
    assert!(stdout.contains("exit 1"), "{stdout}");
    assert!(
        stdout.contains("TLS kind-registry:5000 → 400 (a TLS hello to a plain-HTTP registry"),
        "the record shows the hello and the answer: {stdout}"
    );
    assert!(!stdout.contains("GET kind-registry:5000/v2/"), "no request was served over TLS: {stdout}");
}

#[test]
fn a_plain_http_client_at_an_https_registry_is_refused() {
    // oras --plain-http (the scenario's `insecure`) at a registry that speaks only HTTPS.
    let script = r#"oras push --plain-http kind-registry:5000/t/app:latest artifact.txt; echo "exit $?"; cat "$KO_MATRIX_GATEWAY_RECORD""#;
    let (code, stdout, stderr) = shell("oras@v1.3.6::http/single-label-https-insecure", script);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("exit 1"), "{stdout}{stderr}");
    assert!(stderr.contains(r#""http://kind-registry:5000/v2/t/app/"#), "oras spoke plain HTTP: {stderr}");
    assert!(stderr.contains("response status code 400"), "{stderr}");
    assert!(
        stdout.contains("kind-registry:5000/v2/t/app/") && stdout.contains("→ 400 (plain HTTP to an HTTPS registry"),
        "the record shows the refused request: {stdout}"
    );
}

#[test]
fn a_hosts_entry_resolves_inside_the_cell_and_nowhere_else() {
    let (code, stdout, stderr) = shell("crane@v0.22.1::http/dot-local", "getent hosts registry.local");
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (address, name) = stdout.trim().split_once(char::is_whitespace).unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(name.trim(), "registry.local");
    assert!(address.starts_with("127.77."), "a loopback address of the cell's own: {address}");
    // The same name outside the cell: the machine's resolver knows nothing of it, and the cell's
    // lookup came from its hosts file, never a DNS query (there is no network to send one to).
    let outside = std::process::Command::new("getent").args(["hosts", "registry.local"]).output().unwrap();
    assert_eq!(outside.status.code(), Some(2), "getent outside the cell: {outside:?}");
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap();
    assert!(!hosts.contains("registry.local"), "the machine's hosts file is untouched: {hosts}");
}

#[test]
fn a_loopback_registry_is_dialled_directly_and_still_recorded() {
    let script = r#"crane push image.tar "$KO_MATRIX_REPOSITORY" && cat "$KO_MATRIX_GATEWAY_RECORD""#;
    let (code, stdout, stderr) = shell("crane@v0.22.1::http/localhost", script);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let repository = stderr.lines().find_map(|l| l.strip_prefix("repo      ")).unwrap_or_else(|| panic!("{stderr}"));
    let (registry, path) = repository.split_once(' ').unwrap().0.split_once('/').unwrap();
    assert!(registry.starts_with("localhost:"), "{registry}");
    assert!(stdout.contains(&format!("GET {registry}/v2/ → 200")), "{stdout}");
    assert!(stdout.contains(&format!("PUT {registry}/v2/{path}/manifests/latest → 201")), "{stdout}");
    // Go never proxies localhost: the session's own listener took the connection.
    assert!(!stdout.contains("CONNECT"), "nothing went through the proxy: {stdout}");
}

#[test]
fn a_cell_address_another_process_holds_is_not_used() {
    // The first cell of a `shell` gets 127.77.1.2:5000; this process holds it, as a second
    // run or shell on the machine's loopback would.
    let _held = std::net::TcpListener::bind("127.77.1.2:5000").expect("127.77.1.2:5000 is free before the test");
    let script = r#"getent hosts kind-registry && crane push --insecure image.tar kind-registry:5000/t/app"#;
    let (code, stdout, stderr) = shell("crane@v0.22.1::http/single-label", script);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let address = stdout.split_whitespace().next().unwrap_or_default();
    assert!(address.starts_with("127.77.") && address != "127.77.1.2", "{stdout}");
}
