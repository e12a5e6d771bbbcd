//! What ships inside the binary: the built-in scenario library, the Go app cells build, the
//! built-in tool definitions (`tools/`), and a starting matrix.toml. `ko-matrix init` writes them out, and a run whose scenarios
//! folder has no `app/` builds the built-in app, so an installed ko-matrix works anywhere.

use std::path::{Path, PathBuf};

use include_dir::{include_dir, Dir, DirEntry};

static SCENARIOS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/scenarios");
static TOOLS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/tools");
const MATRIX_TOML: &str = include_str!("../../matrix.toml");

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{} already exist(s) in {}; nothing was written (init never overwrites: move them away or pick another directory)", .existing.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "), .dir.display())]
    Exists { dir: PathBuf, existing: Vec<PathBuf> },
    #[error("writing {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

/// Every built-in file as (path relative to the matrix directory, contents).
fn files() -> Vec<(PathBuf, &'static [u8])> {
    fn walk(dir: &'static Dir<'static>, out: &mut Vec<(PathBuf, &'static [u8])>) {
        for entry in dir.entries() {
            match entry {
                DirEntry::Dir(d) => walk(d, out),
                DirEntry::File(f) => out.push((Path::new("scenarios").join(f.path()), f.contents())),
            }
        }
    }
    let mut out = vec![(PathBuf::from("matrix.toml"), MATRIX_TOML.as_bytes())];
    walk(&SCENARIOS, &mut out);
    out.extend(TOOLS.files().map(|f| (Path::new("tools").join(f.path()), f.contents())));
    out
}

/// The built-in tool definitions as (`tools/<name>.toml`, text).
pub(crate) fn tool_definitions() -> impl Iterator<Item = (PathBuf, &'static str)> {
    TOOLS.files().filter_map(|f| Some((Path::new("tools").join(f.path()), f.contents_utf8()?)))
}

/// Writes matrix.toml, scenarios/ (with the app) and tools/ into `dir`. Refuses, writing nothing,
/// when any of those files exists already. Returns the files written, relative to `dir`.
pub fn init(dir: &Path) -> Result<Vec<PathBuf>, InitError> {
    let files = files();
    let existing: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).filter(|p| dir.join(p).exists()).collect();
    if !existing.is_empty() {
        return Err(InitError::Exists { dir: dir.to_path_buf(), existing });
    }
    write(dir, &files)?;
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

/// Writes the built-in Go app (the `scenarios/app` module) into `to`.
pub(crate) fn write_app(to: &Path) -> Result<(), InitError> {
    let app: Vec<(PathBuf, &[u8])> = files()
        .into_iter()
        .filter_map(|(p, c)| Some((p.strip_prefix("scenarios/app").ok()?.to_path_buf(), c)))
        .collect();
    write(to, &app)
}

fn write(dir: &Path, files: &[(PathBuf, &[u8])]) -> Result<(), InitError> {
    for (path, contents) in files {
        let target = dir.join(path);
        let io = |source| InitError::Io { path: target.clone(), source };
        std::fs::create_dir_all(target.parent().unwrap_or(dir)).map_err(io)?;
        std::fs::write(&target, contents).map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn init_writes_the_library_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let written = super::init(dir.path()).unwrap();
        assert!(
            written.iter().any(|p| p.ends_with("scenarios/app/main.go"))
                && written.iter().any(|p| p.ends_with("scenarios/ecr/env-session.toml"))
                && written.iter().any(|p| p.ends_with("tools/crane.toml"))
        );
        assert_eq!(std::fs::read_to_string(dir.path().join("matrix.toml")).unwrap(), super::MATRIX_TOML);
        std::fs::write(dir.path().join("matrix.toml"), "# mine\n").unwrap();
        std::fs::remove_file(dir.path().join("scenarios/ecr/env-session.toml")).unwrap();
        let refused = super::init(dir.path()).unwrap_err().to_string();
        assert!(refused.contains("matrix.toml") && refused.contains("nothing was written"), "{refused}");
        assert_eq!(std::fs::read_to_string(dir.path().join("matrix.toml")).unwrap(), "# mine\n", "kept");
        assert!(!dir.path().join("scenarios/ecr/env-session.toml").exists(), "nothing written");
    }

    #[test]
    fn the_app_is_a_go_module() {
        let dir = tempfile::tempdir().unwrap();
        super::write_app(dir.path()).unwrap();
        assert!(std::fs::read_to_string(dir.path().join("go.mod")).unwrap().starts_with("module "));
        assert!(dir.path().join("main.go").is_file());
    }
}
