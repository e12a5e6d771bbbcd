//! GitHub Actions' ID-token endpoint, as a job sees it: `ACTIONS_ID_TOKEN_REQUEST_URL` plus
//! `&audience=…`, called with `Authorization: Bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`, answers
//! `{"count":…,"value":"<JWT>"}`: an OIDC token for the job, for whatever audience was asked
//! (the relying party — Google's STS — decides whether that audience is acceptable).
//! `@actions/core`'s `getIDToken` and the credentials file `google-github-actions/auth` writes
//! both call it this way.

use hyper::http::request::Parts;
use hyper::{Response, StatusCode};

use crate::aws::oidc::OidcIssuer;
use crate::wire::{json, Body, Form};

/// The host of the request URL (GitHub-hosted runners' pipelines service).
pub const ID_TOKEN_HOST: &str = "pipelines.actions.githubusercontent.com";
const ID_TOKEN_PATH: &str = "/ko-matrix/idtoken";
/// Lifetime of the tokens (GitHub's are short-lived: minutes).
const ID_TOKEN_TTL_SECS: i64 = 300;

/// `ACTIONS_ID_TOKEN_REQUEST_URL` for a job.
pub fn request_url() -> String {
    format!("https://{ID_TOKEN_HOST}{ID_TOKEN_PATH}?api-version=2.0")
}

/// The endpoint's answer to `parts` for the job whose request token is `request_token` and
/// whose tokens say `subject` (`repo:<owner>/<repo>:ref:refs/heads/main`).
pub(crate) fn answer(issuer: &OidcIssuer, parts: &Parts, request_token: &str, subject: &str) -> Response<Body> {
    if parts.uri.path() != ID_TOKEN_PATH {
        return json(StatusCode::NOT_FOUND, serde_json::json!({ "message": "Not Found" }));
    }
    let presented =
        parts.headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if presented != Some(request_token) {
        return json(StatusCode::UNAUTHORIZED, serde_json::json!({ "message": "Unauthorized" }));
    }
    let query = parts.uri.query().unwrap_or_default();
    let audience = Form::parse(query).get("audience").map(str::to_string);
    // Without `audience`, GitHub uses the repository owner's URL.
    let audience = audience.unwrap_or_else(|| {
        format!("https://github.com/{}", subject.trim_start_matches("repo:").split('/').next().unwrap_or_default())
    });
    json(StatusCode::OK, serde_json::json!({ "count": 1, "value": issuer.mint(subject, &audience, ID_TOKEN_TTL_SECS) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, token: Option<&str>) -> Parts {
        let mut request = hyper::Request::get(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request.body(()).unwrap().into_parts().0
    }

    #[tokio::test]
    async fn a_job_gets_a_token_for_the_audience_it_asks_for() {
        use http_body_util::BodyExt;
        let issuer = OidcIssuer::new();
        let url = format!("{}&audience=https%3A%2F%2Fiam.googleapis.com%2Fx", request_url());
        let ok = answer(&issuer, &parts(&url, Some("rt")), "rt", "repo:octo/app:ref:refs/heads/main");
        assert_eq!(ok.status(), StatusCode::OK);
        let body: serde_json::Value =
            serde_json::from_slice(&ok.into_body().collect().await.unwrap().to_bytes()).unwrap();
        let claims = issuer.decode(body["value"].as_str().unwrap(), "https://iam.googleapis.com/x").unwrap();
        assert_eq!(claims.sub, "repo:octo/app:ref:refs/heads/main");
        assert_eq!(answer(&issuer, &parts(&url, Some("other")), "rt", "s").status(), StatusCode::UNAUTHORIZED);
        assert_eq!(answer(&issuer, &parts(&url, None), "rt", "s").status(), StatusCode::UNAUTHORIZED);
        let default = answer(&issuer, &parts(&request_url(), Some("rt")), "rt", "repo:octo/app:ref:refs/heads/main");
        let body: serde_json::Value =
            serde_json::from_slice(&default.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert!(issuer.decode(body["value"].as_str().unwrap(), "https://github.com/octo").is_ok());
    }
}
