//! `docker-credential-ko-matrix`: the credential helper ko-matrix gives cells whose scenario
//! uses `credsStore` / `credHelpers`. It is this binary, invoked under that name through a
//! link in the cell's `bin/` (multi-call, so an installed ko-matrix needs nothing beside it).
//! It speaks the docker credential-helper protocol (`get`, `store`, `erase`, `list` on
//! stdin/stdout) over a JSON file named by [`CREDENTIAL_HELPER_STORE_ENV`], and logs each call next
//! to it as evidence.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use ko_matrix::cell::CREDENTIAL_HELPER_STORE_ENV;

const NOT_FOUND: &str = "credentials not found in native keychain";

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    username: String,
    secret: String,
}

pub fn main() -> ExitCode {
    let Some(store) = std::env::var_os(CREDENTIAL_HELPER_STORE_ENV).map(PathBuf::from) else {
        println!("{CREDENTIAL_HELPER_STORE_ENV} is not set");
        return ExitCode::FAILURE;
    };
    let action = std::env::args().nth(1).unwrap_or_default();
    let mut input = String::new();
    if action != "list" && action != "version" {
        let _ = std::io::stdin().read_to_string(&mut input);
    }
    log_call(&store, &action, input.trim());
    let mut entries: BTreeMap<String, Entry> =
        std::fs::read(&store).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    match action.as_str() {
        "get" => match lookup(&entries, input.trim()) {
            Some((server, entry)) => {
                let answer =
                    serde_json::json!({ "ServerURL": server, "Username": entry.username, "Secret": entry.secret });
                println!("{answer}");
                ExitCode::SUCCESS
            }
            None => {
                println!("{NOT_FOUND}");
                ExitCode::FAILURE
            }
        },
        "store" => {
            #[derive(serde::Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Stored {
                #[serde(rename = "ServerURL")]
                server_url: String,
                username: String,
                secret: String,
            }
            let Ok(stored) = serde_json::from_str::<Stored>(&input) else {
                println!("store expects {{\"ServerURL\",\"Username\",\"Secret\"}} on stdin");
                return ExitCode::FAILURE;
            };
            entries.insert(normalise(&stored.server_url), Entry { username: stored.username, secret: stored.secret });
            save(&store, &entries)
        }
        "erase" => {
            entries.remove(&normalise(input.trim()));
            save(&store, &entries)
        }
        "list" => {
            let list: BTreeMap<&String, &String> = entries.iter().map(|(k, v)| (k, &v.username)).collect();
            println!("{}", serde_json::to_string(&list).expect("a map serialises"));
            ExitCode::SUCCESS
        }
        "version" => {
            println!("docker-credential-ko-matrix {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        other => {
            println!("unknown action {other:?}; expected get, store, erase, list or version");
            ExitCode::FAILURE
        }
    }
}

/// `https://host/v1/` and `host` name the same server.
fn normalise(server: &str) -> String {
    let server = server.trim().trim_start_matches("https://").trim_start_matches("http://");
    server.split('/').next().unwrap_or(server).to_string()
}

fn lookup<'a>(entries: &'a BTreeMap<String, Entry>, server: &str) -> Option<(&'a String, &'a Entry)> {
    let wanted = normalise(server);
    entries.iter().find(|(k, _)| normalise(k) == wanted)
}

fn save(store: &PathBuf, entries: &BTreeMap<String, Entry>) -> ExitCode {
    match std::fs::write(store, serde_json::to_vec_pretty(entries).expect("a map serialises")) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("writing {}: {e}", store.display());
            ExitCode::FAILURE
        }
    }
}

fn log_call(store: &std::path::Path, action: &str, input: &str) {
    // Only the server for get/erase; never a secret.
    let subject = if action == "get" || action == "erase" { input } else { "" };
    if let Ok(mut log) = std::fs::OpenOptions::new().create(true).append(true).open(store.with_extension("calls")) {
        let _ = writeln!(log, "{action} {subject}");
    }
}
