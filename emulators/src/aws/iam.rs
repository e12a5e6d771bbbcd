//! IAM-lite: which actions a principal may perform, and AWS's wording when it may not.
//! Identity-based allow lists only (no explicit denies, no conditions): enough to answer
//! "may this CI identity log in, and push?".

pub(crate) use crate::grants::allows;

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
    fn denials_name_the_principal() {
        assert_eq!(
            denial("arn:aws:iam::123456789012:user/ci", "ecr:InitiateLayerUpload", "arn:aws:ecr:us-east-1:123456789012:repository/app"),
            "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: ecr:InitiateLayerUpload on resource: arn:aws:ecr:us-east-1:123456789012:repository/app because no identity-based policy allows the ecr:InitiateLayerUpload action"
        );
    }
}
