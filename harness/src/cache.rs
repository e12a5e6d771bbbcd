//! The binary cache: verified tool binaries under the XDG cache dir, installed atomically.
//!
//! Layout: `<root>/tools/<tool>/<key>/{<binary>, manifest.json}`. An entry is built in a
//! staging dir next to it and renamed into place only once complete and verified, so a
//! killed download or build never leaves a binary that a later run would pick up. A lock
//! file per entry keeps two processes from installing the same entry at once.
//!
//! A lookup checks the binary's digest, but only when the file is not as it was when its
//! digest last matched: `verified` in the entry records the file's size, inode and change
//! times then (as git's index does), so a run does not hash every binary again.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Environment variable that overrides where the cache lives.
pub(crate) const CACHE_ENV: &str = "KO_MATRIX_CACHE";

const MANIFEST: &str = "manifest.json";
const VERIFIED: &str = "verified";
const STAGING_PREFIX: &str = ".staging-";

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("no cache directory: set {CACHE_ENV} or XDG_CACHE_HOME (or HOME)")]
    NoCacheDir,
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    #[error(
        "waited {waited:?} for the lock {path} (another ko-matrix is installing the same binary); \
         if no other ko-matrix runs, delete the lock file and retry"
    )]
    LockTimeout { path: PathBuf, waited: Duration },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CacheError + 'a {
    move |source| CacheError::Io { action, path: path.to_path_buf(), source }
}

/// What is recorded next to every cached binary.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub tool: String,
    pub version: String,
    /// How the binary was obtained: `release`, `go` or `path`.
    pub route: String,
    pub sha256: String,
    /// The Go toolchain that built it (go route only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub go_version: Option<String>,
    /// Modules the Go checksum database had no entry for when this was built.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sumdb_gaps: Vec<String>,
    /// Where it came from: the release asset URL, or `module@version` for builds.
    pub origin: String,
    /// RFC 3339 install time.
    pub installed_at: String,
    /// File name of the binary inside the entry dir.
    pub binary: String,
}

/// A verified binary in the cache.
#[derive(Debug, Clone)]
pub struct Installed {
    pub path: PathBuf,
    pub manifest: Manifest,
    /// Found in the cache, rather than installed by this call.
    pub from_cache: bool,
}

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// `$KO_MATRIX_CACHE`, else `$XDG_CACHE_HOME/ko-matrix` (`~/.cache/ko-matrix`).
    pub fn from_env() -> Result<Cache, CacheError> {
        if let Some(dir) = std::env::var_os(CACHE_ENV).filter(|v| !v.is_empty()) {
            return Ok(Cache::at(PathBuf::from(dir)));
        }
        let base = dirs::cache_dir().ok_or(CacheError::NoCacheDir)?;
        Ok(Cache::at(base.join("ko-matrix")))
    }

    pub fn at(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The entry for one build of one tool, e.g. (`ko`, `v0.15.2-release`).
    pub fn entry(&self, tool: &str, key: &str) -> Entry {
        let parent = self.root.join("tools").join(tool);
        Entry { dir: parent.join(key), key: key.to_string(), parent }
    }
}

#[derive(Debug, Clone)]
pub struct Entry {
    parent: PathBuf,
    dir: PathBuf,
    key: String,
}

/// Holds an entry's lock file; the lock is released on drop.
#[derive(Debug)]
pub struct EntryLock {
    _file: File,
}

impl Entry {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The installed binary, if the entry is complete and its digest still matches.
    /// A damaged entry is evicted, so the caller installs it afresh.
    pub fn lookup(&self) -> Result<Option<Installed>, CacheError> {
        let manifest_path = self.dir.join(MANIFEST);
        let text = match fs::read_to_string(&manifest_path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("reading", &manifest_path)(e)),
        };
        let intact = serde_json::from_str::<Manifest>(&text).ok().and_then(|manifest| {
            let path = self.dir.join(&manifest.binary);
            let stamp = FileStamp::of(&path).ok()?;
            let verified = self.dir.join(VERIFIED);
            if fs::read_to_string(&verified).ok().as_deref() != Some(stamp.as_str()) {
                let digest = sha256_file(&path).ok()?;
                if digest != manifest.sha256 {
                    return None;
                }
                // Best effort: without it, the next lookup hashes again.
                let _ = stamp.record(&self.dir);
            }
            Some(Installed { path, manifest, from_cache: true })
        });
        if intact.is_none() {
            self.evict()?;
        }
        Ok(intact)
    }

    /// Takes the entry's lock, waiting at most `timeout` for another process to finish.
    pub async fn lock(&self, timeout: Duration) -> Result<EntryLock, CacheError> {
        fs::create_dir_all(&self.parent).map_err(io_err("creating", &self.parent))?;
        let path = self.parent.join(format!(".{}.lock", self.key));
        let file =
            File::options().create(true).truncate(false).write(true).open(&path).map_err(io_err("opening", &path))?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(EntryLock { _file: file }),
                Err(fs::TryLockError::WouldBlock) => {
                    if started.elapsed() >= timeout {
                        return Err(CacheError::LockTimeout { path, waited: started.elapsed() });
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(fs::TryLockError::Error(e)) => return Err(io_err("locking", &path)(e)),
            }
        }
    }

    /// A fresh staging dir for this entry. Leftovers of killed installs are removed first;
    /// holding the lock proves nobody else is using them.
    pub(crate) fn stage(&self, _lock: &EntryLock) -> Result<tempfile::TempDir, CacheError> {
        let prefix = format!("{STAGING_PREFIX}{}-", self.key);
        for leftover in fs::read_dir(&self.parent).map_err(io_err("listing", &self.parent))? {
            let leftover = leftover.map_err(io_err("listing", &self.parent))?;
            if leftover.file_name().to_string_lossy().starts_with(&prefix) {
                let path = leftover.path();
                fs::remove_dir_all(&path).map_err(io_err("removing stale", &path))?;
            }
        }
        tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in(&self.parent)
            .map_err(io_err("creating staging dir in", &self.parent))
    }

    /// Writes the manifest and the binary's stamp into `staging` and moves it into place
    /// atomically.
    pub fn commit(
        &self,
        staging: tempfile::TempDir,
        manifest: Manifest,
        _lock: &EntryLock,
    ) -> Result<Installed, CacheError> {
        let manifest_path = staging.path().join(MANIFEST);
        let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
        fs::write(&manifest_path, json).map_err(io_err("writing", &manifest_path))?;
        // The binary was just verified; moving its directory changes none of its stamp.
        let binary = staging.path().join(&manifest.binary);
        let stamp = FileStamp::of(&binary).map_err(io_err("reading", &binary))?;
        stamp.record(staging.path()).map_err(io_err("writing", &staging.path().join(VERIFIED)))?;
        self.evict()?;
        let staged = staging.keep();
        fs::rename(&staged, &self.dir).map_err(io_err("moving staged install to", &self.dir))?;
        Ok(Installed { path: self.dir.join(&manifest.binary), manifest, from_cache: false })
    }

    /// Removes the entry (a failed verification, a damaged install).
    pub(crate) fn evict(&self) -> Result<(), CacheError> {
        match fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("removing", &self.dir)(e)),
            _ => Ok(()),
        }
    }
}

