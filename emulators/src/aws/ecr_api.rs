//! The ECR API (awsJson1.1 at `api.ecr.<region>.amazonaws.com`): SigV4-checked calls,
//! responses and errors in AWS's JSON shapes, headers and wording.

use std::collections::BTreeSet;

use base64::Engine;
use bytes::Bytes;
use hyper::http::request::Parts;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::auth::{authenticate, AuthFailure};
use super::iam;
use super::policy::Policy;
use super::state::{
    AccessKey, AppliedFor, AwsCell, CreationTemplate, PullThroughRule, Repository, StoredRule, StoredTemplate,
    TagMutability,
};
use super::{http_date, request_id, Emulator};
use crate::wire::{json_as, Body};

const TARGET_PREFIX: &str = "AmazonEC2ContainerRegistry_V20150921.";

/// An AWS error: `__type` and message.
struct AwsError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

fn err(code: &'static str, message: impl Into<String>) -> AwsError {
    AwsError { status: StatusCode::BAD_REQUEST, code, message: message.into() }
}

fn json_response(status: StatusCode, value: Value, extra: Option<&str>) -> Response<Body> {
    let mut response = json_as(status, "application/x-amz-json-1.1", &value);
    let headers = response.headers_mut();
    headers.insert("x-amzn-requestid", request_id().parse().expect("hex header"));
    headers.insert("date", http_date(OffsetDateTime::now_utc()).parse().expect("date header"));
    if let Some(code) = extra {
        headers.insert("x-amzn-errortype", code.parse().expect("code header"));
    }
    response
}

fn error_response(e: AwsError) -> Response<Body> {
    json_response(e.status, json!({ "__type": e.code, "message": e.message }), Some(e.code))
}

fn epoch(t: OffsetDateTime) -> f64 {
    t.unix_timestamp_nanos() as f64 / 1e9
}

fn auth_error(failure: AuthFailure) -> AwsError {
    let code = match &failure {
        AuthFailure::Missing => "MissingAuthenticationTokenException",
        AuthFailure::Incomplete(_) => "IncompleteSignatureException",
        AuthFailure::UnknownKey => "UnrecognizedClientException",
        AuthFailure::Expired => "ExpiredTokenException",
        AuthFailure::Scope(_) | AuthFailure::Skew(_) | AuthFailure::BadSignature => "InvalidSignatureException",
    };
    let message = match failure {
        AuthFailure::UnknownKey => "The security token included in the request is invalid.".to_string(),
        other => other.message(),
    };
    err(code, message)
}

pub(crate) async fn handle(
    emulator: &Emulator,
    cell: Option<&AwsCell>,
    region: &str,
    parts: &Parts,
    body: Bytes,
) -> Response<Body> {
    let key = match authenticate(cell, region, "ecr", parts, &body) {
        Ok(key) => key,
        Err(failure) => return error_response(auth_error(failure)),
    };
    let cell = cell.expect("an authenticated key belongs to a cell");
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let input: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
    let operation = target.strip_prefix(TARGET_PREFIX).unwrap_or_default();
    let action = format!("ecr:{operation}");
    if !operation.is_empty() {
        let name = input.get("repositoryName").and_then(Value::as_str);
        let resource = match name {
            Some(name) => format!("arn:aws:ecr:{region}:{}:repository/{name}", cell.spec.account),
            None => "*".to_string(),
        };
        // A repository's own policy counts for calls on it.
        let policy = name.and_then(|n| cell.repositories.lock().expect("repositories lock").get(n)?.policy.clone());
        if let Err(message) = iam::authorize(&key.allow, policy.as_ref(), &key.arn, &action, &resource) {
            cell.record_denial(message.clone());
            return error_response(err("AccessDeniedException", message));
        }
    }
    let result = match target.strip_prefix(TARGET_PREFIX) {
        Some("GetAuthorizationToken") => get_authorization_token(cell, &key, region, &input),
        Some("CreateRepository") => create_repository(cell, region, &input),
        Some("DescribeRepositories") => describe_repositories(cell, region, &input),
        Some("DescribeImages") => describe_images(cell, &input),
        Some("ListImages") => list_images(cell, &input),
        Some("BatchGetImage") => batch_get_image(emulator, cell, &input).await,
        Some("PutImageTagMutability") => put_image_tag_mutability(cell, &input),
        Some("SetRepositoryPolicy") => set_repository_policy(cell, &input),
        Some("GetRepositoryPolicy") => get_repository_policy(cell, &input),
        Some("CreateRepositoryCreationTemplate") => create_repository_creation_template(cell, &input),
        Some("CreatePullThroughCacheRule") => create_pull_through_cache_rule(cell, &input),
        Some(other) => {
            Err(err("UnknownOperationException", format!("The ko-matrix ECR emulator does not implement {other}")))
        }
        None => Err(err("UnknownOperationException", format!("unknown target `{target}`"))),
    };
    match result {
        Ok(value) => json_response(StatusCode::OK, value, None),
        Err(e) => error_response(e),
    }
}

