//! What long-running library work tells its caller while it runs.
//!
//! The library never prints: it emits these events and the binary decides how to show
//! them (progress bars on a terminal, plain lines elsewhere, nothing in tests).

use std::time::Duration;

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