/// What changes whenever a file's contents can have: its size, inode, and modification and
/// status-change times to the nanosecond (the latter no user can set back).
struct FileStamp(String);

impl FileStamp {
    fn of(path: &Path) -> io::Result<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(path)?;
        Ok(FileStamp(format!(
            "{} {} {} {}.{} {}.{}\n",
            m.len(),
            m.dev(),
            m.ino(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec()
        )))
    }

    fn as_str(&self) -> &str {
        &self.0
    }

    /// Records this as the stamp of the binary in entry dir `dir` whose digest matched.
    fn record(&self, dir: &Path) -> io::Result<()> {
        fs::write(dir.join(VERIFIED), &self.0)
    }
}

/// Hex SHA-256 of a file's contents.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Current time as RFC 3339, for manifests.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("UTC time formats as RFC 3339")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_for(path: &Path) -> Manifest {
        Manifest {
            tool: "demo".into(),
            version: "v1.0.0".into(),
            route: "release".into(),
            sha256: sha256_file(path).unwrap(),
            go_version: None,
            sumdb_gaps: Vec::new(),
            origin: "test".into(),
            installed_at: now_rfc3339(),
            binary: "demo".into(),
        }
    }

    #[tokio::test]
    async fn commit_then_lookup_and_damage_evicts() {
        let root = tempfile::tempdir().unwrap();
        let entry = Cache::at(root.path()).entry("demo", "v1.0.0-release");
        assert!(entry.lookup().unwrap().is_none());

        let lock = entry.lock(Duration::from_secs(1)).await.unwrap();
        let staging = entry.stage(&lock).unwrap();
        fs::write(staging.path().join("demo"), b"#!/bin/sh\n").unwrap();
        let manifest = manifest_for(&staging.path().join("demo"));
        let installed = entry.commit(staging, manifest.clone(), &lock).unwrap();
        assert_eq!(installed.manifest, manifest);
        assert_eq!(entry.lookup().unwrap().unwrap().manifest, manifest);

        assert!(entry.dir().join(VERIFIED).is_file(), "an install is remembered with the file's stamp");
        fs::write(&installed.path, b"#!/bin/sh\n").unwrap();
        assert_eq!(
            entry.lookup().unwrap().unwrap().manifest,
            manifest,
            "rewritten with the same bytes: hashed again, still intact"
        );
        fs::write(&installed.path, b"#!/bin/sx\n").unwrap();
        assert!(entry.lookup().unwrap().is_none(), "the same size, other bytes: not served");
        assert!(!entry.dir().exists());

        drop(lock);
        let lock = entry.lock(Duration::from_secs(1)).await.unwrap();
        let staging = entry.stage(&lock).unwrap();
        fs::write(staging.path().join("demo"), b"#!/bin/sh\n").unwrap();
        let installed = entry.commit(staging, manifest.clone(), &lock).unwrap();
        fs::write(&installed.path, b"tampered").unwrap();
        assert!(entry.lookup().unwrap().is_none(), "a damaged binary is not served");
        assert!(!entry.dir().exists(), "and its entry is evicted");
    }

    #[tokio::test]
    async fn second_locker_waits_then_times_out() {
        let root = tempfile::tempdir().unwrap();
        let entry = Cache::at(root.path()).entry("demo", "k");
        let _held = entry.lock(Duration::from_secs(1)).await.unwrap();
        let err = entry.lock(Duration::from_millis(300)).await.unwrap_err();
        assert!(matches!(err, CacheError::LockTimeout { .. }), "{err}");
    }

    #[tokio::test]
    async fn staging_removes_leftovers_of_killed_installs() {
        let root = tempfile::tempdir().unwrap();
        let entry = Cache::at(root.path()).entry("demo", "k");
        let lock = entry.lock(Duration::from_secs(1)).await.unwrap();
        let leftover = entry.stage(&lock).unwrap().keep();
        fs::write(leftover.join("half-a-binary"), b"12").unwrap();
        let fresh = entry.stage(&lock).unwrap();
        assert!(!leftover.exists());
        assert!(fresh.path().exists());
    }
}
