//! Longest cells first. A run starts its cells in order of how long each took last time
//! (`durations.json` in the cache), the way test schedulers do, so a slow cell does not start
//! last and leave the other cores idle at the end. Cells never timed start first: they may be
//! the slowest of all. The same durations split a nightly into shards of equal time
//! ([`ShardPlan`], `ko-matrix plan --shards N`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::result::CellResult;

/// Cell id → the duration (ms) of its last run.
#[derive(Debug, Default)]
pub struct Durations {
    path: Option<PathBuf>,
    by_cell: BTreeMap<String, u64>,
}

impl Durations {
    /// The durations kept at `path`; none when the file is absent or unreadable (it is only
    /// a hint: a lost file costs order, never results).
    pub fn load(path: &Path) -> Durations {
        let by_cell =
            std::fs::read(path).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default();
        Durations { path: Some(path.to_path_buf()), by_cell }
    }

    /// The duration of `id`'s last run, if it was timed.
    pub fn get(&self, id: &str) -> Option<u64> {
        self.by_cell.get(id).copied()
    }

    /// How many cells are timed.
    pub fn len(&self) -> usize {
        self.by_cell.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_cell.is_empty()
    }

    /// Where the cell `id` goes in the order cells start: longest first, those never timed
    /// before all (sort by it, keeping a given order among equals).
    pub(crate) fn rank(&self, id: &str) -> std::cmp::Reverse<u64> {
        std::cmp::Reverse(self.by_cell.get(id).copied().unwrap_or(u64::MAX))
    }

    /// Remembers `results`' durations and writes the file (atomically, so a concurrent run
    /// reads either version). Skipped cells take no time and are not remembered.
    pub fn record(&mut self, results: &[CellResult]) -> std::io::Result<()> {
        for r in results.iter().filter(|r| r.outcome != crate::outcome::Outcome::Skipped) {
            self.by_cell.insert(r.id(), r.duration_ms);
        }
        let Some(path) = &self.path else { return Ok(()) };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        std::io::Write::write_all(&mut file, &serde_json::to_vec_pretty(&self.by_cell).expect("durations serialise"))?;
        file.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// Which shard runs each cell, from recorded durations: `ko-matrix plan --shards N` writes
/// it, `ko-matrix run --shard I/N --plan FILE` runs shard I's cells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPlan {
    /// Cell id → its shard, 1-based.
    pub cells: BTreeMap<String, u32>,
    /// Each shard's predicted time in ms, shard 1 first.
    pub predicted_ms: Vec<u64>,
    /// How many cells had no recorded duration and were given an estimate.
    pub estimated: usize,
}

impl ShardPlan {
    /// Longest first onto the least-loaded shard (Graham's LPT: within 4/3 of the best
    /// makespan, and close to it when there are many short cells). A cell never timed is
    /// estimated: the median of its scenario's timed cells (other versions, other tools), else
    /// of every timed cell.
    pub fn assign(cells: &[String], durations: &Durations, shards: u32) -> ShardPlan {
        let shards = shards.max(1) as usize;
        let median = |mut values: Vec<u64>| {
            values.sort_unstable();
            values.get(values.len() / 2).copied()
        };
        let overall = median(durations.by_cell.values().copied().collect()).unwrap_or(1);
        let scenario_of = |id: &str| id.split_once("::").map_or(id.to_string(), |(_, s)| s.to_string());
        let mut by_scenario: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for (id, ms) in &durations.by_cell {
            by_scenario.entry(scenario_of(id)).or_default().push(*ms);
        }
        let mut estimated = 0;
        let mut timed: Vec<(u64, &String)> = cells
            .iter()
            .map(|id| {
                let ms = durations.get(id).unwrap_or_else(|| {
                    estimated += 1;
                    by_scenario.get(&scenario_of(id)).and_then(|v| median(v.clone())).unwrap_or(overall)
                });
                (ms, id)
            })
            .collect();
        // Longest first; the name breaks ties so the plan is the same on every machine.
        timed.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        let mut predicted_ms = vec![0u64; shards];
        let mut assigned = BTreeMap::new();
        for (ms, id) in timed {
            let (lightest, _) =
                predicted_ms.iter().enumerate().min_by_key(|(i, load)| (**load, *i)).expect("at least one shard");
            predicted_ms[lightest] += ms;
            assigned.insert(id.clone(), lightest as u32 + 1);
        }
        ShardPlan { cells: assigned, predicted_ms, estimated }
    }

    pub fn shards(&self) -> u32 {
        self.predicted_ms.len() as u32
    }

    /// The predicted time of the whole run: its longest shard's.
    pub fn makespan_ms(&self) -> u64 {
        self.predicted_ms.iter().copied().max().unwrap_or(0)
    }

    /// The longest shard against the mean shard: 1.0 is a perfect split.
    pub fn balance(&self) -> f64 {
        let total: u64 = self.predicted_ms.iter().sum();
        if total == 0 {
            return 1.0;
        }
        self.makespan_ms() as f64 * self.predicted_ms.len() as f64 / total as f64
    }

    /// The shard the plan gives `id`, if it names the cell.
    pub fn shard_of(&self, id: &str) -> Option<u32> {
        self.cells.get(id).copied()
    }

