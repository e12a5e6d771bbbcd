//! Where hosted registries keep blob bytes: the object stores a layer or config `GET` is
//! redirected to (`307`), each under its real host name and URL shape, each refusing what the
//! real one refuses. Every fact is cited in ko-matrix's `docs/storage-and-quirks.md`
//! (from `registry-shapes-reference.md` §1 and §2).
//!
//! A registry's redirect carries the blob's bytes here ([`Storage::redirect`]): the object store
//! holds what the registry handed it, addressed by the URL the registry signed. The signature is
//! this store's own HMAC over the method (or the read permission), host, path and expiry: the
//! shapes are the vendors', the cryptography is not (nothing outside checks it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use sha2::Sha256;
use time::OffsetDateTime;

use crate::gateway::Backend;
use crate::loopback::LoopbackServer;
use crate::wire::{full, Body};

/// Docker Hub's blob store (Cloudflare in front of its buckets).
pub const CLOUDFLARE_HOST: &str = "production.cloudflare.docker.com";
/// ghcr.io's blob store (Azure-SAS-style URLs).
pub const GHCR_HOST: &str = "pkg-containers.githubusercontent.com";
/// The Azure Blob storage account behind the ACR registry `komatrix` (no dedicated data
/// endpoints). ACR's account names are its own; this one is made up.
pub const AZURE_BLOB_HOST: &str = "komatrixeus.blob.core.windows.net";
/// The same-host download path Artifact Registry answers with (gcr.io is AR-backed).
pub const ARTIFACT_DOWNLOADS: &str = "/artifacts-downloads/";
/// The access key id ECR's service session signs its presigned URLs with (made up: AWS's own).
const ECR_SIGNER_KEY: &str = "ASIAECRSTARPORT00001";

/// A hosted registry's blob store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// Amazon ECR: a presigned S3 `GetObject` URL on the region's starport layer bucket.
    S3 { region: String, account: String },
    /// Docker Hub: `production.cloudflare.docker.com/registry-v2/…/data?verify=<expiry>-<sig>`.
    Cloudflare,
    /// gcr.io as Artifact Registry: a relative `Location` on the registry's own host.
    ArtifactRegistry,
    /// ACR: an Azure Blob SAS URL.
    AzureBlob,
    /// ghcr.io: `pkg-containers.githubusercontent.com/ghcr1/blobs/<digest>?se=…&sig=…`.
    Ghcr,
}

/// The S3 host of ECR's layer bucket in `region`.
pub fn s3_host(region: &str) -> String {
    format!("prod-{region}-starport-layer-bucket.s3.{region}.amazonaws.com")
}

/// Whether `host` is an object store of this module: signatures in its URLs are the registry's,
/// not the client's (a presigned S3 URL names ECR's key, never the cell's).
pub fn is_storage_host(host: &str) -> bool {
    [CLOUDFLARE_HOST, GHCR_HOST, AZURE_BLOB_HOST].contains(&host)
        || (host.starts_with("prod-") && host.contains("-starport-layer-bucket.s3."))
}

impl Store {
    /// How long a URL stays valid: ECR's `X-Amz-Expires=3599` (seen once); distribution's
    /// cloudfront middleware default (20 min) for Docker Hub; ACR's documented 20 min; ghcr.io's
    /// ≈300 s (2020); Artifact Registry's is not documented (20 min, as distribution's GCS driver).
    fn ttl(&self) -> time::Duration {
        match self {
            Store::S3 { .. } => time::Duration::seconds(3599),
            Store::Ghcr => time::Duration::seconds(300),
            _ => time::Duration::minutes(20),
        }
    }

    fn host(&self, registry_host: &str) -> String {
        match self {
            Store::S3 { region, .. } => s3_host(region),
            Store::Cloudflare => CLOUDFLARE_HOST.into(),
            Store::ArtifactRegistry => registry_host.into(),
            Store::AzureBlob => AZURE_BLOB_HOST.into(),
            Store::Ghcr => GHCR_HOST.into(),
        }
    }

