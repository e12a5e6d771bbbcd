//! IAM-lite: which actions a principal may perform, and AWS's wording when it may not.
//! Identity-based allow lists, and a repository's policy (explicit denies and allows, no
//! conditions): enough to answer "may this CI identity log in, and push?".

pub(crate) use crate::grants::allows;

use super::policy::{Effect, Policy};

/// Whether `principal`, whose identity policy allows `identity`, may perform `action` on
/// `resource` (a repository ARN) under the repository's `policy`: an explicit deny in the
/// policy wins; an allow in either grants (same-account evaluation); `Err` is AWS's refusal.
pub(crate) fn authorize(
    identity: &[String],
    policy: Option<&Policy>,
    principal: &str,
    action: &str,
    resource: &str,
) -> Result<(), String> {
    match policy.and_then(|p| p.effect(principal, action)) {
        Some(Effect::Deny) => Err(explicit_denial(principal, action, resource)),
        Some(Effect::Allow) => Ok(()),
        None if allows(identity, action) => Ok(()),
        None => Err(denial(principal, action, resource)),
    }
}

/// AWS's denial for an explicit deny in a repository policy: the IAM convention
/// (registry-shapes-reference §5, UNCONFIRMED for ECR).
pub(crate) fn explicit_denial(arn: &str, action: &str, resource: &str) -> String {
    format!("User: {arn} is not authorized to perform: {action} on resource: {resource} with an explicit deny in a resource-based policy")
}

/// AWS's denial text, as current accounts see it.
pub(crate) fn denial(arn: &str, action: &str, resource: &str) -> String {
    format!("User: {arn} is not authorized to perform: {action} on resource: {resource} because no identity-based policy allows the {action} action")
}

/// The ECR action a registry request needs (what ECR checks for each Distribution call).
pub(crate) fn registry_action(method: &str, rest: &str) -> &'static str {
    match (method, rest) {
        ("HEAD", r) if r.starts_with("/blobs/") => "ecr:BatchCheckLayerAvailability",
        ("GET", r) if r.starts_with("/blobs/") && !r.starts_with("/blobs/uploads") => "ecr:GetDownloadUrlForLayer",
        ("POST", r) if r.starts_with("/blobs/uploads") => "ecr:InitiateLayerUpload",
        ("PATCH", _) => "ecr:UploadLayerPart",
        ("PUT", r) if r.starts_with("/blobs/uploads") => "ecr:CompleteLayerUpload",
        ("PUT", r) if r.starts_with("/manifests/") => "ecr:PutImage",
        ("DELETE", r) if r.starts_with("/manifests/") => "ecr:BatchDeleteImage",
        (_, r) if r.starts_with("/manifests/") => "ecr:BatchGetImage",
        (_, r) if r.starts_with("/tags/") => "ecr:ListImages",
        _ => "ecr:BatchGetImage",
    }
}

/// Whether a registry action writes to the repository (a push).
pub(crate) fn is_write(action: &str) -> bool {
    matches!(action, "ecr:InitiateLayerUpload" | "ecr:UploadLayerPart" | "ecr:CompleteLayerUpload" | "ecr:PutImage")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_calls_map_to_ecr_actions() {
        assert_eq!(registry_action("POST", "/blobs/uploads/"), "ecr:InitiateLayerUpload");
        assert_eq!(registry_action("HEAD", "/blobs/sha256:ab"), "ecr:BatchCheckLayerAvailability");
        assert_eq!(
            registry_action("DELETE", "/manifests/sha256:ab"),
            "ecr:BatchDeleteImage",
            "deleting is not reading"
        );
        assert_eq!(registry_action("GET", "/manifests/latest"), "ecr:BatchGetImage");
        assert_eq!(registry_action("PUT", "/manifests/latest"), "ecr:PutImage");
        assert_eq!(registry_action("HEAD", "/manifests/latest"), "ecr:BatchGetImage");
        assert_eq!(registry_action("PUT", "/blobs/uploads/u?digest=x"), "ecr:CompleteLayerUpload");
    }

    #[test]
    fn a_repository_policy_denies_what_the_identity_allows() {
        let policy = Policy::parse(r#"{"Statement":[{"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::123456789012:user/ci"},"Action":"ecr:PutImage"},{"Effect":"Allow","Principal":"*","Action":"ecr:BatchGetImage"}]}"#).unwrap();
        let (user, repo) = ("arn:aws:iam::123456789012:user/ci", "arn:aws:ecr:us-east-1:123456789012:repository/app");
        let all = vec!["*".to_string()];
        assert_eq!(
            authorize(&all, Some(&policy), user, "ecr:PutImage", repo).unwrap_err(),
            "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: ecr:PutImage on resource: arn:aws:ecr:us-east-1:123456789012:repository/app with an explicit deny in a resource-based policy"
        );
        assert!(authorize(&all, Some(&policy), user, "ecr:InitiateLayerUpload", repo).is_ok());
        assert!(authorize(&[], Some(&policy), user, "ecr:BatchGetImage", repo).is_ok(), "the policy's allow grants");
        assert!(authorize(&[], None, user, "ecr:BatchGetImage", repo)
            .unwrap_err()
            .contains("no identity-based policy"));
    }

    #[test]
    fn denials_name_the_principal() {
        assert_eq!(
            denial("arn:aws:iam::123456789012:user/ci", "ecr:InitiateLayerUpload", "arn:aws:ecr:us-east-1:123456789012:repository/app"),
            "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: ecr:InitiateLayerUpload on resource: arn:aws:ecr:us-east-1:123456789012:repository/app because no identity-based policy allows the ecr:InitiateLayerUpload action"
        );
    }
}
