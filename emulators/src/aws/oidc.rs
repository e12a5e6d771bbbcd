//! An OIDC issuer standing in for a CI provider's: it mints the web identity tokens scenarios hand to the
//! SDK (as EKS IRSA or GitHub's OIDC provider do), and STS verifies them: signature,
//! issuer, audience, expiry.

use serde::{Deserialize, Serialize};

pub(crate) const ISSUER: &str = "https://oidc.ko-matrix.test";
/// The audience AWS's STS expects by default.
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
}

pub struct OidcIssuer {
    encoding: jsonwebtoken::EncodingKey,
    decoding: jsonwebtoken::DecodingKey,
}

impl OidcIssuer {
    pub fn new() -> OidcIssuer {
        let key = rcgen::KeyPair::generate().expect("P-256 keys generate");
        OidcIssuer {
            encoding: jsonwebtoken::EncodingKey::from_ec_pem(key.serialize_pem().as_bytes())
                .expect("rcgen writes PKCS#8"),
            decoding: jsonwebtoken::DecodingKey::from_ec_pem(key.public_key_pem().as_bytes())
                .expect("rcgen writes SPKI"),
        }
    }

    /// A token for `subject`, valid for `ttl_secs` (negative: already expired).
    pub fn mint(&self, subject: &str, audience: &str, ttl_secs: i64) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = Claims {
            iss: ISSUER.into(),
            sub: subject.into(),
            aud: audience.into(),
            exp: now + ttl_secs,
            iat: now.min(now + ttl_secs) - 60,
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("ko-matrix".into());
        jsonwebtoken::encode(&header, &claims, &self.encoding).expect("ES256 signing with a valid key succeeds")
    }

    /// The claims of a token this issuer signed for `audience`, checked (issuer, audience,
    /// expiry without leeway) — what any relying party (STS, Entra ID) checks first.
    pub fn decode(&self, token: &str, audience: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[audience]);
        validation.leeway = 0;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map(|data| data.claims)
    }

    /// Verifies a token as STS does; `Err` carries STS's error code and message.
    pub fn verify(&self, token: &str) -> Result<Claims, (&'static str, String)> {
        match self.decode(token, STS_AUDIENCE) {
            Ok(claims) => Ok(claims),
            Err(e) => Err(match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    let exp = unverified_exp(token).unwrap_or_default();
                    let now = time::OffsetDateTime::now_utc().unix_timestamp();
                    ("ExpiredTokenException", format!("Token expired: current date/time {now} must be before the expiration date/time{exp}"))
                }
                jsonwebtoken::errors::ErrorKind::InvalidAudience => ("InvalidIdentityToken", "Incorrect token audience".into()),
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => ("InvalidIdentityToken", "No OpenIDConnect provider found in your account for the issuer".into()),
                _ => ("InvalidIdentityToken", "Couldn't retrieve verification key from your identity provider,  please reference AssumeRoleWithWebIdentity documentation for requirements".into()),
            }),
        }
    }
}

/// The `exp` claim, read without verification (only to word the error as STS does).
pub(crate) fn unverified_exp(token: &str) -> Option<i64> {
    use base64::Engine;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.split('.').nth(1)?).ok()?;
    serde_json::from_slice::<serde_json::Value>(&payload).ok()?["exp"].as_i64()
}

impl Default for OidcIssuer {
    fn default() -> Self {
        OidcIssuer::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_each_defect_is_named() {
        let issuer = OidcIssuer::new();
        let claims = issuer.verify(&issuer.mint("repo:org/app:ref:refs/heads/main", STS_AUDIENCE, 600)).unwrap();
        assert_eq!((claims.iss.as_str(), claims.sub.as_str()), (ISSUER, "repo:org/app:ref:refs/heads/main"));

        let (code, message) = issuer.verify(&issuer.mint("ci", STS_AUDIENCE, -120)).unwrap_err();
        assert_eq!(code, "ExpiredTokenException");
        assert!(message.starts_with("Token expired: current date/time "), "{message}");
        assert_eq!(
            issuer.verify(&issuer.mint("ci", "api://AzureADTokenExchange", 600)).unwrap_err(),
            ("InvalidIdentityToken", "Incorrect token audience".to_string())
        );
        let other = OidcIssuer::new();
        assert_eq!(
            other.verify(&issuer.mint("ci", STS_AUDIENCE, 600)).unwrap_err().0,
            "InvalidIdentityToken",
            "another issuer's key does not verify"
        );
        assert_eq!(issuer.verify("not.a.jwt").unwrap_err().0, "InvalidIdentityToken");
    }
}
