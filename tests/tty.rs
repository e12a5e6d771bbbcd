//! `tty = true`: the cell's commands run on a real pseudo-terminal, and the tool sees one.

mod support;

use std::path::Path;

/// Runs one oras v1.3.6 cell of `scenario` and returns its log.
fn cell_log(scenario: &str, out: &Path) -> String {
    let output = support::ko_matrix()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "--versions", "oras@v1.3.6", "--scenarios", scenario, "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let log = out.join("logs").join(format!("{}@oras-v1.3.6.log", scenario.replace('/', "__")));
    std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()))
}

#[test]
fn the_tool_sees_a_terminal_on_stdout_only_when_the_scenario_asks() {
    let dir = tempfile::tempdir().unwrap();
    // oras draws its progress display only when stdout is a terminal (its TTY mode): the
    // cursor hidden, the lines redrawn in place.
    let on_terminal = cell_log("tty/basic-auths", &dir.path().join("tty"));
    assert!(on_terminal.contains("\u{1b}[?25l"), "oras hid the cursor of its terminal: {on_terminal}");
    assert!(on_terminal.contains("Uploaded"), "{on_terminal}");
    assert!(on_terminal.contains("\r\n"), "the terminal's line discipline turned newlines into CR LF");
    let piped = cell_log("registry/basic-auths", &dir.path().join("piped"));
    assert!(!piped.contains('\u{1b}'), "no terminal, no escape sequences: {piped}");
}