    /// The object's path for `digest` (`sha256:<hex>`) of `repository`.
    fn path(&self, repository: &str, digest: &str) -> String {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        let blob_path = format!("/docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2.min(hex.len())]);
        match self {
            Store::S3 { account, .. } => {
                let id = uuid_of(hex);
                format!("/{}-{account}-{id}/{id}", &hex[..4.min(hex.len())])
            }
            Store::Cloudflare => format!("/registry-v2{blob_path}"),
            Store::ArtifactRegistry => {
                let project = repository.split('/').next().unwrap_or_default();
                let token = &hex[..32.min(hex.len())];
                format!("{ARTIFACT_DOWNLOADS}namespaces/{project}/repositories/gcr.io/downloads/{token}")
            }
            Store::AzureBlob => blob_path,
            Store::Ghcr => format!("/ghcr1/blobs/{digest}"),
        }
    }
}

/// `8-4-4-4-12` of the first 32 hex digits: the shape of the ids in ECR's object keys.
fn uuid_of(hex: &str) -> String {
    let h = format!("{hex:0<32}");
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// The object stores of a run: one server behind every store host (and behind Artifact
/// Registry's download path), holding what registries redirected to it.
pub struct Storage {
    key: [u8; 32],
    /// URL path (on its host) → blob digest.
    objects: Mutex<HashMap<String, String>>,
    /// Digest → bytes, shared by every URL of the blob.
    blobs: Mutex<HashMap<String, Bytes>>,
    server: Mutex<Option<LoopbackServer>>,
}

type HmacSha256 = Hmac<Sha256>;

impl Storage {
    /// Starts the object stores on a loopback port.
    pub async fn start() -> std::io::Result<Arc<Storage>> {
        let storage = Arc::new(Storage {
            key: rand::random(),
            objects: Mutex::new(HashMap::new()),
            blobs: Mutex::new(HashMap::new()),
            server: Mutex::new(None),
        });
        let weak = Arc::downgrade(&storage);
        let server = crate::loopback::serve(move |req: Request<Incoming>| {
            let storage = weak.upgrade();
            async move {
                match storage {
                    Some(storage) => storage.answer(&req, OffsetDateTime::now_utc()),
                    None => plain(StatusCode::SERVICE_UNAVAILABLE, "object storage stopped"),
                }
            }
        })
        .await?;
        *storage.server.lock().expect("storage server lock") = Some(server);
        Ok(storage)
    }

    /// Where the gateway sends the store hosts' requests.
    pub fn backend(&self) -> Backend {
        let addr = self
            .server
            .lock()
            .expect("storage server lock")
            .as_ref()
            .map_or(SocketAddr::from(([127, 0, 0, 1], 0)), |s| s.addr);
        Backend::http(addr).named("object storage")
    }

    /// Every store host, for the gateway (ECR's bucket in each of `regions`).
    pub fn routes(&self, regions: &[String]) -> Vec<(String, Backend)> {
        let backend = self.backend();
        [CLOUDFLARE_HOST.to_string(), GHCR_HOST.into(), AZURE_BLOB_HOST.into()]
            .into_iter()
            .chain(regions.iter().map(|r| s3_host(r)))
            .map(|host| (host, backend.clone()))
            .collect()
    }

    /// Keeps `bytes` (blob `digest` of `repository` at `registry_host`) and answers the `Location`
    /// a `GET` for it is redirected to: `store`'s URL, signed for GET, valid from `now`.
    pub fn redirect(
        &self,
        store: &Store,
        registry_host: &str,
        repository: &str,
        digest: &str,
        bytes: Bytes,
        now: OffsetDateTime,
    ) -> String {
        let host = store.host(registry_host);
        let path = store.path(repository, digest);
        self.blobs.lock().expect("blobs lock").insert(digest.to_string(), bytes);
        self.objects.lock().expect("objects lock").insert(path.clone(), digest.to_string());
        let url = self.presign(store, &host, &path, "GET", now);
        match store {
            // Relative, on the registry's own host.
            Store::ArtifactRegistry => url.trim_start_matches(&format!("https://{host}")).to_string(),
            _ => url,
        }
    }

    /// `https://<host><path>?<query>` signed for `method` at `now`.
    fn presign(&self, store: &Store, host: &str, path: &str, method: &str, now: OffsetDateTime) -> String {
        let expires = now + store.ttl();
        let url = |query: String| format!("https://{host}{path}?{query}");
        match store {
            Store::S3 { region, .. } => {
                let date = amz_date(now);
                let ttl = store.ttl().whole_seconds();
                let signature = self.sign(&[method, host, path, &date, &ttl.to_string()]);
                let credential = format!("{ECR_SIGNER_KEY}%2F{}%2F{region}%2Fs3%2Faws4_request", &date[..8]);
                url(format!(
                    "X-Amz-Security-Token=IQoJb3JpZ2luX2VjEKOMATRIX&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date={date}&X-Amz-SignedHeaders=host&X-Amz-Expires={ttl}&X-Amz-Credential={credential}&X-Amz-Signature={signature}"
                ))
            }
            Store::Cloudflare => {
                let expiry = expires.unix_timestamp().to_string();
                url(format!("verify={expiry}-{}", self.sign(&["r", host, path, &expiry])))
            }
            Store::ArtifactRegistry => {
                // The token in the path is the whole grant; its expiry rides in the query.
                let expiry = expires.unix_timestamp().to_string();
                url(format!("expires={expiry}&signature={}", self.sign(&["r", host, path, &expiry])))
            }
            Store::AzureBlob | Store::Ghcr => {
                let se = iso_seconds(expires);
                let sig = self.sign(&["r", host, path, &se]);
                let spr = if *store == Store::Ghcr { "&spr=https" } else { "" };
                url(format!("se={}&sig={sig}&sp=r{spr}&sr=b&sv=2019-12-12", se.replace(':', "%3A")))
            }
        }
    }

    fn sign(&self, parts: &[&str]) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(parts.join("\n").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The store's answer to `req` at `now`.
    fn answer(&self, req: &Request<Incoming>, now: OffsetDateTime) -> Response<Body> {
        let host = crate::wire::host(req.headers());
        let method = req.method().as_str();
        let path = req.uri().path();
        let query = crate::wire::Form::parse(req.uri().query().unwrap_or_default());
        let authorization = req.headers().get("authorization").and_then(|v| v.to_str().ok());
        let store = match host.as_str() {
            CLOUDFLARE_HOST => Store::Cloudflare,
            GHCR_HOST => Store::Ghcr,
            AZURE_BLOB_HOST => Store::AzureBlob,
            _ if path.starts_with(ARTIFACT_DOWNLOADS) => Store::ArtifactRegistry,
            _ if is_storage_host(&host) => {
                let region =
                    host.split(".s3.").nth(1).and_then(|r| r.strip_suffix(".amazonaws.com")).unwrap_or_default();
                Store::S3 { region: region.into(), account: String::new() }
            }
            _ => return plain(StatusCode::NOT_FOUND, "no such object store"),
        };
        let head = method == "HEAD";
        let refusal = match &store {
            Store::S3 { .. } => self.check_s3(&host, method, path, &query, authorization, now),
            Store::Cloudflare | Store::ArtifactRegistry => {
                let (expiry, signature) = match store {
                    Store::Cloudflare => {
                        let verify = query.get("verify").unwrap_or_default();
                        let (expiry, sig) = verify.split_once('-').unwrap_or(("", ""));
                        (expiry.to_string(), sig.to_string())
                    }
                    _ => (
                        query.get("expires").unwrap_or_default().to_string(),
                        query.get("signature").unwrap_or_default().to_string(),
                    ),
                };
                let valid = self.sign(&["r", &host, path, &expiry]) == signature;
                let live = expiry.parse::<i64>().is_ok_and(|e| e > now.unix_timestamp());
                // Neither store's refusal is documented: a bare 403.
                (!(valid && live && matches!(method, "GET" | "HEAD")))
                    .then(|| plain(StatusCode::FORBIDDEN, "403 Forbidden"))
            }
            Store::AzureBlob | Store::Ghcr => self.check_sas(&host, method, path, &query, now),
        };
        if let Some(refusal) = refusal {
            return without_body_for_head(refusal, head);
        }
        let digest = self.objects.lock().expect("objects lock").get(path).cloned();
        let bytes = digest.and_then(|d| self.blobs.lock().expect("blobs lock").get(&d).cloned());
        let Some(bytes) = bytes else {
            return without_body_for_head(plain(StatusCode::NOT_FOUND, "The specified key does not exist."), head);
        };
        let length = bytes.len();
        let mut response = Response::new(full(if head { Bytes::new() } else { bytes }));
        let headers = response.headers_mut();
        headers.insert("content-type", "application/octet-stream".parse().expect("static header"));
        headers.insert("content-length", length.into());
        response
    }

    /// S3's checks of a presigned request, in S3's words (`registry-shapes-reference.md` §2).
    fn check_s3(
        &self,
        host: &str,
        method: &str,
        path: &str,
        query: &crate::wire::Form,
        authorization: Option<&str>,
        now: OffsetDateTime,
    ) -> Option<Response<Body>> {
        if let Some(header) = authorization {
            let message = "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified";
            return Some(s3_error(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                message,
                &format!(
                    "<ArgumentName>Authorization</ArgumentName><ArgumentValue>{}</ArgumentValue>",
                    xml_escape(header)
                ),
            ));
        }
        let date = query.get("X-Amz-Date").unwrap_or_default();
        let ttl = query.get("X-Amz-Expires").unwrap_or_default();
        let signed_at = time::PrimitiveDateTime::parse(date, AMZ_DATE).ok().map(|t| t.assume_utc());
        let expires = signed_at.zip(ttl.parse::<i64>().ok()).map(|(t, s)| t + time::Duration::seconds(s));
        if let Some(expires) = expires.filter(|e| *e <= now) {
            let detail = format!(
                "<X-Amz-Expires>{ttl}</X-Amz-Expires><Expires>{}</Expires><ServerTime>{}</ServerTime>",
                iso_seconds(expires),
                iso_seconds(now)
            );
            return Some(s3_error(StatusCode::FORBIDDEN, "AccessDenied", "Request has expired", &detail));
        }
        // The method is signed: a URL presigned for GET does not serve a HEAD.
        let expected = self.sign(&[method, host, path, date, ttl]);
        if expires.is_none() || query.get("X-Amz-Signature") != Some(expected.as_str()) {
            let message = "The request signature we calculated does not match the signature you provided. Check your key and signing method.";
            return Some(s3_error(StatusCode::FORBIDDEN, "SignatureDoesNotMatch", message, ""));
        }
        None
    }

    /// Azure Storage's checks of a SAS (ghcr.io's URLs have the same shape).
    fn check_sas(
        &self,
        host: &str,
        method: &str,
        path: &str,
        query: &crate::wire::Form,
        now: OffsetDateTime,
    ) -> Option<Response<Body>> {
        let se = query.get("se").unwrap_or_default();
        let expiry = OffsetDateTime::parse(se, &time::format_description::well_known::Rfc3339).ok();
        let valid = query.get("sig") == Some(self.sign(&["r", host, path, se]).as_str())
            && query.get("sp") == Some("r")
            && matches!(method, "GET" | "HEAD");
        let request_id = "RequestId:00000000-701e-0000-0000-000000000000";
        let time = iso_seconds(now);
        match expiry {
            Some(expiry) if valid && expiry <= now => {
                let rfc1123 =
                    |t: OffsetDateTime| t.format(&time::format_description::well_known::Rfc2822).unwrap_or_default();
                let detail = format!(
                    "<AuthenticationErrorDetail>Signature not valid in the specified time frame: Start [{}] - Expiry [{}] - Current [{}]</AuthenticationErrorDetail>",
                    rfc1123(expiry - Store::AzureBlob.ttl()),
                    rfc1123(expiry),
                    rfc1123(now)
                );
                Some(azure_error(&format!("{request_id}\nTime:{time}"), &detail))
            }
            Some(_) if valid => None,
            _ => Some(azure_error(
                &format!("{request_id}\nTime:{time}"),
                "<AuthenticationErrorDetail>Signature fields not well formed.</AuthenticationErrorDetail>",
            )),
        }
    }
}

const AMZ_DATE: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");

fn amz_date(t: OffsetDateTime) -> String {
    t.format(AMZ_DATE).expect("a UTC time formats")
}

fn iso_seconds(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .expect("zero nanoseconds is valid")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a UTC time formats")
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from(text.to_string())));
    *response.status_mut() = status;
    response
}

fn s3_error(status: StatusCode, code: &str, message: &str, detail: &str) -> Response<Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message>{detail}<RequestId>KOMATRIX0000000</RequestId><HostId>a29tYXRyaXg=</HostId></Error>"
    );
    let mut response = plain(status, &body);
    response.headers_mut().insert("content-type", "application/xml".parse().expect("static header"));
    response
}

