//! Cross-checks of the ECR emulator with real, unmodified clients, all through the gateway:
//! the AWS CLI (botocore), `docker-credential-ecr-login`, crane, ko, and a raw chunked
//! upload. If these disagree with the emulator, the emulator is wrong, not the matrix.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use base64::Engine;
use ko_matrix::cache::Cache;
use ko_matrix::events::Silent;
use ko_matrix::tool::{self, FetchSettings, ToolFetcher};
use ko_matrix::world::World;
use ko_matrix_emulators::aws::state::AwsCell;
use support::TestWorld;

const CRANE_VERSION: &str = "v0.19.1";

const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

/// A world with the ECR emulator, one gateway session and its AWS cell.
struct Fixture {
    world: World,
    session: ko_matrix_emulators::gateway::Session,
    cell: Arc<AwsCell>,
    home: tempfile::TempDir,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn start(aws: &str) -> Fixture {
        let TestWorld { world, scenario, dir } =
            support::world_for(&format!("description = \"cross-check\"\n[target]\nregistry = \"ecr\"\n[aws]\n{aws}\n"))
                .await;
        let session = world.gateway.session().await.unwrap();
        let emulator = world.aws.as_ref().unwrap().emulator().unwrap();
        let cell = emulator.open_cell(session.id, scenario.aws.clone().unwrap()).await.unwrap();
        Fixture { world, session, cell, home: tempfile::tempdir().unwrap(), _dir: dir }
    }

    /// A client command with the cell's AWS credentials, through the gateway.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        let proxy = self.session.proxy_url();
        let home = self.home.path();
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", home)
            .env("HTTPS_PROXY", &proxy)
            .env("HTTP_PROXY", &proxy)
            .env("SSL_CERT_FILE", &self.world.ca_bundle)
            .env("AWS_CA_BUNDLE", &self.world.ca_bundle)
            .env("AWS_CONFIG_FILE", home.join("no-aws-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-aws-credentials"))
            .env("AWS_ACCESS_KEY_ID", &self.cell.key.id)
            .env("AWS_SECRET_ACCESS_KEY", &self.cell.key.secret)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ECR_CACHE_DIR", home.join("ecr-cache"))
            .stdin(Stdio::null());
        if let Some(token) = &self.cell.key.session_token {
            cmd.env("AWS_SESSION_TOKEN", token);
        }
        cmd
    }

    fn write_docker_auth(&self, password: &str) {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{password}"));
        std::fs::create_dir_all(self.home.path().join(".docker")).unwrap();
        std::fs::write(
            self.home.path().join(".docker/config.json"),
            format!(r#"{{"auths":{{"{HOST}":{{"auth":"{auth}"}}}}}}"#),
        )
        .unwrap();
    }
}

