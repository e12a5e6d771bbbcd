//! What long-running library work tells its caller while it runs.
//!
//! The library never prints: it emits these events and the binary decides how to show
//! them (progress bars on a terminal, plain lines elsewhere, nothing in tests).

use std::time::Duration;

/// Getting one program (a tool version, a service's program). A build from the module proxy
/// goes `DownloadingModules` → (`AwaitingTurn` when another build holds the turn) → `Building`
/// → `Verifying` → `Installed`; a release download `Downloading` (repeatedly, as bytes come) →
/// `Verifying` → `Installed`.
#[derive(Debug, Clone)]
pub enum ProvisionEvent {
    /// A version query (`latest`, a commit) resolved to a module version.
    Resolved {
        tool: String,
        query: String,
        version: String,
    },
    CacheHit {
        tool: String,
        version: String,
        route: String,
    },
    /// A choice the caller should know about, e.g. `auto` falling back to building.
    Note {
        tool: String,
        version: String,
        message: String,
    },
    Downloading {
        tool: String,
        version: String,
        url: String,
        received: u64,
        total: Option<u64>,
    },
    /// A build fetching what it needs (its modules and Go toolchain) before it compiles.
    DownloadingModules {
        tool: String,
        version: String,
        toolchain: String,
    },
    /// Downloaded; another build has the turn (builds take turns, see `provision::build_jobs`).
    AwaitingTurn {
        tool: String,
        version: String,
    },
    /// Compiling.
    Building {
        tool: String,
        version: String,
        toolchain: String,
    },
    Verifying {
        tool: String,
        version: String,
    },
    Installed {
        tool: String,
        version: String,
        route: String,
        elapsed: Duration,
    },
    Failed {
        tool: String,
        version: String,
    },
}

pub trait ProvisionObserver: Send + Sync {
    fn on_event(&self, event: ProvisionEvent);
}

/// For callers that show nothing (tests, machine output).
pub struct Silent;

impl ProvisionObserver for Silent {
    fn on_event(&self, _event: ProvisionEvent) {}
}
