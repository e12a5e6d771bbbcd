//! Where a run's time goes: resolving versions, getting each tool version and each of the
//! world's programs (downloading, waiting for a build turn, compiling), starting the services,
//! the cells, writing the reports. Every phase is an offset from the run's start plus a
//! duration, so phases that overlap (cells run while later builds take their turns) read as
//! they happened. matrix.json records them (`timings`); `run --timings` prints them
//! (`report::timings`).
//!
//! A run is two processes when it is contained (the outer one fetches, the inner one runs the
//! world and the cells): both read the one machine-wide monotonic clock, from one origin.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::events::{ProvisionEvent, ProvisionObserver};

/// Milliseconds since a run's start, on `CLOCK_MONOTONIC` (shared by every process on the
/// machine, namespaces included; unlike the wall clock it does not jump).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    origin_ms: u64,
}

impl Clock {
    /// A clock whose zero is now: the run's start.
    pub fn start() -> Clock {
        Clock { origin_ms: monotonic_ms() }
    }

    /// The clock of a run another process started at `origin_ms` (its [`Clock::origin_ms`]).
    pub fn from_origin(origin_ms: u64) -> Clock {
        Clock { origin_ms }
    }

    pub fn origin_ms(&self) -> u64 {
        self.origin_ms
    }

    /// Now, as an offset from the run's start.
    pub fn now_ms(&self) -> u64 {
        monotonic_ms().saturating_sub(self.origin_ms)
    }

    /// The span from `start_ms` to now.
    pub fn since(&self, start_ms: u64) -> Span {
        Span { start_ms, duration_ms: self.now_ms().saturating_sub(start_ms) }
    }
}

fn monotonic_ms() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid timespec to write into; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1000 + now.tv_nsec as u64 / 1_000_000
}

/// A phase: when it began (ms from the run's start) and how long it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub start_ms: u64,
    pub duration_ms: u64,
}

impl Span {
    pub fn end_ms(&self) -> u64 {
        self.start_ms + self.duration_ms
    }
}

/// A run's phases, as matrix.json's `timings` records them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Reading matrix.toml and the scenarios, and resolving version selectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve: Option<Span>,
    /// Each tool version and each of the world's programs that was fetched (in the order
    /// each began); one on PATH takes no time and is not listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub builds: Vec<BuildTiming>,
    /// Starting the world: registries, gateway, emulated clouds, base image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Span>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cells: Option<CellTimings>,
    /// Stopping the services and removing the run's scratch dir (every cell's HOME and work dir).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<Span>,
    /// Rendering and writing matrix.md, report.html and junit.xml (matrix.json, written last
    /// with these timings, is not in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reports: Option<Span>,
}

impl Timings {
    /// The end of the last phase recorded: the run's length, once the reports are written.
    pub fn end_ms(&self) -> u64 {
        let cells = self.cells.as_ref().map(|c| c.last_result_ms);
        let spans =
            self.resolve.iter().chain(&self.services).chain(&self.cleanup).chain(&self.reports).map(Span::end_ms);
        spans.chain(self.builds.iter().map(|b| b.total.end_ms())).chain(cells).max().unwrap_or(0)
    }

    /// The end of the last build (a download or a compile), if any program was fetched.
    pub fn last_build_end_ms(&self) -> Option<u64> {
        self.builds.iter().filter(|b| b.route != CACHED).map(|b| b.total.end_ms()).max()
    }
}

/// [`BuildTiming::route`] of a program found in the cache.
pub const CACHED: &str = "cache";

/// How one program came: its phases, each `None` when it did not happen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildTiming {
    /// `ko`, `crane`, `registry`, …
    pub program: String,
    pub version: String,
    /// `cache` (found there), `release` (downloaded), `go` (built from the module proxy), or
    /// `failed`.
    pub route: String,
    /// Downloading: the release archive, or the build's modules and Go toolchain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download: Option<Span>,
    /// Downloaded, waiting while another build had the turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<Span>,
    /// Compiling (the go route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compile: Option<Span>,
    /// From its first step to installed and verified.
    pub total: Span,
}

/// The cells' phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellTimings {
    /// Cells that finished.
    pub count: usize,
    pub first_start_ms: u64,
    pub first_result_ms: u64,
    pub last_result_ms: u64,
}

/// A program's phases as its events arrive.
#[derive(Default)]
struct Partial {
    first_ms: u64,
    download_start: Option<u64>,
    download_end: Option<u64>,
    wait_start: Option<u64>,
    compile_start: Option<u64>,
    compile_end: Option<u64>,
    done: Option<(u64, String)>,
}

/// Records each program's phases from the provisioning events on their way to `inner` (which
/// shows them).
pub struct BuildRecorder {
    clock: Clock,
    inner: Arc<dyn ProvisionObserver>,
    programs: Mutex<BTreeMap<(String, String), Partial>>,
}

impl BuildRecorder {
    pub fn new(clock: Clock, inner: Arc<dyn ProvisionObserver>) -> BuildRecorder {
        BuildRecorder { clock, inner, programs: Mutex::new(BTreeMap::new()) }
    }

    /// Every program that finished (installed, found in the cache, or failed), first begun first.
    pub fn builds(&self) -> Vec<BuildTiming> {
        let programs = self.programs.lock().expect("timings lock");
        let mut builds: Vec<BuildTiming> = programs
            .iter()
            .filter_map(|((program, version), p)| {
                let (end, route) = p.done.clone()?;
                let span = |start: Option<u64>, end: Option<u64>| {
                    let start = start?;
                    Some(Span { start_ms: start, duration_ms: end?.saturating_sub(start) })
                };
                Some(BuildTiming {
                    program: program.clone(),
                    version: version.clone(),
                    route,
                    download: span(p.download_start, p.download_end),
                    wait: span(p.wait_start, p.compile_start),
                    compile: span(p.compile_start, p.compile_end),
                    total: Span { start_ms: p.first_ms, duration_ms: end.saturating_sub(p.first_ms) },
                })
            })
            .collect();
        builds.sort_by(|a, b| {
            (a.total.start_ms, &a.program, &a.version).cmp(&(b.total.start_ms, &b.program, &b.version))
        });
        builds
    }

