//! Who signed an AWS request: SigV4 checked against the cell's keys, with the failures AWS
//! distinguishes. ECR (JSON) and STS (XML) word them differently; [`AuthFailure`] is the
//! shared verdict.

use hyper::http::request::Parts;
use time::OffsetDateTime;

use super::sigv4::{self, Authorization, SignedRequest};
use super::state::{AccessKey, AwsCell};

/// AWS services accept signatures within 15 minutes of their time.
const SKEW: time::Duration = time::Duration::minutes(15);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    Missing,
    Incomplete(String),
    /// The access key is unknown, or its session token does not match.
    UnknownKey,
    Expired,
    /// The credential scope names another service or region.
    Scope(String),
    Skew(String),
    BadSignature,
}

impl AuthFailure {
    /// AWS's text for the failure (services differ only in the unknown-key sentence).
    pub(crate) fn message(&self) -> String {
        match self {
            AuthFailure::Missing => "Missing Authentication Token".into(),
            AuthFailure::Incomplete(m) | AuthFailure::Scope(m) | AuthFailure::Skew(m) => m.clone(),
            AuthFailure::UnknownKey => "The security token included in the request is invalid".into(),
            AuthFailure::Expired => "The security token included in the request is expired".into(),
            AuthFailure::BadSignature => "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.".into(),
        }
    }
}

pub(crate) fn amz_basic(t: OffsetDateTime) -> String {
    t.format(&time::macros::format_description!("[year][month][day]T[hour][minute][second]Z")).expect("UTC formats")
}

fn parse_amz_date(text: &str) -> Option<OffsetDateTime> {
    let f = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(text, &f).ok().map(|t| t.assume_utc())
}

/// Which of the cell's keys signed this `service` request for `region`.
pub(crate) fn authenticate(
    cell: Option<&AwsCell>,
    region: &str,
    service: &str,
    parts: &Parts,
    body: &[u8],
) -> Result<AccessKey, AuthFailure> {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let auth = Authorization::parse(header("authorization").ok_or(AuthFailure::Missing)?)
        .map_err(|e| AuthFailure::Incomplete(e.to_string()))?;
    let key = cell.and_then(|c| c.key(&auth.access_key)).ok_or(AuthFailure::UnknownKey)?;
    if header("x-amz-security-token") != key.session_token.as_deref() {
        return Err(AuthFailure::UnknownKey);
    }
    let now = OffsetDateTime::now_utc();
    if key.expires.is_some_and(|e| e <= now) {
        return Err(AuthFailure::Expired);
    }
    if auth.service != service {
        return Err(AuthFailure::Scope(format!("Credential should be scoped to correct service: '{service}'. ")));
    }
    if auth.region != region {
        return Err(AuthFailure::Scope(format!(
            "Credential should be scoped to a valid region, not '{}'. ",
            auth.region
        )));
    }
    let amz_date = header("x-amz-date").ok_or_else(|| {
        AuthFailure::Incomplete(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.".into(),
        )
    })?;
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| {
        AuthFailure::Incomplete(format!("Date must be in ISO-8601 'basic format'. Got '{amz_date}'."))
    })?;
    if signed_at < now - SKEW {
        return Err(AuthFailure::Skew(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - 15 min.)",
            amz_basic(now - SKEW),
            amz_basic(now)
        )));
    }
    if signed_at > now + SKEW {
        return Err(AuthFailure::Skew(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + 15 min.)",
            amz_basic(now + SKEW),
            amz_basic(now)
        )));
    }
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let request = SignedRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &headers,
        body,
    };
    if !sigv4::verify(&request, &auth, amz_date, &key.secret) {
        return Err(AuthFailure::BadSignature);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    #[test]
    fn amz_dates_round_trip() {
        let t = super::parse_amz_date("20150830T123600Z").unwrap();
        assert_eq!(super::amz_basic(t), "20150830T123600Z");
        assert!(super::parse_amz_date("2015-08-30").is_none());
    }
}
