//! Longest cells first. A run starts its cells in order of how long each took last time
//! (`durations.json` in the cache), the way test schedulers do, so a slow cell does not start
//! last and leave the other cores idle at the end. Cells never timed start first: they may be
//! the slowest of all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::result::CellResult;

/// Cell id → the duration (ms) of its last run.
#[derive(Debug, Default)]
pub(crate) struct Durations {
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

    /// Sorts `cells` longest-first, unknown ones first, keeping the given order among equals.
    pub(crate) fn order<T>(&self, cells: &mut [T], id: impl Fn(&T) -> String) {
        cells.sort_by_key(|cell| std::cmp::Reverse(self.by_cell.get(&id(cell)).copied().unwrap_or(u64::MAX)));
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
        reloaded.order(&mut cells, |c| c.to_string());
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
        durations.order(&mut cells, |c| c.to_string());
        assert_eq!(cells, ["b", "a"], "no knowledge, the given order");
    }
}