    pub fn read(path: &Path) -> Result<ShardPlan, PlanError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| PlanError::Io { path: path.to_path_buf(), source })?;
        let plan: ShardPlan = serde_json::from_str(&text).map_err(|e| PlanError::Parse {
            path: path.to_path_buf(),
            message: format!("{e}; expected the JSON `ko-matrix plan --out` writes"),
        })?;
        if let Some((id, shard)) = plan.cells.iter().find(|(_, s)| **s == 0 || **s > plan.shards()) {
            return Err(PlanError::Parse {
                path: path.to_path_buf(),
                message: format!("{id} is given shard {shard}, outside 1..={}", plan.shards()),
            });
        }
        Ok(plan)
    }

    pub fn write(&self, path: &Path) -> Result<(), PlanError> {
        let text = serde_json::to_string_pretty(self).expect("a plan serialises");
        std::fs::write(path, text).map_err(|source| PlanError::Io { path: path.to_path_buf(), source })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a shard plan: {message}", path.display())]
    Parse { path: PathBuf, message: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{FailClass, Outcome};
    use crate::report::tests::cell;

    #[test]
    fn the_longest_start_first_and_the_unknown_before_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("durations.json");
        let mut durations = Durations::load(&path);
        let mut slow = cell("ecr/web-identity-wrong-audience", "v0.15.1", Outcome::Fail, Some(FailClass::Unauthorized));
        slow.duration_ms = 8800;
        let mut fast = cell("registry/anonymous", "v0.15.1", Outcome::Pass, None);
        fast.duration_ms = 900;
        let skipped = cell("ecr/imds-v2", "v0.15.1", Outcome::Skipped, None);
        durations.record(&[fast, slow, skipped]).unwrap();

        let reloaded = Durations::load(&path);
        let mut cells = vec![
            "ko@v0.15.1::registry/anonymous",
            "ko@v0.15.1::ecr/imds-v2",
            "ko@v0.15.1::ecr/web-identity-wrong-audience",
            "ko@v0.19.1::registry/new",
        ];
        cells.sort_by_key(|c| reloaded.rank(c));
        assert_eq!(
            cells,
            [
                "ko@v0.15.1::ecr/imds-v2",
                "ko@v0.19.1::registry/new",
                "ko@v0.15.1::ecr/web-identity-wrong-audience",
                "ko@v0.15.1::registry/anonymous"
            ]
        );
    }

    #[test]
    fn a_damaged_file_only_costs_the_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("durations.json"), "{not json").unwrap();
        let durations = Durations::load(&dir.path().join("durations.json"));
        let mut cells = vec!["b", "a"];
        cells.sort_by_key(|c| durations.rank(c));
        assert_eq!(cells, ["b", "a"], "no knowledge, the given order");
    }

    fn durations(pairs: &[(&str, u64)]) -> Durations {
        Durations { path: None, by_cell: pairs.iter().map(|(id, ms)| (id.to_string(), *ms)).collect() }
    }

    #[test]
    fn the_longest_cells_go_first_onto_the_least_loaded_shard() {
        let known = durations(&[("a", 7), ("b", 5), ("c", 4), ("d", 3), ("e", 3), ("f", 2)]);
        let cells: Vec<String> = ["a", "b", "c", "d", "e", "f"].iter().map(|s| s.to_string()).collect();
        let plan = ShardPlan::assign(&cells, &known, 2);
        // 7 → 1, 5 → 2, 4 → 2, 3 → 1, 3 → 2, 2 → 1: each onto the shard with less so far.
        assert_eq!(plan.predicted_ms, [12, 12]);
        assert_eq!(plan.makespan_ms(), 12);
        assert_eq!(plan.balance(), 1.0);
        assert_eq!((plan.shard_of("a"), plan.shard_of("b"), plan.shard_of("f")), (Some(1), Some(2), Some(1)));
        assert_eq!(plan.estimated, 0);
        // One cell longer than the rest together: it alone is the makespan.
        let skewed = ShardPlan::assign(&cells[..2], &durations(&[("a", 100), ("b", 1)]), 3);
        assert_eq!(skewed.makespan_ms(), 100);
        assert!(skewed.balance() > 2.0, "{}", skewed.balance());
    }

    #[test]
    fn a_cell_never_timed_is_estimated_from_its_scenario_then_from_all() {
        let known = durations(&[
            ("ko@v1::faults/slow", 900),
            ("crane@v2::faults/slow", 1000),
            ("ko@v1::registry/anonymous", 10),
            ("ko@v1::registry/basic", 20),
        ]);
        let cells: Vec<String> = ["ko@v9::faults/slow", "ko@v9::registry/new", "ko@v1::registry/anonymous"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let plan = ShardPlan::assign(&cells, &known, 3);
        assert_eq!(plan.estimated, 2);
        // The slow scenario's median (1000 of [900, 1000]), the overall median (900 of four), the timed 10.
        let mut loads = plan.predicted_ms.clone();
        loads.sort();
        assert_eq!(loads, [10, 900, 1000]);
    }

    #[test]
    fn a_plan_round_trips_and_a_bad_one_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        let plan = ShardPlan::assign(&["x".to_string(), "y".to_string()], &durations(&[]), 2);
        plan.write(&path).unwrap();
        assert_eq!(ShardPlan::read(&path).unwrap(), plan);
        std::fs::write(&path, r#"{"cells": {"x": 3}, "predicted_ms": [1, 1], "estimated": 0}"#).unwrap();
        let error = ShardPlan::read(&path).unwrap_err().to_string();
        assert!(error.contains("plan.json: not a shard plan: x is given shard 3, outside 1..=2"), "{error}");
        std::fs::write(&path, "[]").unwrap();
        let error = ShardPlan::read(&path).unwrap_err().to_string();
        assert!(error.contains("expected the JSON `ko-matrix plan --out` writes"), "{error}");
    }
}
