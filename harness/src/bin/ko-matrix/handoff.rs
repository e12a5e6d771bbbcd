//! What the two processes of a contained run tell each other. The outer one (with the network)
//! fetches and builds the tool versions; the inner one (in the namespace) runs the world and the
//! cells. The inner one starts with the first version ready and gets the others as they come:
//!
//! - outer → inner, on the inner one's stdin, one JSON [`Feed`] a line: each version as it is
//!   ready with the phases of fetching so far, then [`Feed::Done`] with all of them, or
//!   [`Feed::Abandon`] when a fetch failed (the outer one reports the failure, as a run
//!   without a namespace does);
//! - inner → outer, on the inner one's file descriptor [`EVENTS_FD`], one JSON
//!   [`RunEvent`] a line, which the outer one shows (it alone draws on the terminal); the inner
//!   one's stdout and stderr go through the outer one too.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures_util::Stream;
use ko_matrix::run::{RunError, RunEvent, RunObserver};
use ko_matrix::timings::{BuildTiming, Span, Timings};
use ko_matrix::tool::ToolBinary;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt;

/// The inner run's descriptor for its events.
pub const EVENTS_FD: i32 = 3;

#[derive(Serialize, Deserialize)]
pub enum Feed {
    /// A version whose cells can start, and the phases of resolving and fetching so far (an
    /// interrupted run records those).
    Ready { binary: Box<ToolBinary>, fetched: Fetched },
    /// How many builds compile now (the cells make room for them: `run::Scheduling::compiling`).
    Compiling(usize),
    /// Every version was sent; the phases of getting them, for the run's timings.
    Done(Fetched),
    /// A fetch failed: stop, and leave the telling to the outer run.
    Abandon(String),
}

/// The phases of a run that happen before it, or outside its namespace.
#[derive(Serialize, Deserialize)]
pub struct Fetched {
    resolve: Option<Span>,
    builds: Vec<BuildTiming>,
}

impl From<Timings> for Fetched {
    fn from(timings: Timings) -> Fetched {
        Fetched { resolve: timings.resolve, builds: timings.builds }
    }
}

impl Fetched {
    fn keep(self, timings: &Mutex<Timings>) {
        let mut timings = timings.lock().expect("timings lock");
        timings.resolve = self.resolve;
        timings.builds = self.builds;
    }
}

impl Feed {
    pub fn line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("a feed message serialises");
        line.push(b'\n');
        line
    }
}

/// The versions the feed brings, and how many builds compile as it tells (read as the versions
/// are).
pub type Versions =
    (Pin<Box<dyn Stream<Item = Result<ToolBinary, RunError>> + Send>>, tokio::sync::watch::Receiver<usize>);

/// The inner run's side of the feed: the versions as they come, ending after [`Feed::Done`]
/// (whose phases it keeps in `fetched`), and the builds compiling. An abandoned feed, or one
/// that ends without `Done` (the outer run is gone), is [`RunError::Abandoned`]. Stdin must be
/// the outer run's pipe; it is read without blocking a thread, so a run that stops mid-feed
/// exits at once.
pub fn versions_from_stdin(fetched: Arc<Mutex<Timings>>) -> std::io::Result<Versions> {
    let stdin = std::io::stdin().as_fd().try_clone_to_owned()?;
    let lines = tokio::io::BufReader::new(tokio::net::unix::pipe::Receiver::from_owned_fd(stdin)?).lines();
    let (compiling, builds) = tokio::sync::watch::channel(0);
    let versions = futures_util::stream::unfold(Some((lines, fetched, compiling)), |state| async move {
        let (mut lines, fetched, compiling) = state?;
        let abandoned = |why: String| Some((Err(RunError::Abandoned(why)), None));
        loop {
            let line = match lines.next_line().await {
                Ok(Some(line)) => line,
                Ok(None) => return abandoned("the run outside the namespace ended".into()),
                Err(e) => return abandoned(format!("reading the versions: {e}")),
            };
            match serde_json::from_str::<Feed>(&line) {
                Ok(Feed::Ready { binary, fetched: so_far }) => {
                    so_far.keep(&fetched);
                    return Some((Ok(*binary), Some((lines, fetched, compiling))));
                }
                Ok(Feed::Compiling(now)) => compiling.send_replace(now),
                Ok(Feed::Done(all)) => {
                    all.keep(&fetched);
                    // Every build ended; the watch ends with the feed.
                    compiling.send_replace(0);
                    return None;
                }
                Ok(Feed::Abandon(why)) => return abandoned(why),
                Err(e) => return abandoned(format!("an unreadable version message ({e}): {line}")),
            };
        }
    });
    Ok((Box::pin(versions), builds))
}

/// The inner run's events, written to [`EVENTS_FD`].
pub struct EventSink(Mutex<std::fs::File>);

impl EventSink {
    /// The descriptor the outer run gave; an error when there is none (`--contained` run by hand).
    pub fn open() -> std::io::Result<EventSink> {
        // SAFETY: F_SETFD on a descriptor number: it fails when none is open there. Close-on-exec,
        // so the programs this run starts do not hold the outer run's pipe open.
        if unsafe { libc::fcntl(EVENTS_FD, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the descriptor is open, and nothing else in this process owns it.
        Ok(EventSink(Mutex::new(unsafe { std::fs::File::from_raw_fd(EVENTS_FD) })))
    }
}

impl RunObserver for EventSink {
    fn on_run_event(&self, event: RunEvent) {
        let mut line = serde_json::to_vec(&event).expect("an event serialises");
        line.push(b'\n');
        // The outer run gone, its events have no reader; the run goes on to write its reports.
        let _ = self.0.lock().expect("events lock").write_all(&line);
    }
}

/// Gives the program `cmd` starts `events` (the write end of a pipe) as its [`EVENTS_FD`].
pub fn pass_events(cmd: &mut tokio::process::Command, events: &OwnedFd) {
    let fd = events.as_raw_fd();
    // SAFETY: dup2 is async-signal-safe; it runs in the forked child before exec. The copy it
    // makes is not close-on-exec, so the program inherits it; the original still is.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, EVENTS_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
