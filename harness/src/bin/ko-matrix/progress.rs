//! Shows provisioning progress: bars and spinners on a terminal, plain lines elsewhere.
//! Everything goes to stderr so stdout stays machine-readable.

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use ko_matrix::bisect::{BisectEvent, BisectObserver};
use ko_matrix::events::{ProvisionEvent, ProvisionObserver};
use ko_matrix::outcome::Outcome;
use ko_matrix::run::{RunEvent, RunObserver};

pub struct Progress {
    bars: Option<MultiProgress>,
    active: Mutex<HashMap<String, ProgressBar>>,
    /// Plain mode: keys already announced, so a download is one line, not one per chunk.
    announced: Mutex<HashSet<String>>,
    cells: Mutex<CellCounts>,
    cell_bar: Mutex<Option<ProgressBar>>,
}

#[derive(Default)]
struct CellCounts {
    pass: usize,
    fail: usize,
    running: Vec<String>,
}

impl Progress {
    /// Bars when stderr is a terminal, plain lines otherwise.
    pub fn for_stderr() -> Progress {
        let bars =
            std::io::stderr().is_terminal().then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress {
            bars,
            active: Mutex::new(HashMap::new()),
            announced: Mutex::new(HashSet::new()),
            cells: Mutex::default(),
            cell_bar: Mutex::new(None),
        }
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
                let message =
                    format!("{key}: building from the Go module proxy with {toolchain} (takes minutes when cold)");
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

impl Progress {
    /// The cells bar: done / total, passes and failures so far, what runs now, ETA.
    fn cells_message(&self) -> String {
        let state = self.cells.lock().expect("progress lock");
        let running: Vec<&str> = state.running.iter().map(String::as_str).collect();
        format!(
            "{} pass, {} fail · running: {}",
            state.pass,
            state.fail,
            if running.is_empty() { "-".into() } else { running.join(", ") }
        )
    }
}

impl RunObserver for Progress {
    fn on_run_event(&self, event: RunEvent) {
        match event {
            RunEvent::Planned { cells } => {
                if let Some(bars) = &self.bars {
                    let bar = bars.add(ProgressBar::new(cells as u64));
                    bar.set_style(
                        ProgressStyle::with_template("cells {pos}/{len} {bar:25} {msg} [eta {eta}]")
                            .expect("static template"),
                    );
                    bar.enable_steady_tick(Duration::from_millis(250));
                    *self.cell_bar.lock().expect("progress lock") = Some(bar);
                }
            }
            RunEvent::WorldReady { runtime, took, notes } => {
                for note in notes {
                    self.line(format!("services: {note}"));
                }
                self.line(format!(
                    "services: registries, gateway and base image ready ({runtime} runtime) in {}",
                    humantime::format_duration(round_ms(took))
                ))
            }
            RunEvent::CellStarted { cell } => {
                self.cells.lock().expect("progress lock").running.push(cell);
                self.refresh_cells(false);
            }
            RunEvent::CellFinished(cell) => {
                {
                    let mut state = self.cells.lock().expect("progress lock");
                    let name = cell.id();
                    state.running.retain(|r| *r != name);
                    if cell.outcome == Outcome::Pass {
                        state.pass += 1;
                    } else {
                        state.fail += 1;
                    }
                }
                let secs = cell.duration_ms as f64 / 1000.0;
                self.line(format!("{}: {} ({secs:.1}s)", cell.id(), cell.label()));
                self.refresh_cells(true);
            }
        }
    }
}

impl Progress {
    fn refresh_cells(&self, finished_one: bool) {
        if let Some(bar) = self.cell_bar.lock().expect("progress lock").as_ref() {
            if finished_one {
                bar.inc(1);
            }
            bar.set_message(self.cells_message());
            if bar.position() == bar.length().unwrap_or(0) {
                bar.finish_and_clear();
            }
        }
    }
}

impl BisectObserver for Progress {
    fn on_bisect_event(&self, event: BisectEvent) {
        match event {
            BisectEvent::Probing { k, estimate, what } => {
                self.line(format!("bisect: probe {k} of ≈{}: {what}", estimate.max(k)))
            }
            BisectEvent::Probed(probe) => self.line(format!(
                "bisect: probe {} → {:?} ({}, {:.1}s)",
                probe.k,
                probe.verdict,
                probe.outcome,
                probe.duration_ms as f64 / 1000.0
            )),
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
    let style = ProgressStyle::with_template("{prefix} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
        .expect("static template");
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