    fn record(&self, event: &ProvisionEvent) {
        let now = self.clock.now_ms();
        let (tool, version) = match event {
            ProvisionEvent::CacheHit { tool, version, .. }
            | ProvisionEvent::Downloading { tool, version, .. }
            | ProvisionEvent::DownloadingModules { tool, version, .. }
            | ProvisionEvent::AwaitingTurn { tool, version }
            | ProvisionEvent::Building { tool, version, .. }
            | ProvisionEvent::Verifying { tool, version }
            | ProvisionEvent::Installed { tool, version, .. }
            | ProvisionEvent::Failed { tool, version } => (tool, version),
            ProvisionEvent::Resolved { .. } | ProvisionEvent::Note { .. } => return,
        };
        let mut programs = self.programs.lock().expect("timings lock");
        let p = programs
            .entry((tool.clone(), version.clone()))
            .or_insert_with(|| Partial { first_ms: now, ..Partial::default() });
        if p.done.is_some() {
            return;
        }
        match event {
            ProvisionEvent::CacheHit { .. } => p.done = Some((now, CACHED.to_string())),
            ProvisionEvent::Downloading { .. } | ProvisionEvent::DownloadingModules { .. } => {
                p.download_start.get_or_insert(now);
            }
            ProvisionEvent::AwaitingTurn { .. } => {
                p.download_end.get_or_insert(now);
                p.wait_start = Some(now);
            }
            ProvisionEvent::Building { .. } => {
                if p.download_start.is_some() {
                    p.download_end.get_or_insert(now);
                }
                p.compile_start = Some(now);
            }
            ProvisionEvent::Verifying { .. } => {
                if p.compile_start.is_some() {
                    p.compile_end.get_or_insert(now);
                } else if p.download_start.is_some() {
                    p.download_end.get_or_insert(now);
                }
            }
            ProvisionEvent::Installed { route, .. } => {
                p.compile_end = p.compile_end.or(p.compile_start.map(|_| now));
                p.done = Some((now, route.clone()));
            }
            ProvisionEvent::Failed { .. } => p.done = Some((now, "failed".to_string())),
            ProvisionEvent::Resolved { .. } | ProvisionEvent::Note { .. } => {}
        }
    }
}

impl ProvisionObserver for BuildRecorder {
    fn on_event(&self, event: ProvisionEvent) {
        self.record(&event);
        self.inner.on_event(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Silent;

    fn event(kind: &str) -> ProvisionEvent {
        let (tool, version) = ("ko".to_string(), "v0.15.2".to_string());
        match kind {
            "modules" => ProvisionEvent::DownloadingModules { tool, version, toolchain: "go1.21.13".into() },
            "await" => ProvisionEvent::AwaitingTurn { tool, version },
            "build" => ProvisionEvent::Building { tool, version, toolchain: "go1.21.13".into() },
            "verify" => ProvisionEvent::Verifying { tool, version },
            "installed" => {
                ProvisionEvent::Installed { tool, version, route: "go".into(), elapsed: std::time::Duration::ZERO }
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_build_is_its_download_its_wait_and_its_compile() {
        // A clock whose origin is in the future reads 0 throughout: the phases' order and
        // presence are what is checked here, their lengths by the run tests.
        let recorder = BuildRecorder::new(Clock::from_origin(u64::MAX), Arc::new(Silent));
        for kind in ["modules", "await", "build", "verify", "installed"] {
            recorder.on_event(event(kind));
        }
        recorder.on_event(ProvisionEvent::CacheHit {
            tool: "crane".into(),
            version: "v0.20.7".into(),
            route: "go".into(),
        });
        let builds = recorder.builds();
        assert_eq!(builds.len(), 2, "{builds:?}");
        let ko = builds.iter().find(|b| b.program == "ko").unwrap();
        assert_eq!(ko.route, "go");
        assert!(ko.download.is_some() && ko.wait.is_some() && ko.compile.is_some(), "{ko:?}");
        let crane = builds.iter().find(|b| b.program == "crane").unwrap();
        assert_eq!((crane.route.as_str(), crane.download, crane.compile), (CACHED, None, None));
        let timings = Timings { builds, ..Timings::default() };
        assert_eq!(timings.last_build_end_ms(), Some(0), "the cached one is no build");
    }

    #[test]
    fn a_build_that_never_waited_has_no_wait() {
        let recorder = BuildRecorder::new(Clock::start(), Arc::new(Silent));
        for kind in ["modules", "build", "installed"] {
            recorder.on_event(event(kind));
        }
        let ko = &recorder.builds()[0];
        assert!(ko.wait.is_none() && ko.download.is_some() && ko.compile.is_some(), "{ko:?}");
        assert!(ko.download.unwrap().end_ms() <= ko.compile.unwrap().start_ms);
    }

    #[test]
    fn the_clock_reads_offsets_from_its_origin() {
        let clock = Clock::start();
        let other = Clock::from_origin(clock.origin_ms());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (a, b) = (clock.now_ms(), other.now_ms());
        assert!(a >= 20 && b >= 20 && a.abs_diff(b) < 5, "{a} {b}");
        let span = clock.since(5);
        assert_eq!(span.start_ms, 5);
        assert!(span.duration_ms >= 15, "{span:?}");
    }
}
