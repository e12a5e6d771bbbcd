//! Cross-checks of Google's emulated identity services and gcr.io front with Google's own
//! Python client, `google-auth` (PyPI), unmodified, through the gateway: the JWT-bearer grant
//! of a service-account key, Workload Identity Federation from the credentials file
//! `google-github-actions/auth` writes (ID token from GitHub's endpoint, STS, impersonation),
//! and the GCE metadata server. Each access token must then buy a push token at gcr.io. A
//! refusal must reach the client in Google's words. If google-auth disagrees with the
//! emulator, the emulator is wrong.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use ko_matrix::cache::Cache;
use ko_matrix::config::{RuntimeChoice, ServicesConfig};
use ko_matrix::events::Silent;
use ko_matrix::provision::{GoProvisioner, ToolchainPolicy};
use ko_matrix::scenario::{Flavour, Scenario};
use ko_matrix::world::World;

/// Gets an access token with google-auth from the credentials `argv[1]` names
/// (`key:<file>`, `external:<file>`, `metadata`), then a push token for it at gcr.io; prints
/// `ok <principal>` or `refused <error>`.
const CLIENT: &str = r#"
import sys, google.auth, google.auth.transport.requests, requests
from google.oauth2 import service_account
from google.auth import compute_engine, exceptions
kind, _, path = sys.argv[1].partition(":")
scopes = ["https://www.googleapis.com/auth/cloud-platform"]
try:
    if kind == "key":
        creds = service_account.Credentials.from_service_account_file(path, scopes=scopes)
    elif kind == "external":
        # Also looks the project up (Resource Manager), which refreshes the credentials.
        creds, _ = google.auth.load_credentials_from_file(path, scopes=scopes)
    else:
        creds = compute_engine.Credentials()
    creds.refresh(google.auth.transport.requests.Request())
except exceptions.GoogleAuthError as e:
    print("refused", e)
    sys.exit(0)
project = sys.argv[2]
answer = requests.get("https://gcr.io/v2/token", params={"scope": f"repository:{project}/app:push,pull", "service": "gcr.io"}, auth=("oauth2accesstoken", creds.token))
print("ok" if answer.status_code == 200 and answer.json().get("token") else f"gcr.io answered {answer.status_code} {answer.text}")
"#;

/// The interpreter that has google-auth (`sys.executable`: it runs without the PATH or
/// environment a version manager's shim needs), or why there is none.
fn python_with_google_auth() -> Result<String, String> {
    let probe = Command::new("python3").args(["-c", "import sys, google.auth, requests; print(sys.executable)"]).stderr(Stdio::piped()).output();
    match probe {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
        Ok(out) => Err(String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or_default().to_string()),
        Err(e) => Err(format!("python3: {e}")),
    }
}

/// Runs the client for a cell whose `[account]` is `account`, with `credentials`
/// (`key`, `external` or `metadata`); returns what it printed.
async fn client_says(python: &str, account: &str, credentials: &str) -> String {
    let text = format!("description = \"cross-check\"\n[target]\nregistry = \"gcp\"\n[account]\nuser = \"pusher\"\nowner = \"proj\"\n{account}\n");
    let scenario = Scenario::parse("gcp/cross-check", Path::new("cross-check.toml"), &text).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let provisioner = GoProvisioner::new(Cache::from_env().unwrap(), ToolchainPolicy::Auto, std::time::Duration::from_secs(1800), Arc::new(Silent));
    let services = ServicesConfig { runtime: RuntimeChoice::Process, ..ServicesConfig::default() };
    let world = World::start(std::slice::from_ref(&scenario), &services, &provisioner, dir.path()).await.unwrap();
    let session = world.gateway.session().await.unwrap();
    let cell = world.vendors[&Flavour::Gcp].open_cell(&session, scenario.account.clone().unwrap()).await.unwrap();
    let values = cell.values();
    let argument = match credentials {
        "key" | "external" => {
            let file = dir.path().join(format!("{credentials}.json"));
            let placeholder = if credentials == "key" { "GOOGLE_SERVICE_ACCOUNT_KEY" } else { "GOOGLE_EXTERNAL_ACCOUNT" };
            std::fs::write(&file, &values[placeholder]).unwrap();
            format!("{credentials}:{}", file.display())
        }
        _ => "metadata".to_string(),
    };
    let no_other_certs = dir.path().join("no-other-certs");
    std::fs::create_dir_all(&no_other_certs).unwrap();
    let mut cmd = Command::new(python);
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", dir.path())
        .envs(world.client_network(&session, &no_other_certs))
        // requests reads its CA bundle from here, not SSL_CERT_FILE.
        .env("REQUESTS_CA_BUNDLE", &world.ca_bundle)
        // GCE_METADATA_HOST is the cell's own gateway listener, on loopback: not via the proxy.
        .env("NO_PROXY", "127.0.0.1")
        .envs(cell.identity_values.env.iter())
        .args(["-c", CLIENT, &argument, "proj"])
        .stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || cmd.output()).await.unwrap().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(out.status.success(), "google-auth crashed: {said}\n{}", String::from_utf8_lossy(&out.stderr));
    let hosts: Vec<String> = session.records().iter().filter(|r| r.method != "CONNECT").map(|r| format!("{} {}{} → {}", r.method, r.host, r.path.split('?').next().unwrap_or_default(), r.status)).collect();
    format!("{said}\n{}", hosts.join("\n"))
}

#[tokio::test]
async fn google_auth_gets_tokens_gcr_io_accepts_and_refusals_in_googles_words() {
    let python = match python_with_google_auth() {
        Ok(python) => python,
        Err(why) => {
            eprintln!("SKIPPED google-auth cross-check: google-auth is not installed here ({why}); `python3 -m pip install google-auth requests` (scripts/install-deps does)");
            return;
        }
    };
    let key = client_says(&python, "", "key").await;
    assert!(key.starts_with("ok\n"), "{key}");
    assert!(key.contains("POST oauth2.googleapis.com/token → 200"), "{key}");

    let federation = client_says(&python, "", "external").await;
    assert!(federation.starts_with("ok\n"), "{federation}");
    for step in ["GET pipelines.actions.githubusercontent.com/ko-matrix/idtoken → 200", "POST sts.googleapis.com/v1/token → 200", "POST iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/pusher@proj.iam.gserviceaccount.com:generateAccessToken → 200"] {
        assert!(federation.contains(step), "no `{step}` in:\n{federation}");
    }

    let metadata = client_says(&python, "attached_identity = true", "metadata").await;
    assert!(metadata.starts_with("ok\n"), "{metadata}");
    assert!(metadata.contains("GET metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token → 200"), "{metadata}");

    let deleted = client_says(&python, "credential = \"revoked\"", "key").await;
    assert!(deleted.starts_with("refused ") && deleted.contains("invalid_grant") && deleted.contains("account not found"), "{deleted}");

    let audience = client_says(&python, "credential = \"wrong-audience\"", "external").await;
    assert!(audience.starts_with("refused ") && audience.contains("The audience in JWT does not match the expected values."), "{audience}");

    let off_gce = client_says(&python, "", "metadata").await;
    assert!(off_gce.starts_with("refused "), "{off_gce}");
}
