//! Cross-checks of the Entra ID emulator and ACR's exchange with Azure's own Python client,
//! azure-identity (MSAL underneath: tenant discovery, then the v2 token endpoint), all through
//! the gateway: ClientSecretCredential and WorkloadIdentityCredential get a token, which ACR's
//! `/oauth2/exchange` takes, and refusals arrive in Entra's words. If these disagree with the
//! emulator, the emulator is wrong. Without azure-identity or azure-containerregistry
//! (`scripts/install-deps` installs both) each test fails, naming them.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ko_matrix::scenario::Flavour;
use ko_matrix::world::{VendorCell, World};
use support::TestWorld;

/// What the client does: get an Entra token (`secret` or `workload`), exchange it at ACR,
/// trade the refresh token for a registry token, ping `/v2/`.
const CLIENT: &str = r#"
import os, sys, requests
from azure.identity import ClientSecretCredential, WorkloadIdentityCredential
if sys.argv[1] == "secret":
    cred = ClientSecretCredential(os.environ["AZURE_TENANT_ID"], os.environ["AZURE_CLIENT_ID"], os.environ["AZURE_CLIENT_SECRET"])
else:
    cred = WorkloadIdentityCredential()
try:
    token = cred.get_token("https://management.azure.com/.default").token
except Exception as e:
    print("ERROR", type(e).__name__, str(e).replace("\n", " "))
    sys.exit(2)
reg = "komatrix.azurecr.io"
if len(sys.argv) > 2 and sys.argv[2] == "sdk":
    # azure-containerregistry does ACR's challenge, exchange and token flow itself.
    import io
    from azure.containerregistry import ContainerRegistryClient
    client = ContainerRegistryClient(f"https://{reg}", cred, audience="https://management.azure.com")
    repo = "cross/sdk"
    config, layer = b"{}", b"ko-matrix"
    try:
        config_digest, _ = client.upload_blob(repo, io.BytesIO(config))
        layer_digest, _ = client.upload_blob(repo, io.BytesIO(layer))
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": len(config)},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": len(layer)}]}
        digest = client.set_manifest(repo, manifest, tag="sdk")
        print("PUSHED", digest == client.get_manifest(repo, "sdk").digest)
    except Exception as e:
        print("ERROR", type(e).__name__, str(e).replace("\n", " "))
    sys.exit(0)
r = requests.post(f"https://{reg}/oauth2/exchange", data={"grant_type": "access_token", "service": reg, "tenant": os.environ["AZURE_TENANT_ID"], "access_token": token})
print("EXCHANGE", r.status_code)
r.raise_for_status()
r = requests.post(f"https://{reg}/oauth2/token", data={"grant_type": "refresh_token", "service": reg, "scope": "repository:cross/check:pull", "refresh_token": r.json()["refresh_token"]})
print("TOKEN", r.status_code)
r.raise_for_status()
r = requests.get(f"https://{reg}/v2/", headers={"Authorization": "Bearer " + r.json()["access_token"]})
print("PING", r.status_code)
"#;

/// The python3 that runs the clients; the test fails without azure-identity (install-deps).
fn python() -> PathBuf {
    PathBuf::from(support::python_importing("azure.identity, requests", "azure-identity requests"))
}

struct Fixture {
    world: World,
    _dir: tempfile::TempDir,
}

/// One gateway session with its ACR account and Entra identity.
struct Client<'a> {
    fixture: &'a Fixture,
    session: ko_matrix_emulators::gateway::Session,
    /// The ACR account and the Entra identity (`${AZURE_*}`) of the session.
    cell: VendorCell,
    home: tempfile::TempDir,
}

impl Fixture {
    async fn start() -> Fixture {
        let TestWorld { world, dir, .. } =
            support::world_for("description = \"cross-check\"\n[target]\nregistry = \"azure\"\n").await;
        Fixture { world, _dir: dir }
    }

    /// A session whose Entra identity is the `[azure]` table `azure` (TOML lines).
    async fn client(&self, azure: &str) -> Client<'_> {
        let session = self.world.gateway.session().await.unwrap();
        let text = format!("description = \"cross-check\"\n[target]\nregistry = \"azure\"\n[account]\nuser = \"komatrix\"\n[azure]\n{azure}\n");
        let scenario = support::scenario("azure/cross-check", &text);
        let cell = self.world.vendors[&Flavour::Azure].open_cell(&session, &scenario).await.unwrap();
        Client { fixture: self, session, cell, home: tempfile::tempdir().unwrap() }
    }
}

