//! The leak check: whether a cell signed AWS requests with an access key it was not given,
//! that is, credentials the tool found outside the cell (the host's variables or files).
//!
//! How a run can tell depends on its AWS backend, so the run records which check it had
//! ([`LeakCheck`], matrix.json's `leak_check`). The embedded emulator knows every key it
//! minted for a cell, so any other key is foreign. LocalStack accepts any key and mints its
//! own, so there only the host's own key ids, collected before any cell runs, are known
//! not to be a cell's.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::outcome::foreign_key_ids;
use ko_matrix_emulators::aws::shared_file_access_key_ids;
use ko_matrix_emulators::gateway::Record;

/// Which leak check a run's cells had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeakCheck {
    /// No ECR scenario: no cell is given a key, so every key a cell signs with that its
    /// scenario does not set is foreign.
    NoAws,
    /// The embedded emulator: a key must be minted for the cell or set by its scenario.
    Minted,
    /// LocalStack: a key is foreign when it is one of the host's own.
    HostKeys(HostKeys),
}

/// The access key ids of the host the run started on: what a cell must never sign with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostKeys {
    pub ids: BTreeSet<String>,
    /// Credential files that exist but could not be read, as `<path> unreadable: <why>`:
    /// keys in them go unwatched.
    pub unread: Vec<String>,
}

impl LeakCheck {
    /// The access key ids in a cell's gateway `records` that it was not given: neither set by
    /// its scenario (`stated`) nor vouched for by this check, given what the run `minted` for
    /// the cell (see [`LeakCheck::vouches`]).
    pub(crate) fn foreign_keys(
        &self,
        records: &[Record],
        stated: &BTreeSet<String>,
        minted: impl Fn(&str) -> Option<bool>,
    ) -> Vec<String> {
        foreign_key_ids(records, |id| stated.contains(id) || self.vouches(id, minted(id)))
    }

    /// Whether a cell may sign with `id`, given whether the run minted `id` for it (`None`:
    /// the backend cannot tell).
    fn vouches(&self, id: &str, minted: Option<bool>) -> bool {
        match (minted, self) {
            (Some(minted), _) => minted,
            (None, LeakCheck::HostKeys(host)) => !host.ids.contains(id),
            // Only LocalStack cannot tell, and its runs watch host keys: flag rather than
            // let a mis-wired run vouch for everything.
            (None, LeakCheck::NoAws | LeakCheck::Minted) => false,
        }
    }
}

impl std::fmt::Display for LeakCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeakCheck::NoAws => f.write_str("any AWS key (no ECR scenario: no cell is given one)"),
            LeakCheck::Minted => f.write_str("minted keys (embedded AWS emulator)"),
            LeakCheck::HostKeys(host) => {
                let unread: String = host.unread.iter().map(|u| format!("; {u}")).collect();
                if host.ids.is_empty() {
                    write!(f, "off (LocalStack accepts any key, and this host has no AWS key id to watch for{unread})")
                } else {
                    write!(f, "host key ids (LocalStack accepts any key; {} known{unread})", host.ids.len())
                }
            }
        }
    }
}

