//! What the emulated services hand out and later check: allow lists (which actions a
//! principal may perform) and minted secrets with an expiry (ECR registry passwords, registry
//! bearer tokens). One home for both, so that every emulator refuses an expired or unknown
//! secret the same way and matches actions with the same glob.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use time::OffsetDateTime;

/// Whether `action` (`ecr:PutImage`, `push`) matches one of `allowed` (`ecr:*`, `*`, `ecr:Put*`).
pub(crate) fn allows(allowed: &[String], action: &str) -> bool {
    allowed.iter().any(|pattern| matches(pattern, action))
}

/// A case-insensitive glob where `*` matches any run of characters.
fn matches(pattern: &str, action: &str) -> bool {
    fn glob(pattern: &[u8], text: &[u8]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
            Some((p, rest)) => text.first().is_some_and(|t| t.eq_ignore_ascii_case(p)) && glob(rest, &text[1..]),
        }
    }
    glob(pattern.as_bytes(), action.as_bytes())
}

/// `n` random bytes in standard base64 (which never contains `:`, so a secret always splits
/// off a `user:` prefix cleanly).
pub(crate) fn random_b64(n: usize) -> String {
    let raw: Vec<u8> = (0..n).map(|_| rand::random::<u8>()).collect();
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// Why a presented secret was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Never minted here (or minted for another cell).
    Unknown,
    Expired,
}

/// A secret minted for `grant`, good until `expires`.
#[derive(Debug, Clone)]
pub(crate) struct Issued<G> {
    pub grant: G,
    pub expires: OffsetDateTime,
}

/// The secrets a service minted, each with what it grants and until when.
pub(crate) struct Minted<G> {
    issued: Mutex<HashMap<String, Issued<G>>>,
}

impl<G> Default for Minted<G> {
    fn default() -> Self {
        Minted { issued: Mutex::new(HashMap::new()) }
    }
}

impl<G: Clone> Minted<G> {
    /// A new secret of `bytes` random bytes for `grant`, valid for `ttl` (negative: already
    /// expired, for scenarios that need a stale one).
    pub(crate) fn mint(&self, grant: G, bytes: usize, ttl: time::Duration) -> (String, OffsetDateTime) {
        let secret = random_b64(bytes);
        let expires = OffsetDateTime::now_utc() + ttl;
        self.issued.lock().expect("minted lock").insert(secret.clone(), Issued { grant, expires });
        (secret, expires)
    }

    /// What `secret` was minted for, expired or not.
    pub(crate) fn get(&self, secret: &str) -> Option<Issued<G>> {
        self.issued.lock().expect("minted lock").get(secret).cloned()
    }

    /// What `secret` grants now, or why it grants nothing.
    pub(crate) fn check(&self, secret: &str) -> Result<G, Refusal> {
        let issued = self.get(secret).ok_or(Refusal::Unknown)?;
        if issued.expires <= OffsetDateTime::now_utc() {
            return Err(Refusal::Expired);
        }
        Ok(issued.grant)
    }

    /// Forgets `secret`: it is refused as unknown from now on (a revoked token).
    pub(crate) fn revoke(&self, secret: &str) {
        self.issued.lock().expect("minted lock").remove(secret);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn wildcards_and_case() {
        assert!(allows(&list(&["*"]), "ecr:PutImage"));
        assert!(allows(&list(&["ecr:*"]), "ecr:PutImage"));
        assert!(allows(&list(&["ecr:Put*"]), "ecr:PutImage"));
        assert!(allows(&list(&["ECR:putimage"]), "ecr:PutImage"));
        assert!(allows(&list(&["ecr:*Layer*"]), "ecr:InitiateLayerUpload"));
        assert!(!allows(&list(&["ecr:GetAuthorizationToken"]), "ecr:PutImage"));
        assert!(!allows(&list(&["sts:*"]), "ecr:PutImage"));
        assert!(!allows(&[], "ecr:GetAuthorizationToken"));
        assert!(allows(&list(&["pull"]), "pull") && !allows(&list(&["pull"]), "push"));
    }

    #[test]
    fn minted_secrets_expire_and_revoke() {
        let minted: Minted<&str> = Minted::default();
        let (live, _) = minted.mint("write", 16, time::Duration::hours(1));
        let (stale, expires) = minted.mint("write", 16, -time::Duration::hours(1));
        assert!(expires < OffsetDateTime::now_utc());
        assert_eq!(minted.check(&live), Ok("write"));
        assert_eq!(minted.check(&stale), Err(Refusal::Expired));
        assert!(minted.get(&stale).is_some(), "an expired secret is still known");
        assert_eq!(minted.check("never-minted"), Err(Refusal::Unknown));
        minted.revoke(&live);
        assert_eq!(minted.check(&live), Err(Refusal::Unknown));
        assert!(!live.contains(':'));
    }
}