fn get_authorization_token(cell: &AwsCell, key: &AccessKey, region: &str, input: &Value) -> Result<Value, AwsError> {
    let ids: Vec<String> = match input.get("registryIds").and_then(Value::as_array) {
        Some(ids) => ids.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        None => vec![key.account.clone()],
    };
    if let Some(bad) = ids.iter().find(|id| id.len() != 12 || !id.chars().all(|c| c.is_ascii_digit())) {
        return Err(err("InvalidParameterException", format!("Invalid parameter at 'registryIds' failed to satisfy constraint: 'Member must satisfy regular expression pattern: [0-9]{{12}}' ({bad})")));
    }
    let lifetime = cell.token_lifetime(key);
    let data: Vec<Value> = ids
        .iter()
        .map(|id| {
            let (password, expires) = cell.mint_password(key, id, region, lifetime);
            json!({
                "authorizationToken": base64::engine::general_purpose::STANDARD.encode(format!("AWS:{password}")),
                "expiresAt": epoch(expires),
                "proxyEndpoint": format!("https://{id}.dkr.ecr.{region}.{}", super::dns_suffix(region)),
            })
        })
        .collect();
    Ok(json!({ "authorizationData": data }))
}

fn repository_json(cell: &AwsCell, region: &str, name: &str, repo: &Repository) -> Value {
    let account = &cell.spec.account;
    json!({
        "repositoryArn": format!("arn:{}:ecr:{region}:{account}:repository/{name}", super::partition(region)),
        "registryId": account,
        "repositoryName": name,
        "repositoryUri": format!("{account}.dkr.ecr.{region}.{}/{name}", super::dns_suffix(region)),
        "createdAt": epoch(repo.created_at),
        "imageTagMutability": repo.tag_mutability.as_str(),
        "imageScanningConfiguration": { "scanOnPush": false },
        "encryptionConfiguration": { "encryptionType": "AES256" },
    })
}

fn not_found(cell: &AwsCell, name: &str) -> AwsError {
    err(
        "RepositoryNotFoundException",
        format!("The repository with name '{name}' does not exist in the registry with id '{}'", cell.spec.account),
    )
}

fn repository_name(input: &Value) -> Result<String, AwsError> {
    input
        .get("repositoryName")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| err("InvalidParameterException", "1 validation error detected: Value null at 'repositoryName' failed to satisfy constraint: Member must not be null"))
}

fn valid_repository_name(name: &str) -> bool {
    (2..=256).contains(&name.len())
        && name.split('/').all(|part| {
            !part.is_empty()
                && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
                && part.starts_with(|c: char| c.is_ascii_alphanumeric())
                && part.ends_with(|c: char| c.is_ascii_alphanumeric())
        })
}

fn create_repository(cell: &AwsCell, region: &str, input: &Value) -> Result<Value, AwsError> {
    let name = repository_name(input)?;
    if !valid_repository_name(&name) {
        return Err(err("InvalidParameterException", format!("Invalid parameter at 'repositoryName' failed to satisfy constraint: 'must satisfy regular expression '(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*'' ({name})")));
    }
    let mut repos = cell.repositories.lock().expect("repositories lock");
    if repos.contains_key(&name) {
        return Err(err(
            "RepositoryAlreadyExistsException",
            format!("The repository with name '{name}' already exists in the registry with id '{}'", cell.spec.account),
        ));
    }
    let mutability = match input.get("imageTagMutability") {
        Some(value) => tag_mutability(value)?,
        None => TagMutability::Mutable,
    };
    let repo = Repository::new(mutability, None);
    let value = repository_json(cell, region, &name, &repo);
    repos.insert(name, repo);
    Ok(json!({ "repository": value }))
}

