//! AWS Signature Version 4, server side: rebuild the canonical request from what was
//! received (strictly from the request's own `SignedHeaders`), derive the key, compare.
//! Also a signer, for tests and for callers that make AWS calls of their own.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The parsed `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key: String,
    /// `YYYYMMDD` from the credential scope.
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Why a request's signature is not acceptable (before any credential lookup).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    #[error("missing Authorization header")]
    Missing,
    #[error("malformed Authorization header: {0}")]
    Malformed(String),
    #[error("the signed headers must include host")]
    HostNotSigned,
}

impl Authorization {
    pub fn parse(value: &str) -> Result<Authorization, SigError> {
        let rest = value
            .strip_prefix("AWS4-HMAC-SHA256 ")
            .ok_or_else(|| SigError::Malformed("not AWS4-HMAC-SHA256".into()))?;
        let mut credential = None;
        let mut signed = None;
        let mut signature = None;
        for part in rest.split(',') {
            let (key, val) = part.trim().split_once('=').ok_or_else(|| SigError::Malformed(format!("`{part}`")))?;
            match key {
                "Credential" => credential = Some(val),
                "SignedHeaders" => signed = Some(val),
                "Signature" => signature = Some(val),
                _ => {}
            }
        }
        let credential = credential.ok_or_else(|| SigError::Malformed("no Credential".into()))?;
        let scope: Vec<&str> = credential.split('/').collect();
        let [access_key, date, region, service, "aws4_request"] = scope[..] else {
            return Err(SigError::Malformed(format!("bad credential scope `{credential}`")));
        };
        let signed_headers: Vec<String> = signed
            .ok_or_else(|| SigError::Malformed("no SignedHeaders".into()))?
            .split(';')
            .map(str::to_string)
            .collect();
        if !signed_headers.iter().any(|h| h == "host") {
            return Err(SigError::HostNotSigned);
        }
        Ok(Authorization {
            access_key: access_key.into(),
            date: date.into(),
            region: region.into(),
            service: service.into(),
            signed_headers,
            signature: signature.ok_or_else(|| SigError::Malformed("no Signature".into()))?.to_ascii_lowercase(),
        })
    }

    pub fn scope(&self) -> String {
        format!("{}/{}/{}/aws4_request", self.date, self.region, self.service)
    }
}

/// The parts of a request that SigV4 covers.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    /// Every header as received (lower-case names); repeated names appear repeatedly.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// `kSigning` for a secret and scope.
pub(crate) fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// RFC 3986 encoding as SigV4 wants it (unreserved characters kept).
fn uri_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (uri_encode(&percent_decode(k), false), uri_encode(&percent_decode(v), false))
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// The canonical request for `auth.signed_headers`.
pub(crate) fn canonical_request(req: &SignedRequest, signed_headers: &[String]) -> String {
    let mut canonical_headers = String::new();
    for name in signed_headers {
        let values: Vec<String> = req
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let payload_hash = req
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("x-amz-content-sha256"))
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| sha256_hex(req.body));
    let path = if req.path.is_empty() { "/".to_string() } else { uri_encode(&percent_decode(req.path), true) };
    format!(
        "{}\n{path}\n{}\n{canonical_headers}\n{}\n{payload_hash}",
        req.method,
        canonical_query(req.query),
        signed_headers.join(";")
    )
}

pub(crate) fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", sha256_hex(canonical_request.as_bytes()))
}

/// The signature `secret` gives this request under `auth`'s scope and headers.
pub fn signature(req: &SignedRequest, auth: &Authorization, amz_date: &str, secret: &str) -> String {
    let canonical = canonical_request(req, &auth.signed_headers);
    let to_sign = string_to_sign(amz_date, &auth.scope(), &canonical);
    hex::encode(hmac(&signing_key(secret, &auth.date, &auth.region, &auth.service), to_sign.as_bytes()))
}

