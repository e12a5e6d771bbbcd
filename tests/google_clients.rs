//! Cross-checks of Google's emulated identity services and gcr.io front with Google's own
//! Python client, `google-auth` (PyPI), unmodified, through the gateway: the JWT-bearer grant
//! of a service-account key, Workload Identity Federation from the credentials file
//! `google-github-actions/auth` writes (ID token from GitHub's endpoint, STS, impersonation),
//! and the GCE metadata server. Each access token must then buy a push token at gcr.io. A
//! refusal must reach the client in Google's words. If google-auth disagrees with the
//! emulator, the emulator is wrong.

mod support;

use std::process::{Command, Stdio};

use ko_matrix::provision::GoTool;
use ko_matrix::scenario::Flavour;
use ko_matrix::world::World;
use support::{provisioner, TestWorld};

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

/// A world with the gcp front, one gateway session and the cell's account there.
struct GcpCell {
    world: World,
    session: ko_matrix_emulators::gateway::Session,
    cell: ko_matrix::world::VendorCell,
    dir: tempfile::TempDir,
}

impl GcpCell {
    /// A cell of `pusher@proj.iam.gserviceaccount.com` with `account` added to its `[account]`.
    async fn start(account: &str) -> GcpCell {
        let TestWorld { world, scenario, dir } = support::world_for(&format!("description = \"cross-check\"\n[target]\nregistry = \"gcp\"\n[account]\nuser = \"pusher\"\nowner = \"proj\"\n{account}\n")).await;
        let session = world.gateway.session().await.unwrap();
        let cell = world.vendors[&Flavour::Gcp].open_cell(&session, &scenario).await.unwrap();
        std::fs::create_dir_all(dir.path().join("no-other-certs")).unwrap();
        GcpCell { world, session, cell, dir }
    }

    /// Writes the credentials file `placeholder` holds; returns its path.
    fn write(&self, placeholder: &str) -> String {
        let file = self.dir.path().join(format!("{placeholder}.json"));
        std::fs::write(&file, &self.cell.values()[placeholder]).unwrap();
        file.display().to_string()
    }

    /// A client command through the gateway, as a cell's environment has it.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", self.dir.path())
            .envs(self.world.client_network(&self.session, &self.dir.path().join("no-other-certs")))
            .envs(self.cell.identity_values.env.iter())
            .stdin(Stdio::null());
        cmd
    }

    /// What went through the gateway: `METHOD host/path → status`, one a line.
    fn record(&self) -> String {
        let lines: Vec<String> = self
            .session
            .records()
            .iter()
            .filter(|r| r.method != "CONNECT")
            .map(|r| format!("{} {}{} → {}", r.method, r.host, r.path.split('?').next().unwrap_or_default(), r.status))
            .collect();
        lines.join("\n")
    }
}

/// Runs the client for a cell whose `[account]` is `account`, with `credentials`
/// (`key`, `external` or `metadata`); returns what it printed, then the gateway record.
async fn client_says(python: &str, account: &str, credentials: &str) -> String {
    let f = GcpCell::start(account).await;
    let argument = match credentials {
        "key" => format!("key:{}", f.write("GOOGLE_SERVICE_ACCOUNT_KEY")),
        "external" => format!("external:{}", f.write("GOOGLE_EXTERNAL_ACCOUNT")),
        _ => "metadata".to_string(),
    };
    let mut cmd = f.command(python);
    // requests reads its CA bundle from here, not SSL_CERT_FILE; GCE_METADATA_HOST is the
    // cell's own gateway listener on loopback, not reached through the proxy.
    cmd.env("REQUESTS_CA_BUNDLE", &f.world.ca_bundle)
        .env("NO_PROXY", "127.0.0.1")
        .args(["-c", CLIENT, &argument, "proj"]);
    let out = tokio::task::spawn_blocking(move || cmd.output()).await.unwrap().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(out.status.success(), "google-auth crashed: {said}\n{}", String::from_utf8_lossy(&out.stderr));
    format!("{said}\n{}", f.record())
}

