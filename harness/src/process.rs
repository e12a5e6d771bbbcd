//! Child processes that never outlive the harness.
//!
//! Every program the harness starts (go builds, ko, registries, helpers) goes through
//! [`Contained`]: it runs in its own process group, which is killed when the handle drops
//! (normal end, timeout, Ctrl-C unwinding), and it carries `PR_SET_PDEATHSIG` so that even a
//! SIGKILLed harness takes it along.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the process:
//! a child forked from a short-lived thread (a test thread, a blocking-pool thread) would be
//! killed mid-run. So every child is forked by one spawner thread that lives as long as
//! the process.

use std::io;
use std::process::{ExitStatus, Output, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};

/// A running child whose whole process group dies with this handle.
#[derive(Debug)]
pub(crate) struct Contained {
    child: Child,
    pgid: Option<i32>,
}

/// Why a contained run did not produce an exit status.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("could not start {program}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("{program} did not finish within {timeout:?}; it was killed")]
    Timeout { program: String, timeout: Duration },
    #[error("waiting for {program} failed: {source}")]
    Wait { program: String, source: io::Error },
}

/// What a child wrote and how it ended. What it wrote survives a kill, so a timed-out
/// command still shows how far it got.
#[derive(Debug)]
pub(crate) struct Captured {
    pub status: Result<ExitStatus, RunError>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Contained {
    /// Spawns `cmd` in a new process group tied to the harness's life. Must be called from
    /// within a tokio runtime, which then reaps the child.
    pub fn spawn(mut cmd: Command) -> Result<Contained, RunError> {
        let program = program_name(&cmd);
        cmd.process_group(0).kill_on_drop(true);
        // SAFETY: prctl and getppid are async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The harness may have died before prctl took effect.
                if libc::getppid() == 1 {
                    return Err(io::Error::other("parent exited before the child started"));
                }
                Ok(())
            });
        }
        let child = spawn_from_spawner(cmd).map_err(|source| RunError::Spawn { program, source })?;
        let pgid = child.id().map(|pid| pid as i32);
        Ok(Contained { child, pgid })
    }

    pub(crate) fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Reads the child's piped stdout and stderr to their end and waits for it; once
    /// `timeout` passes, kills its group and keeps what it wrote until then.
    pub(crate) async fn capture(&mut self, program: &str, timeout: Duration) -> Captured {
        let (mut stdout, mut stderr) = (self.child.stdout.take(), self.child.stderr.take());
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let finished = tokio::time::timeout(timeout, async {
            let (read_out, read_err, status) = tokio::join!(drain(stdout.as_mut(), &mut out), drain(stderr.as_mut(), &mut err), self.child.wait());
            read_out?;
            read_err?;
            status
        })
        .await;
        let status = match finished {
            Ok(status) => status.map_err(|source| RunError::Wait { program: program.to_string(), source }),
            Err(_) => {
                self.kill_group();
                Err(RunError::Timeout { program: program.to_string(), timeout })
            }
        };
        Captured { status, stdout: out, stderr: err }
    }

    /// Kills the whole process group now (idempotent).
    pub(crate) fn kill_group(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // SAFETY: plain syscall; an already-gone group only yields ESRCH.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Contained {
    fn drop(&mut self) {
        // A finished leader may leave grandchildren behind in its group: kill them too.
        self.kill_group();
    }
}

struct SpawnRequest {
    cmd: Command,
    runtime: tokio::runtime::Handle,
    reply: mpsc::SyncSender<io::Result<Child>>,
}

/// Forks `cmd` on the process-long spawner thread (see the module docs).
pub(crate) fn spawn_from_spawner(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (requests, incoming) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("ko-matrix-spawner".into())
            .spawn(move || {
                for mut request in incoming {
                    let _runtime = request.runtime.enter();
                    let _ = request.reply.send(request.cmd.spawn());
                }
            })
            .expect("the spawner thread starts");
        Mutex::new(requests)
    });
    let (reply, answer) = mpsc::sync_channel(1);
    let request = SpawnRequest { cmd, runtime: tokio::runtime::Handle::current(), reply };
    spawner.lock().expect("spawner lock").send(request).map_err(|_| io::Error::other("the spawner thread is gone"))?;
    answer.recv().map_err(|_| io::Error::other("the spawner thread is gone"))?
}

/// Appends what `reader` yields to `into` piece by piece, so that a cancelled read loses
/// nothing already read.
async fn drain(reader: Option<&mut (impl AsyncRead + Unpin)>, into: &mut Vec<u8>) -> io::Result<()> {
    let Some(reader) = reader else { return Ok(()) };
    let mut piece = [0u8; 8192];
    loop {
        let n = reader.read(&mut piece).await?;
        if n == 0 {
            return Ok(());
        }
        into.extend_from_slice(&piece[..n]);
    }
}

/// Runs `cmd` to completion with captured output, killing its group after `timeout`.
pub async fn output(mut cmd: Command, timeout: Duration) -> Result<Output, RunError> {
    let program = program_name(&cmd);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let captured = Contained::spawn(cmd)?.capture(&program, timeout).await;
    Ok(Output { status: captured.status?, stdout: captured.stdout, stderr: captured.stderr })
}

fn program_name(cmd: &Command) -> String {
    cmd.as_std().get_program().to_string_lossy().into_owned()
}

/// The last `max_lines` lines of a command's combined output, for error messages.
pub(crate) fn output_tail(out: &Output, max_lines: usize) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(max_lines);
    lines[start..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat[stat.rfind(')').unwrap() + 2..].starts_with('Z'))
    }

    #[test]
    fn a_child_outlives_the_thread_that_asked_for_it_but_not_its_handle() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let handle = runtime.handle().clone();
        // Started from a thread that then exits, as a test thread or blocking-pool thread does.
        let mut child = std::thread::spawn(move || {
            let _entered = handle.enter();
            let mut cmd = Command::new("sleep");
            cmd.arg("30");
            Contained::spawn(cmd).unwrap()
        })
        .join()
        .unwrap();
        let pid = child.child_mut().id().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(alive(pid), "the child died with the thread that requested it");
        drop(child);
        let started = std::time::Instant::now();
        while alive(pid) {
            assert!(started.elapsed() < Duration::from_secs(5), "dropping the handle did not kill the child");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[tokio::test]
    async fn output_times_out_and_kills() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo started; sleep 30"]);
        let err = output(cmd, Duration::from_millis(300)).await.unwrap_err();
        assert!(matches!(err, RunError::Timeout { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_timed_out_capture_keeps_what_the_child_wrote() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo started; echo warming up >&2; sleep 30"]).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = Contained::spawn(cmd).unwrap();
        let pid = child.child_mut().id().unwrap();
        let captured = child.capture("sh", Duration::from_millis(500)).await;
        assert!(matches!(captured.status, Err(RunError::Timeout { .. })), "{:?}", captured.status);
        assert_eq!(String::from_utf8_lossy(&captured.stdout), "started\n");
        assert_eq!(String::from_utf8_lossy(&captured.stderr), "warming up\n");
        let started = std::time::Instant::now();
        while alive(pid) {
            assert!(started.elapsed() < Duration::from_secs(5), "the timed-out child was not killed");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