impl HostKeys {
    /// The key ids the AWS SDKs would find on this host, through `var` (the process's
    /// environment): `AWS_ACCESS_KEY_ID` (and the older `AWS_ACCESS_KEY`), and
    /// `aws_access_key_id` in the shared credentials and config files
    /// (`AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE`, else `~/.aws/credentials` and
    /// `~/.aws/config`). A missing file holds no key; an unreadable one is noted.
    pub fn collect(var: impl Fn(&str) -> Option<String>) -> HostKeys {
        let mut host = HostKeys::default();
        host.ids.extend(["AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY"].into_iter().filter_map(&var).filter(|v| !v.is_empty()));
        let home = var("HOME").map(PathBuf::from).or_else(dirs::home_dir);
        let files = [("AWS_SHARED_CREDENTIALS_FILE", "credentials"), ("AWS_CONFIG_FILE", "config")];
        for (variable, default) in files {
            let Some(path) =
                var(variable).map(PathBuf::from).or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
            else {
                continue;
            };
            match std::fs::read_to_string(&path) {
                Ok(text) => host.ids.extend(shared_file_access_key_ids(&text).map(str::to_string)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => host.unread.push(format!("{} unreadable: {e}", path.display())),
            }
        }
        host
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn host_keys_come_from_the_environment_and_the_shared_files() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join(".aws")).unwrap();
        std::fs::write(
            home.path().join(".aws/credentials"),
            "[default]\naws_access_key_id = AKIAHOSTDEFAULT00001\naws_secret_access_key = s\n# aws_access_key_id = AKIACOMMENTEDOUT0001\n\n[ci]\nAWS_ACCESS_KEY_ID=AKIAHOSTPROFILE00002 ; inline\n",
        )
        .unwrap();
        std::fs::write(home.path().join(".aws/config"), "[profile sso]\naws_access_key_id = AKIAHOSTCONFIG000003\n")
            .unwrap();
        let named = home.path().join("elsewhere");
        std::fs::write(&named, "[default]\naws_access_key_id = AKIAHOSTNAMEDFILE004\n").unwrap();
        let env = |pairs: &[(&str, String)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
        };
        let lookup = |env: BTreeMap<String, String>| move |name: &str| env.get(name).cloned();
        let at_home =
            env(&[("HOME", home.path().display().to_string()), ("AWS_ACCESS_KEY_ID", "AKIAHOSTENVIRONMENT5".into())]);
        let host = HostKeys::collect(lookup(at_home.clone()));
        assert_eq!(
            host.ids.iter().map(String::as_str).collect::<Vec<_>>(),
            ["AKIAHOSTCONFIG000003", "AKIAHOSTDEFAULT00001", "AKIAHOSTENVIRONMENT5", "AKIAHOSTPROFILE00002"]
        );
        assert!(host.unread.is_empty(), "{:?}", host.unread);

        // The variables naming the files win over ~/.aws.
        let mut named_files = at_home;
        named_files.insert("AWS_SHARED_CREDENTIALS_FILE".into(), named.display().to_string());
        named_files.insert("AWS_CONFIG_FILE".into(), home.path().join("absent").display().to_string());
        named_files.remove("AWS_ACCESS_KEY_ID");
        let host = HostKeys::collect(lookup(named_files));
        assert_eq!(host.ids.iter().map(String::as_str).collect::<Vec<_>>(), ["AKIAHOSTNAMEDFILE004"]);

        // A directory where a file should be cannot be read: said, not ignored.
        let unreadable = env(&[
            ("HOME", home.path().display().to_string()),
            ("AWS_SHARED_CREDENTIALS_FILE", home.path().display().to_string()),
        ]);
        let host = HostKeys::collect(lookup(unreadable));
        assert_eq!(host.unread.len(), 1, "{:?}", host.unread);
        assert!(host.unread[0].starts_with(&format!("{} unreadable: ", home.path().display())), "{:?}", host.unread);
    }

    fn signed(ids: &[&str]) -> Vec<Record> {
        ids.iter()
            .map(|id| Record {
                host: "api.ecr.us-east-1.amazonaws.com".into(),
                method: "POST".into(),
                path: "/".into(),
                status: 200,
                at_ms: 1,
                note: None,
                infra: None,
                auth: Some(format!("AWS4-HMAC-SHA256 {id}")),
            })
            .collect()
    }

    #[test]
    fn a_localstack_cell_leaks_only_by_signing_with_a_host_key() {
        let check = LeakCheck::HostKeys(HostKeys {
            ids: BTreeSet::from(["AKIAHOSTKEY000000001".to_string(), "AKIAHOSTKEY000000002".to_string()]),
            unread: Vec::new(),
        });
        // The cell's own key (LocalStack takes the account number), a session LocalStack
        // minted, a made-up key its scenario sets, and a host key it found somewhere.
        let own = |id: &str| (id == "123456789012").then_some(true);
        let records = signed(&["123456789012", "ASIALOCALSTACKROLE01", "AKIASTATED0000000001", "AKIAHOSTKEY000000002"]);
        let stated = BTreeSet::from(["AKIASTATED0000000001".to_string()]);
        assert_eq!(check.foreign_keys(&records, &stated, own), ["AKIAHOSTKEY000000002"]);
        // A host key the scenario itself sets is the cell's.
        let stated = BTreeSet::from(["AKIAHOSTKEY000000002".to_string()]);
        assert!(check.foreign_keys(&records, &stated, own).is_empty());
        // With no host key known, nothing can be flagged: the state says `off`.
        assert!(LeakCheck::HostKeys(HostKeys::default()).foreign_keys(&records, &BTreeSet::new(), own).is_empty());
    }