fn describe_repositories(cell: &AwsCell, region: &str, input: &Value) -> Result<Value, AwsError> {
    let repos = cell.repositories.lock().expect("repositories lock");
    let wanted: Option<Vec<String>> = input
        .get("repositoryNames")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect());
    let list: Vec<Value> = match wanted {
        Some(names) => {
            let mut out = Vec::new();
            for name in names {
                let repo = repos.get(&name).ok_or_else(|| not_found(cell, &name))?;
                out.push(repository_json(cell, region, &name, repo));
            }
            out
        }
        None => repos.iter().map(|(name, repo)| repository_json(cell, region, name, repo)).collect(),
    };
    Ok(json!({ "repositories": list }))
}

/// The `imageIds` of a request as (digest, tag) pairs.
fn image_ids(input: &Value) -> Option<Vec<(Option<String>, Option<String>)>> {
    let ids = input.get("imageIds")?.as_array()?;
    Some(
        ids.iter()
            .map(|id| {
                (
                    id.get("imageDigest").and_then(Value::as_str).map(str::to_string),
                    id.get("imageTag").and_then(Value::as_str).map(str::to_string),
                )
            })
            .collect(),
    )
}

fn describe_images(cell: &AwsCell, input: &Value) -> Result<Value, AwsError> {
    let name = repository_name(input)?;
    let repos = cell.repositories.lock().expect("repositories lock");
    let repo = repos.get(&name).ok_or_else(|| not_found(cell, &name))?;
    let wanted = image_ids(input);
    let mut details = Vec::new();
    for image in &repo.images {
        let selected = wanted.as_ref().is_none_or(|ids| {
            ids.iter()
                .any(|(d, t)| d.as_ref() == Some(&image.digest) || t.as_ref().is_some_and(|t| image.tags.contains(t)))
        });
        if !selected {
            continue;
        }
        let mut detail = json!({
            "registryId": cell.spec.account,
            "repositoryName": name,
            "imageDigest": image.digest,
            "imageSizeInBytes": image.size,
            "imagePushedAt": epoch(image.pushed_at),
            "imageManifestMediaType": image.media_type,
        });
        if !image.tags.is_empty() {
            detail["imageTags"] = json!(image.tags);
        }
        details.push(detail);
    }
    if let Some(ids) = &wanted {
        if details.is_empty() && !ids.is_empty() {
            let (d, t) = &ids[0];
            return Err(err("ImageNotFoundException", format!("The image with imageId {{imageDigest:'{}', imageTag:'{}'}} does not exist within the repository with name '{name}' in the registry with id '{}'", d.as_deref().unwrap_or("null"), t.as_deref().unwrap_or("null"), cell.spec.account)));
        }
    }
    Ok(json!({ "imageDetails": details }))
}

fn list_images(cell: &AwsCell, input: &Value) -> Result<Value, AwsError> {
    let name = repository_name(input)?;
    let repos = cell.repositories.lock().expect("repositories lock");
    let repo = repos.get(&name).ok_or_else(|| not_found(cell, &name))?;
    let mut ids = Vec::new();
    for image in &repo.images {
        if image.tags.is_empty() {
            ids.push(json!({ "imageDigest": image.digest }));
        }
        for tag in &image.tags {
            ids.push(json!({ "imageDigest": image.digest, "imageTag": tag }));
        }
    }
    Ok(json!({ "imageIds": ids }))
}

async fn batch_get_image(emulator: &Emulator, cell: &AwsCell, input: &Value) -> Result<Value, AwsError> {
    let name = repository_name(input)?;
    let known: BTreeSet<(String, BTreeSet<String>)> = {
        let repos = cell.repositories.lock().expect("repositories lock");
        let repo = repos.get(&name).ok_or_else(|| not_found(cell, &name))?;
        repo.images.iter().map(|i| (i.digest.clone(), i.tags.clone())).collect()
    };
    let mut images = Vec::new();
    let mut failures = Vec::new();
    for (digest, tag) in image_ids(input).unwrap_or_default() {
        let found =
            known.iter().find(|(d, tags)| digest.as_ref() == Some(d) || tag.as_ref().is_some_and(|t| tags.contains(t)));
        let Some((found_digest, _)) = found else {
            failures.push(json!({ "imageId": { "imageDigest": digest, "imageTag": tag }, "failureCode": "ImageNotFound", "failureReason": "Requested image not found" }));
            continue;
        };
        match emulator.backend_manifest(cell, &name, found_digest).await {
            Ok((manifest, media_type)) => {
                let mut id = json!({ "imageDigest": found_digest });
                if let Some(tag) = &tag {
                    id["imageTag"] = json!(tag);
                }
                images.push(json!({ "registryId": cell.spec.account, "repositoryName": name, "imageId": id, "imageManifest": manifest, "imageManifestMediaType": media_type }));
            }
            Err(e) => {
                return Err(AwsError { status: StatusCode::INTERNAL_SERVER_ERROR, code: "ServerException", message: e })
            }
        }
    }
    Ok(json!({ "images": images, "failures": failures }))
}