fn aws_cli() -> PathBuf {
    support::program("aws", "the AWS CLI, awscli from PyPI")
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_aws_cli_logs_in_and_manages_repositories() {
    let f = Fixture::start("credentials = \"static\"").await;
    let (ok, password, stderr) = run(f.command(aws_cli()).args(["ecr", "get-login-password"]));
    assert!(ok, "{stderr}");
    assert!(f.cell.password(password.trim()).is_some(), "the CLI's password was minted by the emulator");

    let (ok, out, stderr) =
        run(f.command(aws_cli()).args(["ecr", "create-repository", "--repository-name", "made-by-cli"]));
    assert!(ok, "{stderr}");
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["repository"]["repositoryUri"], format!("{HOST}/made-by-cli"));
    let (ok, out, stderr) = run(f.command(aws_cli()).args([
        "ecr",
        "describe-repositories",
        "--query",
        "repositories[].repositoryName",
        "--output",
        "text",
    ]));
    assert!(ok, "{stderr}");
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["app", "made-by-cli"]);

    let (ok, _, stderr) =
        run(f.command(aws_cli()).args(["ecr", "create-repository", "--repository-name", "made-by-cli"]));
    assert!(!ok);
    assert!(
        stderr.contains("RepositoryAlreadyExistsException")
            && stderr.contains(
                "The repository with name 'made-by-cli' already exists in the registry with id '123456789012'"
            ),
        "{stderr}"
    );
    let (ok, _, stderr) = run(f.command(aws_cli()).args(["ecr", "describe-images", "--repository-name", "nope"]));
    assert!(!ok);
    assert!(stderr.contains("RepositoryNotFoundException"), "{stderr}");

    let (ok, _, stderr) =
        run(f.command(aws_cli()).env("AWS_ACCESS_KEY_ID", "AKIAKOMATRIXUNKNOWN0").args(["ecr", "get-login-password"]));
    assert!(!ok);
    assert!(
        stderr.contains("UnrecognizedClientException")
            && stderr.contains("The security token included in the request is invalid."),
        "{stderr}"
    );
    let (ok, _, stderr) =
        run(f.command(aws_cli()).env("AWS_SECRET_ACCESS_KEY", "not-the-secret").args(["ecr", "get-login-password"]));
    assert!(!ok);
    assert!(
        stderr.contains("InvalidSignatureException")
            && stderr.contains("The request signature we calculated does not match"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_session_credentials_are_refused_by_name() {
    let f = Fixture::start("credentials = \"expired-session\"").await;
    let (ok, _, stderr) = run(f.command(aws_cli()).args(["ecr", "get-login-password"]));
    assert!(!ok);
    assert!(
        stderr.contains("ExpiredTokenException")
            && stderr.contains("The security token included in the request is expired"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ko_pushes_and_the_aws_cli_describes_the_image() {
    let f = Fixture::start("credentials = \"session\"").await;
    let ko =
        ToolFetcher::new(tool::shorthand(), Cache::from_env().unwrap(), FetchSettings::default(), Arc::new(Silent))
            .fetch("v0.15.1")
            .await
            .unwrap();
    let app = tempfile::tempdir().unwrap();
    std::fs::write(app.path().join("go.mod"), "module example.com/crosscheck\n\ngo 1.21\n").unwrap();
    std::fs::write(app.path().join("main.go"), "package main\n\nfunc main() {}\n").unwrap();
    std::fs::write(f.home.path().join(".ko.yaml"), format!("defaultBaseImage: {}\n", f.world.base_image)).unwrap();
    let go = which::which("go").unwrap();
    let gocache = String::from_utf8(Command::new(&go).args(["env", "GOCACHE"]).output().unwrap().stdout).unwrap();
    let (ok, out, stderr) = run(f
        .command(&ko.path)
        .args(["build", "--bare", "."])
        .current_dir(app.path())
        .env("PATH", format!("{}:/usr/bin:/bin", go.parent().unwrap().display()))
        .env("KO_DOCKER_REPO", format!("{HOST}/app"))
        .env("KO_CONFIG_PATH", f.home.path())
        .env("GOCACHE", gocache.trim())
        .env("GOPROXY", "off"));
    assert!(ok, "{stderr}");
    let digest = out.trim().rsplit('@').next().unwrap().to_string();

    let (ok, out, stderr) = run(f.command(aws_cli()).args(["ecr", "describe-images", "--repository-name", "app"]));
    assert!(ok, "{stderr}");
    let images: serde_json::Value = serde_json::from_str(&out).unwrap();
    let details = images["imageDetails"].as_array().unwrap();
    let pushed =
        details.iter().find(|d| d["imageDigest"] == digest.as_str()).unwrap_or_else(|| panic!("{digest} not in {out}"));
    assert_eq!(pushed["imageTags"], serde_json::json!(["latest"]));
    assert!(pushed["imageSizeInBytes"].as_u64().unwrap() > 0);

    let (ok, out, stderr) = run(f.command(aws_cli()).args([
        "ecr",
        "batch-get-image",
        "--repository-name",
        "app",
        "--image-ids",
        &format!("imageDigest={digest}"),
    ]));
    assert!(ok, "{stderr}");
    let got: serde_json::Value = serde_json::from_str(&out).unwrap();
    let manifest = got["images"][0]["imageManifest"].as_str().unwrap();
    assert_eq!(ko_matrix::base_image::digest(manifest.as_bytes()), digest);
}

#[tokio::test(flavor = "multi_thread")]
async fn ecr_login_gives_credentials_that_crane_pushes_and_pulls_with() {
    let f = Fixture::start("credentials = \"session\"").await;
    let helper = &f.world.aws.as_ref().unwrap().ecr_login;
    let mut child = f
        .command(helper)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), HOST.as_bytes()).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let creds: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(creds["Username"], "AWS");
    let password = creds["Secret"].as_str().unwrap();
    assert!(f.cell.password(password).is_some());

    let crane = support::crane(CRANE_VERSION).await;
    f.write_docker_auth(password);
    let target = format!("{HOST}/app:copied");
    let (ok, _, stderr) = run(f.command(&crane).args(["copy", &f.world.base_image, &target]));
    assert!(ok, "crane copy: {stderr}");
    let (ok, digest, stderr) = run(f.command(&crane).args(["digest", &target]));
    assert!(ok, "{stderr}");
    assert_eq!(digest.trim(), f.world.base_image.rsplit('@').next().unwrap());

    let (expired, _) = f.cell.mint_password(&f.cell.key, "123456789012", "us-east-1", -time::Duration::hours(1));
    f.write_docker_auth(&expired);
    let (ok, _, stderr) = run(f.command(&crane).args(["manifest", &target]));
    assert!(!ok);
    assert!(
        stderr.contains("DENIED")
            && stderr.contains("Your authorization token has expired. Reauthenticate and try again."),
        "{stderr}"
    );
    std::fs::remove_file(f.home.path().join(".docker/config.json")).unwrap();
    let (ok, _, stderr) = run(f.command(&crane).args(["manifest", &target]));
    assert!(!ok);
    assert!(stderr.contains("401 Unauthorized"), "without credentials ECR's challenge answers: {stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunked_upload_works_through_the_front() {
    let f = Fixture::start("credentials = \"static\"").await;
    let (password, _) = f.cell.mint_password(&f.cell.key, "123456789012", "us-east-1", time::Duration::hours(1));
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(f.session.proxy_url()).unwrap())
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_der(&f.world.ca.cert_der()).unwrap())
        .build()
        .unwrap();
    let blob: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let digest = ko_matrix::base_image::digest(&blob);
    let base = format!("https://{HOST}");
    let started =
        client.post(format!("{base}/v2/app/blobs/uploads/")).basic_auth("AWS", Some(&password)).send().await.unwrap();
    assert_eq!(started.status(), 202);
    let mut location = started.headers()["location"].to_str().unwrap().to_string();
    assert!(!location.contains("cell-"), "the backend's layout must not leak: {location}");
    for (start, chunk) in [(0usize, &blob[..120_000]), (120_000, &blob[120_000..])] {
        let url = if location.starts_with("http") { location.clone() } else { format!("{base}{location}") };
        let patched = client
            .patch(url)
            .basic_auth("AWS", Some(&password))
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{start}-{}", start + chunk.len() - 1))
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(patched.status(), 201, "ECR answers PATCH with 201");
        location = patched.headers()["location"].to_str().unwrap().to_string();
    }
    let url = if location.starts_with("http") { location.clone() } else { format!("{base}{location}") };
    let sep = if url.contains('?') { '&' } else { '?' };
    let put = client.put(format!("{url}{sep}digest={digest}")).basic_auth("AWS", Some(&password)).send().await.unwrap();
    assert_eq!(put.status(), 201);
    let head =
        client.head(format!("{base}/v2/app/blobs/{digest}")).basic_auth("AWS", Some(&password)).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], blob.len().to_string().as_str());
}