fn azure_error(request: &str, detail: &str) -> Response<Body> {
    let body = format!(
        "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthenticationFailed</Code><Message>Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.\n{request}</Message>{detail}</Error>"
    );
    let mut response = plain(StatusCode::FORBIDDEN, &body);
    response.headers_mut().insert("content-type", "application/xml".parse().expect("static header"));
    response.headers_mut().insert("x-ms-error-code", "AuthenticationFailed".parse().expect("static header"));
    response
}

/// A HEAD answer carries the status and headers only.
fn without_body_for_head(response: Response<Body>, head: bool) -> Response<Body> {
    if !head {
        return response;
    }
    let (parts, _) = response.into_parts();
    Response::from_parts(parts, full(Bytes::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:4f6ad5cbd8e9f62b1a3d1ba6e1f1b3c5d2e0a9f8b7c6d5e4f3a2b1c0d9e8f7a6";

    /// Sends `method url` (with `authorization`) to `storage` as the gateway would: to its
    /// server, the URL's host in `Host`.
    async fn send(storage: &Storage, method: &str, url: &str, authorization: Option<&str>) -> (u16, String) {
        let (host, path) = url.strip_prefix("https://").unwrap().split_once('/').unwrap();
        let client = reqwest::Client::new();
        let mut request = client
            .request(method.parse().unwrap(), format!("http://{}/{path}", storage.backend().addr))
            .header("host", host);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    fn ecr() -> Store {
        Store::S3 { region: "us-east-1".into(), account: "123456789012".into() }
    }

    #[tokio::test]
    async fn s3_serves_a_presigned_get_and_nothing_else() {
        let storage = Storage::start().await.unwrap();
        let now = OffsetDateTime::now_utc();
        let registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
        let url = storage.redirect(&ecr(), registry, "app", DIGEST, Bytes::from_static(b"layer"), now);
        assert!(url.starts_with("https://prod-us-east-1-starport-layer-bucket.s3.us-east-1.amazonaws.com/4f6a-123456789012-4f6ad5cb-d8e9-f62b-1a3d-1ba6e1f1b3c5/"), "{url}");
        assert!(url.contains("X-Amz-Algorithm=AWS4-HMAC-SHA256&") && url.contains("&X-Amz-Expires=3599&"), "{url}");
        assert_eq!(send(&storage, "GET", &url, None).await, (200, "layer".into()));

        let (status, body) = send(&storage, "GET", &url, Some("Bearer registry-token")).await;
        assert_eq!(status, 400, "a presigned URL plus an Authorization header");
        assert!(body.contains("<Code>InvalidArgument</Code><Message>Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified</Message><ArgumentName>Authorization</ArgumentName><ArgumentValue>Bearer registry-token</ArgumentValue>"), "{body}");

        assert_eq!(send(&storage, "HEAD", &url, None).await.0, 403, "signed for GET, sent as HEAD");
        let tampered = url.replace("X-Amz-Expires=3599", "X-Amz-Expires=86400");
        let (status, body) = send(&storage, "GET", &tampered, None).await;
        assert_eq!(status, 403);
        assert!(body.contains("<Code>SignatureDoesNotMatch</Code>"), "{body}");
    }

    #[tokio::test]
    async fn an_expired_presigned_url_is_refused_in_each_stores_words() {
        let storage = Storage::start().await.unwrap();
        let two_hours_ago = OffsetDateTime::now_utc() - time::Duration::hours(2);
        let s3 = storage.redirect(&ecr(), "r", "app", DIGEST, Bytes::from_static(b"layer"), two_hours_ago);
        let (status, body) = send(&storage, "GET", &s3, None).await;
        assert_eq!(status, 403);
        assert!(
            body.contains("<Code>AccessDenied</Code><Message>Request has expired</Message><X-Amz-Expires>3599</X-Amz-Expires><Expires>"),
            "{body}"
        );
        assert!(body.contains("<ServerTime>") && body.contains("<RequestId>") && body.contains("<HostId>"), "{body}");

        let acr =
            storage.redirect(&Store::AzureBlob, "komatrix.azurecr.io", "o/app", DIGEST, Bytes::new(), two_hours_ago);
        assert!(acr.starts_with(&format!("https://{AZURE_BLOB_HOST}/docker/registry/v2/blobs/sha256/4f/")), "{acr}");
        let (status, body) = send(&storage, "GET", &acr, None).await;
        assert_eq!(status, 403);
        assert!(
            body.contains("<Code>AuthenticationFailed</Code>")
                && body.contains("Signature not valid in the specified time frame: Start ["),
            "{body}"
        );

        for store in [Store::Cloudflare, Store::Ghcr] {
            let url = storage.redirect(&store, "ghcr.io", "o/app", DIGEST, Bytes::new(), two_hours_ago);
            assert_eq!(send(&storage, "GET", &url, None).await.0, 403, "{url}");
        }
    }

    #[tokio::test]
    async fn each_vendor_redirects_to_its_own_shape() {
        let storage = Storage::start().await.unwrap();
        let now = OffsetDateTime::now_utc();
        let hub = storage.redirect(
            &Store::Cloudflare,
            "registry-1.docker.io",
            "library/x",
            DIGEST,
            Bytes::from_static(b"blob"),
            now,
        );
        assert!(
            hub.starts_with(
                "https://production.cloudflare.docker.com/registry-v2/docker/registry/v2/blobs/sha256/4f/4f6ad5cb"
            ),
            "{hub}"
        );
        assert!(hub.contains("/data?verify="), "{hub}");
        let ghcr = storage.redirect(&Store::Ghcr, "ghcr.io", "o/app", DIGEST, Bytes::from_static(b"blob"), now);
        assert!(
            ghcr.starts_with(&format!("https://pkg-containers.githubusercontent.com/ghcr1/blobs/{DIGEST}?se=")),
            "{ghcr}"
        );
        assert!(ghcr.contains("&sp=r&spr=https&sr=b&sv=2019-12-12"), "{ghcr}");
        let gar = storage.redirect(
            &Store::ArtifactRegistry,
            "gcr.io",
            "proj/cells/app",
            DIGEST,
            Bytes::from_static(b"blob"),
            now,
        );
        assert!(
            gar.starts_with("/artifacts-downloads/namespaces/proj/repositories/gcr.io/downloads/"),
            "relative: {gar}"
        );
        // One blob (the same digest), three stores.
        for url in [hub, ghcr.clone(), format!("https://gcr.io{gar}")] {
            assert_eq!(send(&storage, "GET", &url, None).await, (200, "blob".into()), "{url}");
            assert_eq!(send(&storage, "HEAD", &url, None).await.0, 200, "a read permission covers HEAD: {url}");
        }
        assert_eq!(send(&storage, "GET", &ghcr.replace("sig=", "sig=0"), None).await.0, 403);
    }
}