/// An `ImageTagMutability` value: the two the emulator models, else why not.
fn tag_mutability(value: &Value) -> Result<TagMutability, AwsError> {
    match value.as_str() {
        Some("MUTABLE") => Ok(TagMutability::Mutable),
        Some("IMMUTABLE") => Ok(TagMutability::Immutable),
        Some(other @ ("IMMUTABLE_WITH_EXCLUSION" | "MUTABLE_WITH_EXCLUSION")) => Err(err(
            "InvalidParameterException",
            format!("The ko-matrix ECR emulator does not model imageTagMutability {other} (exclusion filters)"),
        )),
        _ => Err(err(
            "InvalidParameterException",
            format!("Invalid parameter at 'imageTagMutability' failed to satisfy constraint: 'Member must satisfy enum value set: [MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION, MUTABLE_WITH_EXCLUSION]' ({value})"),
        )),
    }
}

fn required<'a>(input: &'a Value, member: &str) -> Result<&'a Value, AwsError> {
    input.get(member).ok_or_else(|| {
        err(
            "InvalidParameterException",
            format!("1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"),
        )
    })
}

fn policy(text: &Value, member: &str) -> Result<Policy, AwsError> {
    let text = text.as_str().unwrap_or_default();
    // ECR's text for a policy it cannot read is UNCONFIRMED; the reason is the emulator's.
    Policy::parse(text).map_err(|e| {
        err("InvalidParameterException", format!("Invalid parameter at '{member}' failed to satisfy constraint: 'Invalid repository policy provided' ({e})"))
    })
}

fn put_image_tag_mutability(cell: &AwsCell, input: &Value) -> Result<Value, AwsError> {
    let name = repository_name(input)?;
    let mutability = tag_mutability(required(input, "imageTagMutability")?)?;
    let mut repos = cell.repositories.lock().expect("repositories lock");
    let repo = repos.get_mut(&name).ok_or_else(|| not_found(cell, &name))?;
    repo.tag_mutability = mutability;
    Ok(json!({ "registryId": cell.spec.account, "repositoryName": name, "imageTagMutability": mutability.as_str() }))
}

fn set_repository_policy(cell: &AwsCell, input: &Value) -> Result<Value, AwsError> {
    let name = repository_name(input)?;
    let policy = policy(required(input, "policyText")?, "policyText")?;
    let mut repos = cell.repositories.lock().expect("repositories lock");
    let repo = repos.get_mut(&name).ok_or_else(|| not_found(cell, &name))?;
    let text = policy.text.clone();
    repo.policy = Some(policy);
    Ok(json!({ "registryId": cell.spec.account, "repositoryName": name, "policyText": text }))
}

fn get_repository_policy(cell: &AwsCell, input: &Value) -> Result<Value, AwsError> {
    let name = repository_name(input)?;
    let repos = cell.repositories.lock().expect("repositories lock");
    let repo = repos.get(&name).ok_or_else(|| not_found(cell, &name))?;
    let policy = repo.policy.as_ref().ok_or_else(|| {
        err(
            "RepositoryPolicyNotFoundException",
            format!(
                "Repository policy does not exist for the repository with name '{name}' in the registry with id '{}'",
                cell.spec.account
            ),
        )
    })?;
    Ok(json!({ "registryId": cell.spec.account, "repositoryName": name, "policyText": policy.text }))
}

/// `prefix` of a template, or `ecrRepositoryPrefix` of a rule: the service model's pattern
/// (`Prefix`, `PullThroughCacheRuleRepositoryPrefix`) and lengths.
fn valid_prefix(prefix: &str, lengths: std::ops::RangeInclusive<usize>) -> bool {
    lengths.contains(&prefix.len()) && (prefix == "ROOT" || valid_repository_name(prefix.trim_end_matches('/')))
}

