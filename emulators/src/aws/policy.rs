//! Repository policies (resource-based IAM policies on an ECR repository): the statements'
//! effect, principals and actions, enough to answer "does this policy deny or allow this
//! principal this action?". Conditions, `NotAction` and `NotPrincipal` are not modelled and
//! are refused, so a policy never silently means less than it says.

use serde_json::Value;

/// Why a policy text is not one the emulator can evaluate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("the policy is not a JSON object with a `Statement`: {0}")]
    Malformed(String),
    #[error("the ko-matrix ECR emulator does not model `{0}` in repository policies")]
    Unmodelled(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Clone)]
struct Statement {
    effect: Effect,
    /// `*`, or principal ARNs / account ids.
    principals: Vec<String>,
    /// Action patterns (`ecr:PutImage`, `ecr:*`).
    actions: Vec<String>,
}

/// A repository policy: its text as set, and its statements.
#[derive(Debug, Clone)]
pub struct Policy {
    pub text: String,
    statements: Vec<Statement>,
}

/// A string or a list of strings, as policy grammar allows for most elements.
fn strings(value: &Value, what: &str) -> Result<Vec<String>, PolicyError> {
    match value {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| PolicyError::Malformed(format!("{what}: {v}"))))
            .collect(),
        other => Err(PolicyError::Malformed(format!("{what}: {other}"))),
    }
}

impl Policy {
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let doc: Value = serde_json::from_str(text).map_err(|e| PolicyError::Malformed(e.to_string()))?;
        let statements = match doc.get("Statement") {
            Some(Value::Array(list)) => list.clone(),
            Some(one @ Value::Object(_)) => vec![one.clone()],
            _ => return Err(PolicyError::Malformed("no `Statement`".into())),
        };
        let statements = statements
            .iter()
            .map(|s| {
                for unmodelled in ["Condition", "NotAction", "NotPrincipal"] {
                    if s.get(unmodelled).is_some() {
                        return Err(PolicyError::Unmodelled(unmodelled.into()));
                    }
                }
                let effect = match s.get("Effect").and_then(Value::as_str) {
                    Some("Allow") => Effect::Allow,
                    Some("Deny") => Effect::Deny,
                    other => return Err(PolicyError::Malformed(format!("Effect: {other:?}"))),
                };
                let principals = match s.get("Principal") {
                    Some(Value::String(star)) if star == "*" => vec!["*".to_string()],
                    Some(Value::Object(p)) => match p.get("AWS") {
                        Some(aws) => strings(aws, "Principal.AWS")?,
                        // Service principals never sign a registry request of a cell.
                        None => Vec::new(),
                    },
                    other => return Err(PolicyError::Malformed(format!("Principal: {other:?}"))),
                };
                let actions =
                    strings(s.get("Action").ok_or_else(|| PolicyError::Malformed("no `Action`".into()))?, "Action")?;
                Ok(Statement { effect, principals, actions })
            })
            .collect::<Result<_, _>>()?;
        Ok(Policy { text: text.to_string(), statements })
    }

    /// What the policy says to `principal` (an IAM user or assumed-role session ARN) doing
    /// `action`: a matching Deny wins over any Allow; `None` when no statement applies.
    pub fn effect(&self, principal: &str, action: &str) -> Option<Effect> {
        let applying = self
            .statements
            .iter()
            .filter(|s| s.principals.iter().any(|p| names(p, principal)) && crate::grants::allows(&s.actions, action));
        applying.map(|s| s.effect).max_by_key(|e| *e == Effect::Deny)
    }
}

/// Whether a policy's principal element names the caller: `*`, the caller's own ARN, its
/// account (`123456789012` or `arn:aws:iam::123456789012:root`: every principal in it), or the
/// role an assumed-role session belongs to.
fn names(element: &str, caller: &str) -> bool {
    if element == "*" || element == caller {
        return true;
    }
    let Some((account, resource)) = caller.strip_prefix("arn:").and_then(|rest| {
        // arn:<partition>:<service>::<account>:<resource>
        let mut parts = rest.splitn(5, ':');
        let (_partition, _service, _region) = (parts.next()?, parts.next()?, parts.next()?);
        Some((parts.next()?, parts.next()?))
    }) else {
        return false;
    };
    if element == account || element.ends_with(&format!("::{account}:root")) {
        return true;
    }
    match resource.strip_prefix("assumed-role/").and_then(|r| r.split('/').next()) {
        Some(role) => element.ends_with(&format!("::{account}:role/{role}")) && element.contains(":iam::"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = "arn:aws:iam::123456789012:user/ko-matrix-ci";
    const SESSION: &str = "arn:aws:sts::123456789012:assumed-role/ko-pusher/ci";

    #[test]
    fn a_deny_wins_and_names_its_principals() {
        let policy = Policy::parse(
            r#"{"Version":"2012-10-17","Statement":[
                {"Effect":"Allow","Principal":"*","Action":"ecr:*"},
                {"Sid":"NoPush","Effect":"Deny","Principal":{"AWS":["arn:aws:iam::123456789012:user/ko-matrix-ci","arn:aws:iam::123456789012:role/ko-pusher"]},"Action":["ecr:PutImage","ecr:InitiateLayerUpload"]}]}"#,
        )
        .unwrap();
        assert_eq!(policy.effect(USER, "ecr:PutImage"), Some(Effect::Deny));
        assert_eq!(policy.effect(SESSION, "ecr:InitiateLayerUpload"), Some(Effect::Deny), "the session's role");
        assert_eq!(policy.effect(USER, "ecr:BatchGetImage"), Some(Effect::Allow));
        assert_eq!(policy.effect("arn:aws:iam::123456789012:user/other", "ecr:PutImage"), Some(Effect::Allow));
    }

    #[test]
    fn accounts_name_every_principal_in_them() {
        let policy = Policy::parse(
            r#"{"Statement":{"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"ecr:*"}}"#,
        )
        .unwrap();
        assert_eq!(policy.effect(SESSION, "ecr:PutImage"), Some(Effect::Deny));
        assert_eq!(policy.effect("arn:aws:iam::210987654321:user/x", "ecr:PutImage"), None);
    }

    #[test]
    fn what_is_not_modelled_is_refused() {
        let conditional = r#"{"Statement":[{"Effect":"Deny","Principal":"*","Action":"ecr:*","Condition":{}}]}"#;
        assert_eq!(Policy::parse(conditional).unwrap_err(), PolicyError::Unmodelled("Condition".into()));
        assert!(matches!(Policy::parse("not json"), Err(PolicyError::Malformed(_))));
    }
}
