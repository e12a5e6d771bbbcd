//! Shows provisioning progress: bars and spinners on a terminal, plain lines elsewhere.
//! Everything goes to stderr so stdout stays machine-readable.

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use ko_matrix::events::{ProvisionEvent, ProvisionObserver};
use ko_matrix::report::cell_label;
use ko_matrix::run::{RunEvent, RunObserver};

pub struct Progress {
    bars: Option<MultiProgress>,
    active: Mutex<HashMap<String, ProgressBar>>,
    /// Plain mode: keys already announced, so a download is one line, not one per chunk.
    announced: Mutex<HashSet<String>>,
}

impl Progress {
    /// Bars when stderr is a terminal, plain lines otherwise.
    pub fn for_stderr() -> Progress {
        let bars = std::io::stderr().is_terminal().then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress { bars, active: Mutex::new(HashMap::new()), announced: Mutex::new(HashSet::new()) }
    }

    fn line(&self, text: String) {
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    fn bar(&self, key: &str, make: impl FnOnce() -> ProgressBar) -> Option<ProgressBar> {
        let bars = self.bars.as_ref()?;
        let mut active = self.active.lock().expect("progress lock");
        Some(active.entry(key.to_string()).or_insert_with(|| bars.add(make())).clone())
    }

    fn first_time(&self, key: &str) -> bool {
        self.announced.lock().expect("progress lock").insert(key.to_string())
    }

    fn finish(&self, key: &str) {
        if let Some(bar) = self.active.lock().expect("progress lock").remove(key) {
            bar.finish_and_clear();
        }
    }
}

impl ProvisionObserver for Progress {
    fn on_event(&self, event: ProvisionEvent) {
        match event {
            ProvisionEvent::Resolved { tool, query, version } => self.line(format!("{tool} {query} is {version}")),
            ProvisionEvent::CacheHit { .. } | ProvisionEvent::Verifying { .. } => {}
            ProvisionEvent::Note { tool, version, message } => self.line(format!("{tool} {version}: {message}")),
            ProvisionEvent::Downloading { tool, version, url, received, total } => {
                let key = format!("{tool} {version}");
                match self.bar(&key, || download_bar(&key, total)) {
                    Some(bar) => bar.set_position(received),
                    None if self.first_time(&key) => self.line(format!("{key}: downloading {url}")),
                    None => {}
                }
            }
            ProvisionEvent::Building { tool, version, toolchain } => {
                let key = format!("{tool} {version}");
                let message = format!("{key}: building from the Go module proxy with {toolchain} (takes minutes when cold)");
                if self.bar(&key, || build_spinner(&message)).is_none() {
                    self.line(message);
                }
            }
            ProvisionEvent::Installed { tool, version, route, elapsed } => {
                let key = format!("{tool} {version}");
                self.finish(&key);
                let how = if route == "go" { "built" } else { "downloaded" };
                self.line(format!("{key}: {how} and verified in {}", humantime::format_duration(round(elapsed))));
            }
            ProvisionEvent::Failed { tool, version } => self.finish(&format!("{tool} {version}")),
        }
    }
}

impl RunObserver for Progress {
    fn on_run_event(&self, event: RunEvent) {
        match event {
            RunEvent::WorldReady { runtime, took } => {
                self.line(format!("services: registries, gateway and base image ready ({runtime} runtime) in {}", humantime::format_duration(round_ms(took))))
            }
            RunEvent::CellStarted { .. } => {}
            RunEvent::CellFinished(cell) => {
                let secs = cell.duration_ms as f64 / 1000.0;
                self.line(format!("{} × {}: {} ({secs:.1}s)", cell.version, cell.scenario, cell_label(&cell)));
            }
        }
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

fn round(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

fn download_bar(key: &str, total: Option<u64>) -> ProgressBar {
    let bar = ProgressBar::new(total.unwrap_or(0));
    let style = ProgressStyle::with_template("{prefix} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}").expect("static template");
    bar.set_style(style);
    bar.set_prefix(format!("{key}: downloading"));
    bar
}

fn build_spinner(message: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("static template"));
    bar.set_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