/// The AWS CLI resolving the same credential sources as the ECR scenarios, against the
/// emulator: if botocore and ko's Go SDK agree, the emulator (not ko) is right.
#[tokio::test(flavor = "multi_thread")]
async fn the_aws_cli_resolves_profiles_roles_web_identity_and_imds() {
    let f = Fixture::start("allow = [\"sts:AssumeRole\", \"sts:GetCallerIdentity\"]\nrole = { trust = \"user\", allow = [\"ecr:*\", \"sts:GetCallerIdentity\"] }\nimds = \"v2\"").await;
    let role_arn = f.cell.role_arn().unwrap();
    let home = f.home.path();
    std::fs::write(
        home.join("credentials"),
        format!("[base]\naws_access_key_id = {}\naws_secret_access_key = {}\n", f.cell.key.id, f.cell.key.secret),
    )
    .unwrap();
    std::fs::write(
        home.join("config"),
        format!("[profile pusher]\nrole_arn = {role_arn}\nsource_profile = base\nregion = us-east-1\n"),
    )
    .unwrap();
    let no_env_keys = |cmd: &mut Command| {
        cmd.env_remove("AWS_ACCESS_KEY_ID").env_remove("AWS_SECRET_ACCESS_KEY").env_remove("AWS_SESSION_TOKEN");
    };
    let identity =
        |out: &str| serde_json::from_str::<serde_json::Value>(out).unwrap()["Arn"].as_str().unwrap().to_string();

    // The user itself, from the environment.
    let (ok, out, stderr) = run(f.command(aws_cli()).args(["sts", "get-caller-identity"]));
    assert!(ok, "{stderr}");
    assert_eq!(identity(&out), "arn:aws:iam::123456789012:user/ko-matrix-ci");

    // A profile with role_arn + source_profile: AssumeRole, then the role.
    let mut cmd = f.command(aws_cli());
    no_env_keys(&mut cmd);
    let (ok, out, stderr) = run(cmd
        .env("AWS_CONFIG_FILE", home.join("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("credentials"))
        .args(["sts", "get-caller-identity", "--profile", "pusher"]));
    assert!(ok, "{stderr}");
    assert!(identity(&out).starts_with("arn:aws:sts::123456789012:assumed-role/ko-pusher/"), "{out}");
    let mut cmd = f.command(aws_cli());
    no_env_keys(&mut cmd);
    let (ok, password, stderr) = run(cmd
        .env("AWS_CONFIG_FILE", home.join("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("credentials"))
        .args(["ecr", "get-login-password", "--profile", "pusher"]));
    assert!(ok, "{stderr}");
    assert!(
        f.cell.password(password.trim()).is_some_and(|p| p.arn.contains(":assumed-role/ko-pusher/")),
        "the password belongs to the role"
    );

    // The user may not push itself: its own login works, its push would be denied.
    let (ok, _, stderr) = run(f.command(aws_cli()).args(["ecr", "describe-repositories"]));
    assert!(!ok);
    assert!(stderr.contains("AccessDeniedException") && stderr.contains("User: arn:aws:iam::123456789012:user/ko-matrix-ci is not authorized to perform: ecr:DescribeRepositories"), "{stderr}");

    // IMDSv2 through the gateway, when nothing else is configured.
    let mut cmd = f.command(aws_cli());
    no_env_keys(&mut cmd);
    let (ok, out, stderr) = run(cmd.args(["sts", "get-caller-identity"]));
    assert!(ok, "{stderr}");
    assert!(identity(&out).starts_with("arn:aws:sts::123456789012:assumed-role/ko-pusher/"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_aws_cli_uses_web_identity_and_sts_refuses_bad_tokens() {
    let f =
        Fixture::start("allow = []\nrole = { trust = \"oidc\", allow = [\"ecr:*\", \"sts:GetCallerIdentity\"] }").await;
    let oidc = &f.world.aws.as_ref().unwrap().emulator().unwrap().oidc;
    let token_file = f.home.path().join("token");
    let web_identity = |token: String| {
        std::fs::write(&token_file, token).unwrap();
        // The CLI caches assumed-role credentials in ~/.aws/cli/cache: each case starts clean.
        let _ = std::fs::remove_dir_all(f.home.path().join(".aws/cli/cache"));
        let mut cmd = f.command(aws_cli());
        cmd.env_remove("AWS_ACCESS_KEY_ID").env_remove("AWS_SECRET_ACCESS_KEY").env_remove("AWS_SESSION_TOKEN");
        cmd.env("AWS_WEB_IDENTITY_TOKEN_FILE", &token_file)
            .env("AWS_ROLE_ARN", f.cell.role_arn().unwrap())
            .env("AWS_ROLE_SESSION_NAME", "ci");
        run(cmd.args(["sts", "get-caller-identity"]))
    };
    let (ok, out, stderr) =
        web_identity(oidc.mint("repo:org/app:ref:refs/heads/main", ko_matrix_emulators::aws::oidc::STS_AUDIENCE, 600));
    assert!(ok, "{stderr}");
    assert!(out.contains("arn:aws:sts::123456789012:assumed-role/ko-pusher/ci"), "{out}");
    let (ok, _, stderr) = web_identity(oidc.mint("ci", ko_matrix_emulators::aws::oidc::STS_AUDIENCE, -600));
    assert!(!ok);
    assert!(stderr.contains("ExpiredTokenException") && stderr.contains("Token expired"), "{stderr}");
    let (ok, _, stderr) = web_identity(oidc.mint("ci", "api://AzureADTokenExchange", 600));
    assert!(!ok);
    assert!(stderr.contains("InvalidIdentityToken") && stderr.contains("Incorrect token audience"), "{stderr}");
}

/// ECR's own features through the AWS CLI, each then met by crane at the registry: tag
/// immutability, a repository policy's explicit deny, a CREATE_ON_PUSH creation template and
/// a pull through cache of the emulated public.ecr.aws.
#[tokio::test(flavor = "multi_thread")]
async fn the_aws_cli_sets_up_ecr_features_that_the_registry_enforces() {
    let f = Fixture::start("credentials = \"static\"").await;
    let aws = |args: &[&str]| {
        let (ok, out, stderr) = run(f.command(aws_cli()).args(args));
        assert!(ok, "aws {args:?}: {stderr}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let (password, _) = f.cell.mint_password(&f.cell.key, "123456789012", "us-east-1", time::Duration::hours(1));
    f.write_docker_auth(&password);
    let crane = support::crane(CRANE_VERSION).await;
    let child = {
        let (ok, index, stderr) = run(f.command(&crane).args(["manifest", &f.world.base_image]));
        assert!(ok, "{stderr}");
        let index: serde_json::Value = serde_json::from_str(&index).unwrap();
        let repository = f.world.base_image.split('@').next().unwrap().to_string();
        format!("{repository}@{}", index["manifests"][0]["digest"].as_str().unwrap())
    };

    // Tag immutability: PutImageTagMutability, then a second image under the same tag.
    let put =
        aws(&["ecr", "put-image-tag-mutability", "--repository-name", "app", "--image-tag-mutability", "IMMUTABLE"]);
    assert_eq!(
        put,
        serde_json::json!({"registryId": "123456789012", "repositoryName": "app", "imageTagMutability": "IMMUTABLE"})
    );
    let described = aws(&["ecr", "describe-repositories", "--repository-names", "app"]);
    assert_eq!(described["repositories"][0]["imageTagMutability"], "IMMUTABLE");
    let (ok, _, stderr) = run(f.command(&crane).args(["copy", &f.world.base_image, &format!("{HOST}/app:v1")]));
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = run(f.command(&crane).args(["copy", &child, &format!("{HOST}/app:v1")]));
    assert!(!ok);
    assert!(
        stderr.contains("TAG_INVALID: The image tag 'v1' already exists in the 'app' repository and cannot be overwritten because the repository is immutable."),
        "{stderr}"
    );
    let created =
        aws(&["ecr", "create-repository", "--repository-name", "frozen", "--image-tag-mutability", "IMMUTABLE"]);
    assert_eq!(created["repository"]["imageTagMutability"], "IMMUTABLE");

    // A repository policy denying the user what its identity policy (everything) allows.
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::123456789012:user/ko-matrix-ci"},"Action":["ecr:InitiateLayerUpload","ecr:PutImage","ecr:DescribeImages"]}]}"#;
    let set = aws(&["ecr", "set-repository-policy", "--repository-name", "frozen", "--policy-text", policy]);
    assert_eq!(set["policyText"], policy);
    assert_eq!(aws(&["ecr", "get-repository-policy", "--repository-name", "frozen"])["policyText"], policy);
    let (ok, _, stderr) = run(f.command(&crane).args(["copy", &f.world.base_image, &format!("{HOST}/frozen:v1")]));
    assert!(!ok);
    assert!(stderr.contains("DENIED: User: arn:aws:iam::123456789012:user/ko-matrix-ci is not authorized to perform: ecr:InitiateLayerUpload on resource: arn:aws:ecr:us-east-1:123456789012:repository/frozen with an explicit deny in a resource-based policy"), "{stderr}");
    let (ok, _, stderr) = run(f.command(aws_cli()).args(["ecr", "describe-images", "--repository-name", "frozen"]));
    assert!(!ok);
    assert!(
        stderr.contains("AccessDeniedException") && stderr.contains("with an explicit deny in a resource-based policy"),
        "{stderr}"
    );
    let (ok, _, stderr) = run(f.command(aws_cli()).args(["ecr", "get-repository-policy", "--repository-name", "app"]));
    assert!(!ok);
    assert!(stderr.contains("RepositoryPolicyNotFoundException"), "{stderr}");

    // CREATE_ON_PUSH: a push below the template's prefix creates the repository with its settings.
    let (ok, _, stderr) = run(f.command(&crane).args(["copy", &f.world.base_image, &format!("{HOST}/team/svc:v1")]));
    assert!(!ok);
    assert!(stderr.contains("NAME_UNKNOWN"), "no template yet: {stderr}");
    let template = aws(&[
        "ecr",
        "create-repository-creation-template",
        "--prefix",
        "team",
        "--applied-for",
        "CREATE_ON_PUSH",
        "--image-tag-mutability",
        "IMMUTABLE",
    ]);
    assert_eq!(template["registryId"], "123456789012");
    assert_eq!(template["repositoryCreationTemplate"]["prefix"], "team");
    assert_eq!(template["repositoryCreationTemplate"]["appliedFor"], serde_json::json!(["CREATE_ON_PUSH"]));
    let (ok, _, stderr) = run(f.command(aws_cli()).args([
        "ecr",
        "create-repository-creation-template",
        "--prefix",
        "team",
        "--applied-for",
        "CREATE_ON_PUSH",
    ]));
    assert!(!ok);
    assert!(stderr.contains("TemplateAlreadyExistsException"), "{stderr}");
    let (ok, _, stderr) = run(f.command(&crane).args(["copy", &f.world.base_image, &format!("{HOST}/team/svc:v1")]));
    assert!(ok, "{stderr}");
    let svc = aws(&["ecr", "describe-repositories", "--repository-names", "team/svc"]);
    assert_eq!(svc["repositories"][0]["imageTagMutability"], "IMMUTABLE", "the template's setting");

    // A pull through cache: the first pull creates ecr-public/ko-matrix/base from the upstream.
    let rule = aws(&[
        "ecr",
        "create-pull-through-cache-rule",
        "--ecr-repository-prefix",
        "ecr-public",
        "--upstream-registry-url",
        "public.ecr.aws",
    ]);
    assert_eq!(rule["ecrRepositoryPrefix"], "ecr-public");
    assert_eq!(rule["upstreamRegistryUrl"], "public.ecr.aws");
    let (ok, _, stderr) = run(f.command(aws_cli()).args([
        "ecr",
        "create-pull-through-cache-rule",
        "--ecr-repository-prefix",
        "hub",
        "--upstream-registry-url",
        "registry-1.docker.io",
    ]));
    assert!(!ok);
    assert!(stderr.contains("UnsupportedUpstreamRegistryException"), "{stderr}");
    let cached = format!("{HOST}/ecr-public/ko-matrix/base:latest");
    let (ok, digest, stderr) = run(f.command(&crane).args(["digest", &cached]));
    assert!(ok, "{stderr}");
    assert_eq!(digest.trim(), f.world.base_image.rsplit('@').next().unwrap());
    let images = aws(&["ecr", "describe-images", "--repository-name", "ecr-public/ko-matrix/base"]);
    let tagged: Vec<&serde_json::Value> = images["imageDetails"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["imageTags"] == serde_json::json!(["latest"]))
        .collect();
    assert_eq!(tagged.len(), 1, "{images}");
    let (ok, _, stderr) = run(f.command(&crane).args(["digest", &format!("{HOST}/ecr-public/nobody/nothing:latest")]));
    assert!(!ok);
    assert!(stderr.contains("NAME_UNKNOWN") || stderr.contains("404"), "nothing upstream: {stderr}");
}