impl Client<'_> {
    /// Runs the client as `kind` with `tenant` (the identity's own unless given); its stdout.
    fn run(&self, python: &Path, kind: &str, tenant: Option<&str>) -> String {
        self.run_as(python, &[kind], tenant)
    }

    /// Runs the client with `args` (`secret` or `workload`, then `sdk` for the registry SDK).
    fn run_as(&self, python: &Path, args: &[&str], tenant: Option<&str>) -> String {
        let values = self.cell.values();
        let token_file = self.home.path().join("federated-token");
        std::fs::write(&token_file, &values["AZURE_FEDERATED_TOKEN"]).unwrap();
        let proxy = self.session.proxy_url();
        let out = Command::new(python)
            .args(["-c", CLIENT])
            .args(args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", self.home.path())
            .env("HTTPS_PROXY", &proxy)
            .env("HTTP_PROXY", &proxy)
            .env("SSL_CERT_FILE", &self.fixture.world.ca_bundle)
            .env("REQUESTS_CA_BUNDLE", &self.fixture.world.ca_bundle)
            .env("AZURE_TENANT_ID", tenant.unwrap_or(&values["AZURE_TENANT_ID"]))
            .env("AZURE_CLIENT_ID", &values["AZURE_CLIENT_ID"])
            .env("AZURE_CLIENT_SECRET", &values["AZURE_CLIENT_SECRET"])
            .env("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com/")
            .env("AZURE_FEDERATED_TOKEN_FILE", &token_file)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() || stdout.starts_with("ERROR"),
            "the client crashed:\n{stdout}\n{}\n{:#?}",
            String::from_utf8_lossy(&out.stderr),
            self.requests()
        );
        stdout
    }

    fn requests(&self) -> Vec<String> {
        self.session.records().iter().map(|r| format!("{} {}{} {}", r.method, r.host, r.path, r.status)).collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_identity_client_secret_and_workload_identity_get_tokens_acr_takes() {
    let python = python();
    let fixture = Fixture::start().await;

    let sp = fixture.client("").await;
    let out = sp.run(&python, "secret", None);
    assert!(
        out.contains("EXCHANGE 200") && out.contains("TOKEN 200") && out.contains("PING 200"),
        "{out}\n{:#?}",
        sp.requests()
    );
    let requests = sp.requests();
    let tenant = &sp.cell.values()["AZURE_TENANT_ID"];
    assert!(
        requests
            .iter()
            .any(|r| r == &format!("GET login.microsoftonline.com/{tenant}/v2.0/.well-known/openid-configuration 200")),
        "MSAL discovers the tenant first: {requests:#?}"
    );
    assert!(
        requests.iter().any(|r| r.starts_with(&format!("POST login.microsoftonline.com/{tenant}/oauth2/v2.0/token"))
            && r.ends_with(" 200")),
        "{requests:#?}"
    );

    let wi = fixture.client("identity = \"workload-identity\"").await;
    let out = wi.run(&python, "workload", None);
    assert!(out.contains("EXCHANGE 200") && out.contains("PING 200"), "{out}\n{:#?}", wi.requests());
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_identity_reports_entras_refusals() {
    let python = python();
    let fixture = Fixture::start().await;

    let expired = fixture.client("credential = \"expired\"").await;
    let out = expired.run(&python, "secret", None);
    assert!(
        out.starts_with("ERROR ClientAuthenticationError")
            && out.contains("AADSTS7000222: The provided client secret keys for app"),
        "{out}\n{:#?}",
        expired.requests()
    );

    let valid = fixture.client("").await;
    let out = valid.run(&python, "secret", Some("8f0d1e6a-5c2b-4a17-9d3e-000000000000"));
    // MSAL reads the tenant's OIDC configuration first; Entra's 400 (AADSTS90002) there becomes
    // MSAL's own sentence, as in Azure/azure-cli#22145.
    assert!(out.starts_with("ERROR") && out.contains("Unable to get authority configuration for https://login.microsoftonline.com/8f0d1e6a-5c2b-4a17-9d3e-000000000000"), "{out}");
    let requests = valid.requests();
    assert!(requests.iter().any(|r| r == "GET login.microsoftonline.com/8f0d1e6a-5c2b-4a17-9d3e-000000000000/v2.0/.well-known/openid-configuration 400"), "{requests:#?}");
    assert!(!requests.iter().any(|r| r.contains("/oauth2/")), "no token request for an unknown tenant: {requests:#?}");

    let wi = fixture.client("identity = \"workload-identity\"\ncredential = \"expired\"").await;
    let out = wi.run(&python, "workload", None);
    assert!(out.starts_with("ERROR") && out.contains("AADSTS700024"), "{out}\n{:#?}", wi.requests());
}

/// azure-containerregistry (Azure's registry SDK) runs ACR's challenge, `/oauth2/exchange` and
/// `/oauth2/token` itself and pushes an image; an AcrPull identity's push is refused.
#[tokio::test(flavor = "multi_thread")]
async fn azure_containerregistry_pushes_through_the_exchange() {
    let python = python();
    support::python_importing("azure.containerregistry", "azure-containerregistry");
    let fixture = Fixture::start().await;
    let pusher = fixture.client("").await;
    let out = pusher.run_as(&python, &["secret", "sdk"], None);
    assert!(out.trim() == "PUSHED True", "{out}\n{:#?}", pusher.requests());
    let requests = pusher.requests();
    for (start, end) in [
        ("POST komatrix.azurecr.io/oauth2/exchange?", " 200"),
        ("PUT komatrix.azurecr.io/v2/cross%2Fsdk/manifests/sdk", " 201"),
    ] {
        assert!(
            requests.iter().any(|r| r.starts_with(start) && r.ends_with(end)),
            "no `{start}… {end}`: {requests:#?}"
        );
    }

    let reader = fixture.client("role = \"AcrPull\"").await;
    let out = reader.run_as(&python, &["secret", "sdk"], None);
    assert!(
        out.starts_with("ERROR ClientAuthenticationError") && out.contains("authentication required"),
        "an AcrPull identity's push: {out}\n{:#?}",
        reader.requests()
    );
}