#[tokio::test]
async fn google_auth_gets_tokens_gcr_io_accepts_and_refusals_in_googles_words() {
    // sys.executable: it runs without the PATH or environment a version manager's shim needs.
    let python = support::python_importing("google.auth, requests", "google-auth requests");
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
    assert!(
        metadata
            .contains("GET metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token → 200"),
        "{metadata}"
    );

    let deleted = client_says(&python, "credential = \"revoked\"", "key").await;
    assert!(
        deleted.starts_with("refused ") && deleted.contains("invalid_grant") && deleted.contains("account not found"),
        "{deleted}"
    );

    let audience = client_says(&python, "credential = \"wrong-audience\"", "external").await;
    assert!(
        audience.starts_with("refused ")
            && audience.contains("The audience in JWT does not match the expected values."),
        "{audience}"
    );

    let off_gce = client_says(&python, "", "metadata").await;
    assert!(off_gce.starts_with("refused "), "{off_gce}");
}

const GCR_HELPER: GoTool = GoTool {
    name: "docker-credential-gcr",
    module: "github.com/GoogleCloudPlatform/docker-credential-gcr/v2",
    package: "github.com/GoogleCloudPlatform/docker-credential-gcr/v2",
    version_var: None,
    version_args: &[],
};

/// `docker-credential-gcr` (Google's own helper, ADC from a key file) gives crane credentials
/// that gcr.io takes for a push and a pull. It signs its own JWT with the key (no call to
/// oauth2.googleapis.com), so a deleted account's key is refused by gcr.io itself.
#[tokio::test(flavor = "multi_thread")]
async fn docker_credential_gcr_gives_crane_credentials_gcr_io_takes() {
    let helper = provisioner().install(&GCR_HELPER, "v2.1.30").await.unwrap_or_else(|e| panic!("{e}")).path;
    let crane = support::crane("v0.19.1").await;
    let get = |f: &GcpCell, key: &str| {
        let mut child = f
            .command(&helper)
            .arg("get")
            .env("GOOGLE_APPLICATION_CREDENTIALS", key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"gcr.io").unwrap();
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    };

    let f = GcpCell::start("").await;
    let key = f.write("GOOGLE_SERVICE_ACCOUNT_KEY");
    let out = get(&f, &key);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let creds: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(creds["Username"].as_str().unwrap().starts_with("_dcgcr_"), "{creds}");
    assert_eq!(creds["Secret"].as_str().unwrap().split('.').count(), 3, "a self-signed JWT");
    // crane runs the helper itself, as `docker-credential-gcr configure-docker` sets it up.
    let path = format!("{}:/usr/local/bin:/usr/bin:/bin", helper.parent().unwrap().display());
    let crane_run = |f: &GcpCell, key: &str, args: &[&str]| {
        std::fs::create_dir_all(f.dir.path().join(".docker")).unwrap();
        std::fs::write(f.dir.path().join(".docker/config.json"), r#"{"credHelpers":{"gcr.io":"gcr"}}"#).unwrap();
        f.command(&crane).env("PATH", &path).env("GOOGLE_APPLICATION_CREDENTIALS", key).args(args).output().unwrap()
    };
    let copied = crane_run(&f, &key, &["copy", &f.world.base_image, "gcr.io/proj/app:copied"]);
    assert!(copied.status.success(), "crane copy: {}\n{}", String::from_utf8_lossy(&copied.stderr), f.record());
    let digest = crane_run(&f, &key, &["digest", "gcr.io/proj/app:copied"]);
    assert_eq!(String::from_utf8_lossy(&digest.stdout).trim(), f.world.base_image.rsplit('@').next().unwrap());
    let record = f.record();
    assert!(record.contains("GET gcr.io/v2/token → 200") && !record.contains("oauth2.googleapis.com"), "{record}");

    let deleted = GcpCell::start("credential = \"revoked\"").await;
    let key = deleted.write("GOOGLE_SERVICE_ACCOUNT_KEY");
    let refused = crane_run(&deleted, &key, &["copy", &deleted.world.base_image, "gcr.io/proj/app:copied"]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && said.contains("UNAUTHORIZED: Not Authorized."), "{said}");
}
