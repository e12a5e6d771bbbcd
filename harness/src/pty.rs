//! A pseudo-terminal for a cell's commands (`tty = true`): clients switch to progress output,
//! and sometimes to other requests, when their stdout is a terminal, so "works on my laptop,
//! fails in CI" needs a real one, not a flag. The command gets the pty's terminal side as
//! stdin, stdout and stderr; the harness reads everything it writes from the other side.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A terminal's size, as a CI log viewer or a laptop's window might have it.
const COLUMNS: u16 = 120;
const ROWS: u16 = 40;

/// How long to keep reading after the command ended: what it wrote last is still in the pty.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// An open pseudo-terminal pair.
pub(crate) struct Pty {
    /// The harness's side: what the command writes arrives here.
    controller: OwnedFd,
    /// The command's side, a terminal (`isatty` is true on it).
    terminal: OwnedFd,
}

impl Pty {
    pub(crate) fn open() -> io::Result<Pty> {
        let (mut controller, mut terminal) = (-1, -1);
        let size = libc::winsize { ws_row: ROWS, ws_col: COLUMNS, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: openpty writes two descriptors it opened into the pointed-to ints.
        if unsafe { libc::openpty(&mut controller, &mut terminal, std::ptr::null_mut(), std::ptr::null(), &size) } != 0
        {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both were just opened and are owned by nothing else.
        let (controller, terminal) = unsafe { (OwnedFd::from_raw_fd(controller), OwnedFd::from_raw_fd(terminal)) };
        for fd in [&controller, &terminal] {
            // SAFETY: setting close-on-exec on a descriptor we own.
            unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        Ok(Pty { controller, terminal })
    }

    /// Makes the terminal side `cmd`'s stdin, stdout and stderr.
    pub(crate) fn attach(&self, cmd: &mut tokio::process::Command) -> io::Result<()> {
        let side = || self.terminal.try_clone().map(Stdio::from);
        cmd.stdin(side()?).stdout(side()?).stderr(side()?);
        Ok(())
    }

    /// Starts reading what the command writes; call after it started. `input` is typed first
    /// (a `--password-stdin` step's text), followed by an end of file (Ctrl-D on a new line).
    pub(crate) fn read(self, input: Option<&str>) -> Reading {
        // Only the command's copies of the terminal side stay open: when they close, reads end.
        drop(self.terminal);
        let mut controller = std::fs::File::from(self.controller);
        if let Some(text) = input {
            let mut typed = text.trim_end_matches('\n').as_bytes().to_vec();
            typed.extend_from_slice(b"\n\x04");
            let _ = controller.write_all(&typed);
        }
        let written = Arc::new(Mutex::new(Vec::new()));
        let (done, finished) = tokio::sync::oneshot::channel();
        let into = written.clone();
        std::thread::spawn(move || {
            let mut piece = [0u8; 8192];
            // Linux answers EIO once every copy of the terminal side is closed.
            while let Ok(n) = controller.read(&mut piece) {
                if n == 0 {
                    break;
                }
                into.lock().expect("pty output lock").extend_from_slice(&piece[..n]);
            }
            let _ = done.send(());
        });
        Reading { written, finished }
    }
}

/// The command's output, as it reaches the harness's side of the pty.
pub(crate) struct Reading {
    written: Arc<Mutex<Vec<u8>>>,
    finished: tokio::sync::oneshot::Receiver<()>,
}

impl Reading {
    /// Everything the command wrote; call once it ended. A process it left behind holding the
    /// terminal (its group is killed with it) does not keep this waiting: what arrived by then
    /// is its output.
    pub(crate) async fn output(self) -> Vec<u8> {
        let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, self.finished).await;
        std::mem::take(&mut *self.written.lock().expect("pty output lock"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_command_sees_a_terminal_and_its_output_arrives() {
        let pty = Pty::open().unwrap();
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", "[ -t 0 ] && [ -t 1 ] && [ -t 2 ] && stty size && read line && echo \"got $line\""]);
        pty.attach(&mut cmd).unwrap();
        let mut child = cmd.spawn().unwrap();
        drop(cmd); // its copies of the terminal side
        let reading = pty.read(Some("secret\n"));
        assert!(child.wait().await.unwrap().success());
        let output = String::from_utf8(reading.output().await).unwrap();
        assert!(output.contains("40 120"), "{output:?}");
        assert!(output.contains("got secret"), "{output:?}");
    }
}
