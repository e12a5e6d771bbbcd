//! `ko-matrix shell` and `ko-matrix serve`: a cell, and a world, kept up for a person.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::ko_matrix;

fn repo() -> &'static str {
    env!("CARGO_MANIFEST_DIR")
}

/// Runs `ko-matrix ARGS` from the repository root: (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let out = ko_matrix().current_dir(repo()).args(args).stdin(Stdio::null()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A process's start time (field 22 of /proc/PID/stat), which tells it from a later process
/// given the same pid; `None` when it is gone or a zombie.
fn process_start(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    (fields.first() != Some(&"Z")).then(|| fields.get(19).map(|s| s.to_string()))?
}

fn cmdline(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default().replace('\0', " ")
}

#[test]
fn a_cell_shell_reproduces_the_push_and_records_its_requests() {
    let script = r#"ko version && ko build --bare . && echo "== record $KO_MATRIX_GATEWAY_RECORD" && cat "$KO_MATRIX_GATEWAY_RECORD""#;
    let (code, stdout, stderr) = run(&["shell", "ko@v0.15.1::registry/basic-auths", "--", "sh", "-c", script]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    // The banner, before the command: the cell, the push as the tool definition spells it,
    // and the record file the command's environment names.
    assert!(stderr.contains("cell      ko@v0.15.1::registry/basic-auths ("), "{stderr}");
    assert!(stderr.contains("push      ko build --bare .\n"), "{stderr}");
    let (before, record) = stdout.split_once("== record ").unwrap_or_else(|| panic!("{stdout}{stderr}"));
    let (record_file, record) = record.split_once('\n').unwrap();
    assert!(
        stderr.contains(&format!("record    {record_file} ($KO_MATRIX_GATEWAY_RECORD")),
        "the banner names the file: {stderr}"
    );
    // The fetched binary under its own name, and a push that succeeded.
    assert_eq!(before.lines().next(), Some("0.15.1"), "{stdout}");
    let repository = "basic.ko-matrix.test/cells/registry/basic-auths/ko/v0.15.1";
    let pushed = before
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{repository}@sha256:")))
        .unwrap_or_else(|| panic!("ko printed no digest: {stdout}{stderr}"));
    assert!(pushed.len() == 64 && pushed.chars().all(|c| c.is_ascii_hexdigit()), "{pushed}");
    // The record, as the cell log's "== gateway record" has it: the push's requests.
    let lines: Vec<&str> = record.lines().collect();
    assert!(lines.iter().all(|l| l.starts_with('+') && l.contains("ms ")), "{record}");
    assert!(
        lines.iter().any(|l| l.contains("ms GET basic.ko-matrix.test/v2/ → 401")),
        "ko's first, anonymous request: {record}"
    );
    let api = "basic.ko-matrix.test/v2/cells/registry/basic-auths/ko/v0.15.1";
    assert!(
        lines.iter().any(|l| l.contains(&format!("ms PUT {api}/manifests/latest → 201"))),
        "the manifest push: {record}"
    );
    let uploads =
        lines.iter().filter(|l| l.contains(&format!("ms PUT {api}/blobs/uploads/")) && l.ends_with(" → 201")).count();
    assert!(uploads >= 2, "blob uploads: {record}");
}

#[test]
fn a_command_exits_with_its_code_and_leaves_nothing_running() {
    // A process that leaves the command's process group (and session) still dies with the
    // harness.
    // It says its pid once it is in a session of its own, then becomes `sleep 300`.
    let script = r#"f="$TMPDIR/escaped.pid"; setsid sh -c 'echo $$ > "$0"; exec sleep 300' "$f" </dev/null >/dev/null 2>&1 & while [ ! -s "$f" ]; do sleep 0.05; done; cat "$f"; exit 7"#;
    let (code, stdout, stderr) = run(&["shell", "ko@v0.15.1::registry/anonymous", "--", "sh", "-c", script]);
    assert_eq!(code, 7, "{stdout}{stderr}");
    assert!(stderr.contains("push      ko build --bare .\n"), "the banner comes first: {stderr}");
    let pid: u32 = stdout.trim().parse().unwrap_or_else(|_| panic!("{stdout}{stderr}"));
    support::wait_for("the escaped sleep to die", Duration::from_secs(5), || {
        process_start(pid).is_none() || !cmdline(pid).starts_with("sleep 300")
    });
}

#[test]
fn without_a_command_it_opens_shell_from_the_environment() {
    let mut child = ko_matrix()
        .current_dir(repo())
        .args(["shell", "ko@v0.15.1::registry/anonymous"])
        .env("SHELL", "/bin/sh")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"ko version; echo \"$PWD\"; exit 4\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(4), "{stdout}{stderr}");
    assert!(stderr.contains("exit the shell to stop the world"), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "0.15.1", "{stdout}");
    assert!(
        stderr.contains(&format!("          in {}, with ko v0.15.1 first on PATH", lines[1])),
        "it starts where the push runs: {stdout}{stderr}"
    );
}

#[test]
fn an_unknown_cell_exits_2_naming_the_choices() {
    let (code, _, stderr) = run(&["shell", "ko@v0.15.1::registry/nope", "--", "true"]);
    assert_eq!(code, 2, "{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.starts_with("error: no scenario `registry/nope`; known scenarios: "), "{line}");
    assert!(line.contains("registry/basic-auths") && line.contains("ecr/env-session"), "{line}");

    let (code, _, stderr) = run(&["shell", "ko@v0.15.1", "--", "true"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("`ko@v0.15.1` is not a cell; name one as tool@version::scenario (ko@v0.15.2::ecr/env-session), or version::scenario for ko"), "{stderr}");

    let (code, _, stderr) = run(&["shell", "docker@v1.0.0::registry/anonymous", "--", "true"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("unknown tool `docker`; known tools: ko, cosign, crane, helm, oras, regctl"), "{stderr}");

    let (code, _, stderr) = run(&["serve", "--scenario", "registry/nope"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("no scenario `registry/nope`; known scenarios: ") && stderr.contains("registry/anonymous"),
        "{stderr}"
    );
}

/// Collects a pipe's lines as they come.
fn collect(pipe: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

#[test]
fn serve_prints_an_environment_any_client_can_use_and_stops_on_sigterm() {
    let mut child = ko_matrix()
        .current_dir(repo())
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = collect(child.stdout.take().unwrap());
    let stderr = collect(child.stderr.take().unwrap());
    let text = |lines: &Arc<Mutex<Vec<String>>>| lines.lock().unwrap().join("\n");
    support::wait_for("serve to print its environment", Duration::from_secs(120), || {
        text(&stderr).contains("Ctrl-C or SIGTERM stops the world") || child.try_wait().unwrap().is_some()
    });
    let env: Vec<(String, String)> = stdout
        .lock()
        .unwrap()
        .iter()
        .map(|l| {
            let (key, value) = l
                .strip_prefix("export ")
                .and_then(|l| l.split_once('='))
                .unwrap_or_else(|| panic!("not an export line: {l}"));
            (key.to_string(), value.trim_matches('\'').to_string())
        })
        .collect();
    let get = |key: &str| {
        env.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {key}: {}\n{}", text(&stdout), text(&stderr)))
    };
    let record = get("KO_MATRIX_GATEWAY_RECORD");

    // curl, a client the harness knows nothing about, through the printed proxy and CA.
    let curl = |url: &str, user: Option<String>| {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", &get("SSL_CERT_FILE")]).arg(url);
        if let Some(user) = user {
            cmd.arg("--user").arg(user);
        }
        cmd.env_remove("NO_PROXY").env_remove("no_proxy").env("HTTPS_PROXY", get("HTTPS_PROXY"));
        let out = cmd.output().expect("curl runs");
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };
    let anonymous = get("KO_MATRIX_REGISTRY_ANONYMOUS");
    assert_eq!(curl(&format!("https://{anonymous}/v2/"), None), "200");
    let basic = get("KO_MATRIX_REGISTRY_BASIC");
    assert_eq!(curl(&format!("https://{basic}/v2/"), None), "401");
    assert_eq!(
        curl(&format!("https://{basic}/v2/"), Some(format!("{}:{}", get("KO_MATRIX_USER"), get("KO_MATRIX_PASSWORD")))),
        "200",
        "the printed credentials work"
    );
    let recorded = std::fs::read_to_string(&record).unwrap();
    assert!(recorded.contains(&format!("ms GET {anonymous}/v2/ → 200\n")), "{recorded}");
    assert!(
        recorded.contains(&format!("ms GET {basic}/v2/ → 401\n"))
            && recorded.contains(&format!("ms GET {basic}/v2/ → 200\n")),
        "{recorded}"
    );

    let descendants: Vec<(u32, String)> = ko_matrix::process::descendants(child.id())
        .into_iter()
        .filter_map(|pid| Some((pid, process_start(pid)?)))
        .collect();
    assert!(!descendants.is_empty(), "the world has child processes (its registries)");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "serve did not stop within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(143), "{}", text(&stderr));
    support::wait_for("stderr to close", Duration::from_secs(5), || {
        text(&stderr).contains("terminated; stopping child processes")
    });
    std::thread::sleep(Duration::from_millis(500));
    let orphans: Vec<String> = descendants
        .iter()
        .filter(|(pid, start)| process_start(*pid).as_ref() == Some(start))
        .map(|(pid, _)| format!("{pid}: {}", cmdline(*pid)))
        .collect();
    assert!(orphans.is_empty(), "processes outlived serve: {orphans:?}");
    assert!(!std::path::Path::new(&record).exists(), "serve's files go with it");
}