    #[test]
    fn an_embedded_cell_may_sign_only_with_minted_or_stated_keys() {
        let minted = |id: &str| Some(id == "ASIAKOMATRIXCELL0001");
        let records = signed(&["ASIAKOMATRIXCELL0001", "AKIAKOMATRIXUNKNOWN0", "AKIAONLYINACOMMENT01"]);
        // As a scenario that sets AKIAKOMATRIXUNKNOWN0 and mentions the other in a comment
        // states it (Scenario::stated_access_key_ids).
        let stated = BTreeSet::from(["AKIAKOMATRIXUNKNOWN0".to_string()]);
        assert_eq!(LeakCheck::Minted.foreign_keys(&records, &stated, minted), ["AKIAONLYINACOMMENT01"]);
        // A cell without an AWS world was minted nothing.
        assert_eq!(
            LeakCheck::NoAws.foreign_keys(&records, &BTreeSet::new(), |_| Some(false)),
            ["ASIAKOMATRIXCELL0001", "AKIAKOMATRIXUNKNOWN0", "AKIAONLYINACOMMENT01"]
        );
    }

    #[test]
    fn under_localstack_only_a_host_key_is_foreign() {
        let host = HostKeys { ids: BTreeSet::from(["AKIAHOSTKEY000000001".to_string()]), unread: Vec::new() };
        let check = LeakCheck::HostKeys(host);
        // LocalStack cannot say what it minted: a host key is flagged, anything else is not.
        assert!(!check.vouches("AKIAHOSTKEY000000001", None));
        assert!(check.vouches("LSIAQAAAAAAAROLESESSION", None));
        assert!(check.vouches("123456789012", None));
        // The cell's own key, and a cell with no AWS world (nothing minted for it), as ever.
        assert!(check.vouches("AKIAHOSTKEY000000001", Some(true)), "given to the cell");
        assert!(!check.vouches("AKIAANYKEY0000000001", Some(false)));
        assert_eq!(check.to_string(), "host key ids (LocalStack accepts any key; 1 known)");
    }

    #[test]
    fn the_embedded_emulator_vouches_only_for_what_it_minted() {
        assert!(LeakCheck::Minted.vouches("ASIAKOMATRIXCELL0001", Some(true)));
        assert!(!LeakCheck::Minted.vouches("AKIAANYKEY0000000001", Some(false)));
        assert!(!LeakCheck::NoAws.vouches("AKIAANYKEY0000000001", Some(false)));
        assert!(!LeakCheck::Minted.vouches("AKIAANYKEY0000000001", None), "mis-wired: flagged, not vouched for");
    }

    #[test]
    fn every_state_reads_as_what_it_checks() {
        assert_eq!(LeakCheck::Minted.to_string(), "minted keys (embedded AWS emulator)");
        assert_eq!(LeakCheck::NoAws.to_string(), "any AWS key (no ECR scenario: no cell is given one)");
        let none = LeakCheck::HostKeys(HostKeys::default());
        assert_eq!(none.to_string(), "off (LocalStack accepts any key, and this host has no AWS key id to watch for)");
        let unread = LeakCheck::HostKeys(HostKeys {
            ids: BTreeSet::from(["AKIAHOSTKEY000000001".to_string(), "AKIAHOSTKEY000000002".to_string()]),
            unread: vec!["/root/.aws/config unreadable: Permission denied (os error 13)".into()],
        });
        assert_eq!(
            unread.to_string(),
            "host key ids (LocalStack accepts any key; 2 known; /root/.aws/config unreadable: Permission denied (os error 13))"
        );
    }
}