fn create_repository_creation_template(cell: &AwsCell, input: &Value) -> Result<Value, AwsError> {
    let prefix = required(input, "prefix")?.as_str().unwrap_or_default().to_string();
    if !valid_prefix(&prefix, 1..=256) {
        return Err(err("InvalidParameterException", format!("Invalid parameter at 'prefix' failed to satisfy constraint: 'must satisfy regular expression '^([a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(\\/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*\\/?|ROOT)$'' ({prefix})")));
    }
    let applied_for: Vec<AppliedFor> = required(input, "appliedFor")?
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| serde_json::from_value(v.clone()).map_err(|_| err("InvalidParameterException", format!("Invalid parameter at 'appliedFor' failed to satisfy constraint: 'Member must satisfy enum value set: [REPLICATION, PULL_THROUGH_CACHE, CREATE_ON_PUSH]' ({v})"))))
        .collect::<Result<_, _>>()?;
    let image_tag_mutability = match input.get("imageTagMutability") {
        Some(value) => tag_mutability(value)?,
        None => TagMutability::Mutable,
    };
    let repository_policy = input.get("repositoryPolicy").map(|p| policy(p, "repositoryPolicy")).transpose()?;
    let mut templates = cell.templates.lock().expect("templates lock");
    if templates.iter().any(|t| t.template.prefix == prefix) {
        return Err(err(
            "TemplateAlreadyExistsException",
            "The repository creation template already exists. Specify a unique prefix and try again.",
        ));
    }
    let template = CreationTemplate { prefix, applied_for, image_tag_mutability, repository_policy };
    let stored = StoredTemplate { template, created_at: OffsetDateTime::now_utc() };
    let t = &stored.template;
    let mut value = json!({
        "prefix": t.prefix,
        "appliedFor": t.applied_for.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        "imageTagMutability": t.image_tag_mutability.as_str(),
        "encryptionConfiguration": { "encryptionType": "AES256" },
        "createdAt": epoch(stored.created_at),
        "updatedAt": epoch(stored.created_at),
    });
    for member in ["description", "resourceTags", "lifecyclePolicy", "customRoleArn"] {
        if let Some(v) = input.get(member) {
            value[member] = v.clone();
        }
    }
    if let Some(p) = &t.repository_policy {
        value["repositoryPolicy"] = json!(p.text);
    }
    templates.push(stored);
    Ok(json!({ "registryId": cell.spec.account, "repositoryCreationTemplate": value }))
}

fn create_pull_through_cache_rule(cell: &AwsCell, input: &Value) -> Result<Value, AwsError> {
    let prefix = required(input, "ecrRepositoryPrefix")?.as_str().unwrap_or_default().to_string();
    let url = required(input, "upstreamRegistryUrl")?.as_str().unwrap_or_default().to_string();
    if !valid_prefix(&prefix, 2..=30) {
        return Err(err("InvalidParameterException", format!("Invalid parameter at 'ecrRepositoryPrefix' failed to satisfy constraint: 'must satisfy regular expression '^([a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(\\/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*\\/?|ROOT)$'' ({prefix})")));
    }
    if !super::upstream::held(&url) {
        // The world holds no other upstream: a limit of the emulator, said as such.
        return Err(err(
            "UnsupportedUpstreamRegistryException",
            format!("The ko-matrix ECR emulator holds images of {} only, not {url}", super::upstream::PUBLIC_ECR),
        ));
    }
    let mut rules = cell.pull_through_rules.lock().expect("rules lock");
    if rules.iter().any(|r| r.rule.ecr_repository_prefix == prefix) {
        return Err(err(
            "PullThroughCacheRuleAlreadyExistsException",
            "A pull through cache rule with these settings already exists for the private registry.",
        ));
    }
    let stored = StoredRule {
        rule: PullThroughRule { ecr_repository_prefix: prefix, upstream_registry_url: url },
        created_at: OffsetDateTime::now_utc(),
    };
    let value = json!({
        "ecrRepositoryPrefix": stored.rule.ecr_repository_prefix,
        "upstreamRegistryUrl": stored.rule.upstream_registry_url,
        "upstreamRegistry": "ecr-public",
        "createdAt": epoch(stored.created_at),
        "registryId": cell.spec.account,
    });
    rules.push(stored);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_follow_ecr_rules() {
        assert!(valid_repository_name("app"));
        assert!(valid_repository_name("team/app-1.2_x"));
        assert!(!valid_repository_name("App"));
        assert!(!valid_repository_name("a"));
        assert!(!valid_repository_name("team//app"));
        assert!(!valid_repository_name("-app"));
    }
}