/// Constant-time check of the received signature.
pub fn verify(req: &SignedRequest, auth: &Authorization, amz_date: &str, secret: &str) -> bool {
    let expected = signature(req, auth, amz_date, secret);
    let (a, b) = (expected.as_bytes(), auth.signature.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Signs a request: returns the `Authorization` value (headers must already hold
/// `host` and `x-amz-date`, and `x-amz-security-token` for session credentials).
pub fn sign(
    req: &SignedRequest,
    access_key: &str,
    secret: &str,
    amz_date: &str,
    region: &str,
    service: &str,
) -> String {
    let mut signed_headers: Vec<String> = req
        .headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .filter(|n| n != "authorization" && n != "user-agent")
        .collect();
    signed_headers.sort();
    signed_headers.dedup();
    let auth = Authorization {
        access_key: access_key.into(),
        date: amz_date[..8].into(),
        region: region.into(),
        service: service.into(),
        signed_headers: signed_headers.clone(),
        signature: String::new(),
    };
    let sig = signature(req, &auth, amz_date, secret);
    format!(
        "AWS4-HMAC-SHA256 Credential={access_key}/{}, SignedHeaders={}, Signature={sig}",
        auth.scope(),
        signed_headers.join(";")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn headers(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn derived_keys_match_the_published_values() {
        let k = signing_key(SECRET, "20150830", "us-east-1", "service");
        assert_eq!(hex::encode(k), "938127b5336810ddb6a5d6af445fcac9e371f9ed418ed386b022aed82901be75");
        let k = signing_key(SECRET, "20150830", "us-east-1", "ecr");
        assert_eq!(hex::encode(k), "68ce73d35403d53a9f776a559e665298d12bf3a0b3404de623a49073e6efe760");
    }

    #[test]
    fn the_post_x_www_form_urlencoded_vector() {
        let h = headers(&[
            ("content-type", "application/x-www-form-urlencoded"),
            ("host", "example.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
        ]);
        let req = SignedRequest { method: "POST", path: "/", query: "", headers: &h, body: b"Param1=value1" };
        let authz = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a";
        let auth = Authorization::parse(authz).unwrap();
        let canonical = canonical_request(&req, &auth.signed_headers);
        assert_eq!(canonical, "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e");
        assert_eq!(
            string_to_sign("20150830T123600Z", &auth.scope(), &canonical),
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281"
        );
        assert!(verify(&req, &auth, "20150830T123600Z", SECRET));
        assert!(!verify(&req, &auth, "20150830T123600Z", "wrong-secret"));
        assert_eq!(sign(&req, "AKIDEXAMPLE", SECRET, "20150830T123600Z", "us-east-1", "service"), authz);
    }

    #[test]
    fn post_vanilla_and_session_token_vectors() {
        let h = headers(&[("host", "example.amazonaws.com"), ("x-amz-date", "20150830T123600Z")]);
        let req = SignedRequest { method: "POST", path: "/", query: "", headers: &h, body: b"" };
        let auth = Authorization::parse("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b").unwrap();
        assert_eq!(
            sha256_hex(canonical_request(&req, &auth.signed_headers).as_bytes()),
            "553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87"
        );
        assert!(verify(&req, &auth, "20150830T123600Z", SECRET));

        let token = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
        let h = headers(&[
            ("host", "example.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
            ("x-amz-security-token", token),
        ]);
        let req = SignedRequest { method: "GET", path: "/", query: "", headers: &h, body: b"" };
        let auth = Authorization::parse("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8").unwrap();
        assert_eq!(
            sha256_hex(canonical_request(&req, &auth.signed_headers).as_bytes()),
            "067b36aa60031588cea4a4cde1f21215227a047690c72247f1d70b32fbbfad2b"
        );
        assert!(verify(&req, &auth, "20150830T123600Z", SECRET));
    }

    #[test]
    fn the_ecr_shaped_examples_from_the_reference() {
        let base = [
            ("content-type", "application/x-amz-json-1.1"),
            ("host", "api.ecr.us-east-1.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
            ("x-amz-target", "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"),
        ];
        let h = headers(&base);
        let req = SignedRequest { method: "POST", path: "/", query: "", headers: &h, body: b"{}" };
        let auth = Authorization::parse("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ecr/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=527a2155e9afc2426cb4c659023df9c031e8103458f349819615ff25111f5de0").unwrap();
        assert_eq!(
            sha256_hex(canonical_request(&req, &auth.signed_headers).as_bytes()),
            "696f9d23764d52f5c339be08179976e1c31aee8c781de678b4b36b35ccedda1f"
        );
        assert!(verify(&req, &auth, "20150830T123600Z", SECRET));

        // Go's shape signs content-length too; an unsigned header added later is ignored.
        let mut h = headers(&[("content-length", "2")]);
        h.extend(headers(&base));
        h.push(("accept-encoding".into(), "gzip".into()));
        let req = SignedRequest { method: "POST", path: "/", query: "", headers: &h, body: b"{}" };
        let auth = Authorization::parse("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ecr/aws4_request, SignedHeaders=content-length;content-type;host;x-amz-date;x-amz-target, Signature=5c239ad3018b3475f87ae7b03633133325ff990d516f71a9e6a48804bb242645").unwrap();
        assert_eq!(
            sha256_hex(canonical_request(&req, &auth.signed_headers).as_bytes()),
            "32957077c32c2849a31f2d21e947c37689b689bb0bbca106496782f7f853d637"
        );
        assert!(verify(&req, &auth, "20150830T123600Z", SECRET));
        // A tampered body no longer verifies.
        let req = SignedRequest { body: b"{ }", ..req };
        assert!(!verify(&req, &auth, "20150830T123600Z", SECRET));
    }

    #[test]
    fn malformed_authorization_headers() {
        assert!(matches!(Authorization::parse("Basic abc"), Err(SigError::Malformed(_))));
        assert_eq!(
            Authorization::parse("AWS4-HMAC-SHA256 Credential=A/20150830/us-east-1/ecr/aws4_request, SignedHeaders=x-amz-date, Signature=00"),
            Err(SigError::HostNotSigned)
        );
        assert!(matches!(
            Authorization::parse(
                "AWS4-HMAC-SHA256 Credential=A/20150830/ecr/aws4_request, SignedHeaders=host, Signature=00"
            ),
            Err(SigError::Malformed(_))
        ));
    }

    #[test]
    fn query_strings_are_sorted_and_encoded() {
        assert_eq!(canonical_query("b=2&a=1&a=0&c=x%2Fy"), "a=0&a=1&b=2&c=x%2Fy");
        assert_eq!(
            canonical_query("Action=GetCallerIdentity&Version=2011-06-15"),
            "Action=GetCallerIdentity&Version=2011-06-15"
        );
    }
}
