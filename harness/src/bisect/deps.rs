//! Dependency upgrades between two versions of a module: read both go.mod files (through the
//! module proxy) and list the requirements the newer one raises or adds.

use std::collections::BTreeMap;

/// `module → version` from a go.mod's `require` lines (block and single-line forms).
pub(crate) fn requirements(go_mod: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut in_block = false;
    for line in go_mod.lines() {
        let line = line.split("//").next().unwrap_or_default().trim();
        if line == "require (" {
            in_block = true;
            continue;
        }
        if in_block && line == ")" {
            in_block = false;
            continue;
        }
        let spec = if in_block { Some(line) } else { line.strip_prefix("require ") };
        let mut words = spec.unwrap_or_default().split_whitespace();
        if let (Some(module), Some(version)) = (words.next(), words.next()) {
            out.insert(module.to_string(), version.to_string());
        }
    }
    out
}

/// A requirement `bad` raises or adds relative to `good`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Upgrade {
    pub module: String,
    /// `None`: new in `bad`.
    pub from: Option<String>,
    pub to: String,
}

impl Upgrade {
    /// `module@version` for `go get`.
    pub fn target(&self) -> String {
        format!("{}@{}", self.module, self.to)
    }
}

impl std::fmt::Display for Upgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.from {
            Some(from) => write!(f, "{} {from} → {}", self.module, self.to),
            None => write!(f, "{} (new) {}", self.module, self.to),
        }
    }
}

fn newer(a: &str, b: &str) -> bool {
    match (
        semver::Version::parse(a.trim_start_matches('v').trim_end_matches("+incompatible")),
        semver::Version::parse(b.trim_start_matches('v').trim_end_matches("+incompatible")),
    ) {
        (Ok(a), Ok(b)) => a > b,
        _ => a != b,
    }
}

/// The requirements `bad` has at a higher version than `good` (or that `good` lacks).
pub(crate) fn upgrades(good: &BTreeMap<String, String>, bad: &BTreeMap<String, String>) -> Vec<Upgrade> {
    bad.iter()
        .filter(|(module, to)| good.get(*module).is_none_or(|from| newer(to, from)))
        .map(|(module, to)| Upgrade { module: module.clone(), from: good.get(module).cloned(), to: to.clone() })
        .collect()
}

/// `module → version` from a build list's `module version` lines (the main module, which has
/// no version, is left out).
fn build_list_versions(list: &[String]) -> BTreeMap<String, String> {
    list.iter()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.to_string()))
        })
        .collect()
}

/// The modules `failing` has at a higher version than `passing`, or that only it has.
pub(crate) fn build_list_delta(passing: &[String], failing: &[String]) -> Vec<Upgrade> {
    upgrades(&build_list_versions(passing), &build_list_versions(failing))
}

/// Modules whose resolved version always differs between passing and failing probes:
/// the versions seen in Good build lists and in Bad ones never overlap.
pub fn separating_modules(
    good_lists: &[Vec<String>],
    bad_lists: &[Vec<String>],
) -> Vec<(String, Vec<String>, Vec<String>)> {
    fn index(lists: &[Vec<String>]) -> BTreeMap<String, std::collections::BTreeSet<String>> {
        let mut out: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
        for list in lists {
            for line in list {
                let mut words = line.split_whitespace();
                if let (Some(m), Some(v)) = (words.next(), words.next()) {
                    out.entry(m.to_string()).or_default().insert(v.to_string());
                }
            }
        }
        out
    }
    if good_lists.is_empty() || bad_lists.is_empty() {
        return Vec::new();
    }
    let (good, bad) = (index(good_lists), index(bad_lists));
    bad.iter()
        .filter_map(|(module, bad_versions)| {
            let good_versions = good.get(module).cloned().unwrap_or_default();
            good_versions
                .is_disjoint(bad_versions)
                .then(|| (module.clone(), good_versions.into_iter().collect(), bad_versions.iter().cloned().collect()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_mod_requirements_in_both_forms() {
        let go_mod = "module github.com/google/ko\n\ngo 1.21\n\nrequire github.com/a/b v1.0.0\n\nrequire (\n\tgithub.com/c/d v0.2.0 // indirect\n\tgithub.com/e/f v2.0.0+incompatible\n)\n";
        let r = requirements(go_mod);
        assert_eq!(r.len(), 3);
        assert_eq!(r["github.com/c/d"], "v0.2.0");
        assert_eq!(r["github.com/e/f"], "v2.0.0+incompatible");
    }

    #[test]
    fn upgrades_are_raised_or_new_requirements() {
        let good = requirements("require (\n\ta v1.0.0\n\tb v1.2.0\n\tc v1.0.0\n)\n");
        let bad = requirements("require (\n\ta v1.1.0\n\tb v1.2.0\n\tc v0.9.0\n\td v0.1.0\n)\n");
        let ups: Vec<String> = upgrades(&good, &bad).iter().map(|u| u.to_string()).collect();
        assert_eq!(ups, ["a v1.0.0 → v1.1.0", "d (new) v0.1.0"]);
    }

    #[test]
    fn separating_modules_split_good_from_bad() {
        let good = vec![vec!["sdk v1.21.2".to_string(), "smithy v1.15.0".to_string(), "x v1".to_string()]];
        let bad = vec![
            vec!["sdk v1.24.1".to_string(), "smithy v1.19.0".to_string(), "x v1".to_string()],
            vec!["sdk v1.24.1".to_string(), "smithy v1.15.0".to_string(), "x v2".to_string()],
        ];
        let names: Vec<String> = separating_modules(&good, &bad).into_iter().map(|(m, _, _)| m).collect();
        assert_eq!(names, ["sdk"], "smithy and x vary within the failing builds");
    }
}
