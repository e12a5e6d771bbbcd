//! The result contract: what one cell gave, as `matrix.json` records it and every other
//! part (runs, reports, regressions, bisect) reads it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::outcome::{FailClass, Outcome};
use ko_matrix_emulators::gateway::Record;

/// A cell's result: the `cells[]` entry of matrix.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellResult {
    /// The tool under test; matrix.json files from before tools were a parameter have none,
    /// and mean the shorthand tool.
    #[serde(default = "shorthand_tool")]
    pub tool: String,
    pub version: String,
    pub scenario: String,
    /// What the cell did: `push` (matrix.json files from before copies have none) or `copy`.
    #[serde(default, skip_serializing_if = "Verb::is_push")]
    pub verb: Verb,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<FailClass>,
    pub detail: String,
    /// Why, in one plain sentence from the wire record (`diagnosis.rs`), for a failed cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<String>,
    /// Both runs' when the cell was retried, as are the tool's.
    pub duration_ms: u64,
    /// Time spent in the tool's processes (the rest is the harness's setup and verification);
    /// `ko_ms` in matrix.json files from before tools were a parameter.
    #[serde(alias = "ko_ms")]
    pub tool_ms: u64,
    pub log: PathBuf,
    /// The log of the retry, when the first run failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_log: Option<PathBuf>,
    /// The label of each run (`fail(network)`, `pass`): two when the cell was retried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<String>,
    /// The environment the tool got, secrets masked.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The gateway's record of the cell's traffic.
    #[serde(default)]
    pub requests: Vec<Record>,
}

/// What a cell does with the tool: push its payload to the target, or copy an image from a
/// `[source]` registry to the target. The scenario decides it; reports group cells by it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    #[default]
    Push,
    Copy,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Push => "push",
            Verb::Copy => "copy",
        }
    }

    fn is_push(&self) -> bool {
        *self == Verb::Push
    }
}

pub(crate) fn shorthand_tool() -> String {
    crate::tool::shorthand().name().to_string()
}

impl CellResult {
    /// `ko@v0.15.2::ecr/env-session`.
    pub fn id(&self) -> String {
        cell_id(&self.tool, &self.version, &self.scenario)
    }

    /// `pass`, `fail(<class>)`, `infra-error`, `skipped`, `flaky`.
    pub fn label(&self) -> String {
        match (self.outcome, self.class) {
            (Outcome::Pass, _) => "pass".into(),
            (Outcome::Fail, Some(class)) => format!("fail({})", class.as_str()),
            (Outcome::Fail, None) => "fail".into(),
            (Outcome::InfraError, _) => "infra-error".into(),
            (Outcome::Skipped, _) => "skipped".into(),
            (Outcome::Flaky, _) => "flaky".into(),
        }
    }
}

/// A cell's name: `<tool>@<version>::<scenario>`.
pub fn cell_id(tool: &str, version: &str, scenario: &str) -> String {
    format!("{tool}@{version}::{scenario}")
}

/// The family of a scenario: its first path component (`registry`, `ecr`).
pub fn family(scenario: &str) -> &str {
    scenario.split('/').next().unwrap_or(scenario)
}
