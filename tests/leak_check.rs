//! The leak check of a LocalStack-configured run, without Docker: `ecr.localstack_endpoint`
//! names a stand-in for LocalStack's edge port (it accepts any key, as LocalStack does), and
//! a stand-in crane signs one ECR API call through the gateway, with its cell's own key or
//! with the host's. The run records its leak check and flags the host's key, and only it.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use support::ko_matrix;

/// The host's own key ids, as the run's environment and shared credentials file hold them.
const HOST_ENV_KEY: &str = "AKIAHOSTENVKEY000001";
const HOST_FILE_KEY: &str = "AKIAHOSTFILEKEY00002";

/// Answers what the LocalStack backend asks before cells run (CreateRepository,
/// GetAuthorizationToken), whatever the key; anything else is a 404.
async fn fake_localstack(listener: TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { return };
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&request).to_ascii_lowercase();
            let (status, body) = if head
                .contains("x-amz-target: amazonec2containerregistry_v20150921.getauthorizationtoken")
            {
                (
                    "200 OK",
                    r#"{"authorizationData":[{"authorizationToken":"QVdTOmZha2UtcGFzc3dvcmQ=","expiresAt":4102444800}]}"#,
                )
            } else if head.contains("x-amz-target: amazonec2containerregistry_v20150921.createrepository") {
                ("200 OK", "{}")
            } else {
                ("404 Not Found", "{}")
            };
            let answer = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        });
    }
}

/// A crane that reports v0.19.1 and, asked to push, signs one ECR API call with the key its
/// environment names or, where `LEAK_FROM` names a file outside the cell, with the key in it.
const FAKE_CRANE: &str = r#"#!/bin/sh
[ "$1" = version ] && { echo v0.19.1; exit 0; }
key="${AWS_ACCESS_KEY_ID}"
[ -n "$LEAK_FROM" ] && key="$(cat "$LEAK_FROM")"
curl -sS -o /dev/null --proxy "$HTTPS_PROXY" --cacert "$SSL_CERT_FILE" -X POST \
  -H "Authorization: AWS4-HMAC-SHA256 Credential=$key/20260101/us-east-1/ecr/aws4_request, SignedHeaders=host, Signature=00" \
  -H "X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken" \
  https://api.ecr.us-east-1.amazonaws.com/
echo "Error: pushing is not what this stand-in does"
exit 1
"#;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_localstack_run_records_its_leak_check_and_flags_a_host_key() {
    // The stand-in crane signs with curl, which install-deps installs: without it, a failure.
    support::program("curl", "Debian's curl");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let crane = root.join("bin/crane");
    write(&crane, FAKE_CRANE);
    std::fs::set_permissions(&crane, std::fs::Permissions::from_mode(0o755)).unwrap();
    let leaked = root.join("host/found-key");
    write(&leaked, HOST_ENV_KEY);
    write(&root.join("host/credentials"), &format!("[default]\naws_access_key_id = {HOST_FILE_KEY}\n"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let endpoint = listener.local_addr().unwrap();
    rt.spawn(fake_localstack(listener));
    write(
        &root.join("matrix.toml"),
        &format!(
            "[tools.crane]\nversions = [\"v0.19.1\"]\nsource = \"path\"\npath = \"{}\"\n\n[ecr]\nbackend = \"localstack\"\nlocalstack_endpoint = \"http://{endpoint}\"\n",
            crane.display()
        ),
    );
    let ecr = "[target]\nregistry = \"ecr\"\n";
    write(
        &root.join("scenarios/ecr/own-key.toml"),
        &format!("description = \"the cell's own key\"\n{ecr}[env]\nAWS_ACCESS_KEY_ID = \"${{AWS_ACCESS_KEY_ID}}\"\n"),
    );
    // The key is in a comment here: that vouches for nothing.
    write(
        &root.join("scenarios/ecr/host-key.toml"),
        &format!(
            "# Must not sign with {HOST_ENV_KEY}.\ndescription = \"a tool that reads the host's key\"\n{ecr}[env]\nLEAK_FROM = \"{}\"\n",
            leaked.display()
        ),
    );
    let out = root.join("out");
    let run = ko_matrix()
        .current_dir(root)
        .args(["run", "--out", out.to_str().unwrap()])
        .env("AWS_ACCESS_KEY_ID", HOST_ENV_KEY)
        .env("AWS_SHARED_CREDENTIALS_FILE", root.join("host/credentials"))
        .env("AWS_CONFIG_FILE", root.join("host/absent"))
        .env_remove("AWS_ACCESS_KEY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(3), "the leak is infra-error: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("matrix.json")).unwrap()).unwrap();
    assert_eq!(report["leak_check"], "host key ids (LocalStack accepts any key; 2 known)", "{stderr}");
    assert!(
        stderr.contains("; leak check: host key ids (LocalStack accepts any key; 2 known); "),
        "the summary line names it: {stderr}"
    );
    let cell = |scenario: &str| {
        report["cells"].as_array().unwrap().iter().find(|c| c["scenario"] == scenario).cloned().unwrap()
    };
    let host = cell("ecr/host-key");
    assert_eq!(host["outcome"], "infra-error", "{host}");
    assert!(
        host["detail"].as_str().unwrap().starts_with(&format!(
            "infra-error: the cell leaked: crane signed AWS requests with access key id(s) {HOST_ENV_KEY} "
        )),
        "{host}"
    );
    let own = cell("ecr/own-key");
    assert_eq!(own["outcome"], "fail", "the cell's own key is no leak: {own}");
    let signed = own["requests"].as_array().unwrap().iter().any(|r| r["auth"] == "AWS4-HMAC-SHA256 123456789012");
    assert!(signed, "it signed with its own key (LocalStack's is the account number): {own}");
}
