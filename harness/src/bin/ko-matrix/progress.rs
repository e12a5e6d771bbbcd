//! Shows what a run is doing: on a terminal, a spinner per build with its phase (downloading,
//! waiting for a build turn, compiling) and how long it has been in it, above a bar of the
//! cells done out of all, with passes, failures and an ETA; elsewhere, a plain line per event.
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
    /// A cell has started.
    started: bool,
    /// Cells finished, and their time together: the ETA's mean.
    finished: u64,
    finished_ms: u64,
    /// The most cells seen running at once: the ETA's parallelism.
    most_at_once: usize,
}

impl CellCounts {
    /// What the cells bar says after its counts: the passes and failures, what runs, and when
    /// the rest should be done (`remaining` cells at the mean time so far, as many at once as
    /// ran at once), or what they wait for.
    fn message(&self, remaining: u64) -> String {
        let running = if self.running.is_empty() { "-".to_string() } else { self.running.join(", ") };
        let eta = match remaining {
            0 => String::new(),
            _ if !self.started => " · waiting for the first version and the services".to_string(),
            _ if self.running.is_empty() => " · waiting for the next version to be ready".to_string(),
            _ if self.finished == 0 => String::new(),
            _ => {
                let mean_ms = self.finished_ms / self.finished;
                let seconds = (remaining * mean_ms / self.most_at_once.max(1) as u64).div_ceil(1000);
                format!(" · eta {}", humantime::format_duration(Duration::from_secs(seconds)))
            }
        };
        format!("{} pass, {} fail · running: {running}{eta}", self.pass, self.fail)
    }
}

/// Where a line another process printed goes.
pub enum Stream {
    Stdout,
    Stderr,
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

    /// A line for the user, above the bars on a terminal.
    pub fn note(&self, text: String) {
        self.line(text)
    }

    /// A line another process (the contained run) printed, passed on where it was going
    /// without tearing the bars.
    pub fn forward(&self, stream: Stream, line: &str) {
        let print = || match stream {
            Stream::Stdout => println!("{line}"),
            Stream::Stderr => eprintln!("{line}"),
        };
        match &self.bars {
            Some(bars) => bars.suspend(print),
            None => print(),
        }
    }

    /// The bar of `key`, made by `make` the first time; builds' bars go above the cells'.
    fn bar(&self, key: &str, make: impl FnOnce() -> ProgressBar) -> Option<ProgressBar> {
        let bars = self.bars.as_ref()?;
        let cells = self.cell_bar.lock().expect("progress lock").clone();
        let mut active = self.active.lock().expect("progress lock");
        let bar = active.entry(key.to_string()).or_insert_with(|| match &cells {
            Some(cells) => bars.insert_before(cells, make()),
            None => bars.add(make()),
        });
        Some(bar.clone())
    }

    /// A build's phase: on a terminal its spinner's message, with the time from now; else a line.
    fn phase(&self, key: &str, message: String) {
        match self.bar(key, || build_spinner(&message)) {
            Some(bar) => {
                bar.set_message(message);
                bar.reset_elapsed();
            }
            None => self.line(message),
        }
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
            ProvisionEvent::DownloadingModules { tool, version, toolchain } => {
                let key = format!("{tool} {version}");
                self.phase(&key, format!("{key}: downloading its modules and {toolchain} from the Go module proxy"));
            }
            ProvisionEvent::AwaitingTurn { tool, version } => {
                let key = format!("{tool} {version}");
                self.phase(&key, format!("{key}: downloaded; waiting for a build turn (builds take turns)"));
            }
            ProvisionEvent::Building { tool, version, toolchain } => {
                let key = format!("{tool} {version}");
                self.phase(
                    &key,
                    format!("{key}: building from the Go module proxy with {toolchain} (takes minutes when cold)"),
                );
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
            RunEvent::Planned { cells } => {
                let Some(bars) = &self.bars else { return };
                let mut cell_bar = self.cell_bar.lock().expect("progress lock");
                match cell_bar.as_ref() {
                    // A version's arrival changed the count (a branch's exact version in a shard).
                    Some(bar) => bar.set_length(cells as u64),
                    None => {
                        let bar = bars.add(ProgressBar::new(cells as u64));
                        bar.set_style(
                            ProgressStyle::with_template("cells {pos}/{len} {bar:25} {msg}").expect("static template"),
                        );
                        bar.set_message(CellCounts::default().message(cells as u64));
                        bar.enable_steady_tick(Duration::from_millis(250));
                        *cell_bar = Some(bar);
                    }
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
                {
                    let mut state = self.cells.lock().expect("progress lock");
                    state.running.push(cell);
                    state.started = true;
                    state.most_at_once = state.most_at_once.max(state.running.len());
                }
                self.refresh_cells(false);
            }
            RunEvent::CellFinished(cell) => {
                {
                    let mut state = self.cells.lock().expect("progress lock");
                    let name = cell.id();
                    state.running.retain(|r| *r != name);
                    state.finished += 1;
                    state.finished_ms += cell.duration_ms;
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
            let remaining = bar.length().unwrap_or(0).saturating_sub(bar.position());
            bar.set_message(self.cells.lock().expect("progress lock").message(remaining));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cells_bar_says_when_the_rest_is_done_or_what_it_waits_for() {
        let mut counts = CellCounts::default();
        assert_eq!(counts.message(10), "0 pass, 0 fail · running: - · waiting for the first version and the services");
        counts.started = true;
        counts.running = vec!["ko@v0.15.1::registry/anonymous".into(), "ko@v0.15.1::ecr/env-session".into()];
        counts.most_at_once = 2;
        assert_eq!(
            counts.message(10),
            "0 pass, 0 fail · running: ko@v0.15.1::registry/anonymous, ko@v0.15.1::ecr/env-session",
            "no ETA before a cell has finished"
        );
        (counts.pass, counts.fail, counts.finished, counts.finished_ms) = (3, 1, 4, 6_000);
        // 10 more at 1.5 s each, two at a time.
        assert!(counts.message(10).ends_with("ko@v0.15.1::ecr/env-session · eta 8s"), "{}", counts.message(10));
        counts.running.clear();
        assert_eq!(counts.message(10), "3 pass, 1 fail · running: - · waiting for the next version to be ready");
        assert_eq!(counts.message(0), "3 pass, 1 fail · running: -");
    }
}
