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

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

/// A running child whose whole process group dies with this handle.
#[derive(Debug)]
pub struct Contained {
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

    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Waits for the child; kills its group once `timeout` passes.
    pub async fn wait(&mut self, program: &str, timeout: Duration) -> Result<ExitStatus, RunError> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.map_err(|source| RunError::Wait { program: program.to_string(), source }),
            Err(_) => {
                self.kill_group();
                Err(RunError::Timeout { program: program.to_string(), timeout })
            }
        }
    }

    /// Kills the whole process group now (idempotent).
    pub fn kill_group(&mut self) {
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
fn spawn_from_spawner(cmd: Command) -> io::Result<Child> {
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

/// Runs `cmd` to completion with captured output, killing its group after `timeout`.
pub async fn output(mut cmd: Command, timeout: Duration) -> Result<Output, RunError> {
    let program = program_name(&cmd);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut contained = Contained::spawn(cmd)?;
    let mut stdout = contained.child.stdout.take().expect("stdout is piped");
    let mut stderr = contained.child.stderr.take().expect("stderr is piped");
    let collect = async {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (read_out, read_err, status) =
            tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err), contained.child.wait());
        let status = status?;
        read_out?;
        read_err?;
        Ok::<_, io::Error>(Output { status, stdout: out, stderr: err })
    };
    match tokio::time::timeout(timeout, collect).await {
        Ok(result) => result.map_err(|source| RunError::Wait { program, source }),
        Err(_) => {
            contained.kill_group();
            Err(RunError::Timeout { program, timeout })
        }
    }
}

fn program_name(cmd: &Command) -> String {
    cmd.as_std().get_program().to_string_lossy().into_owned()
}

/// The last `max_lines` lines of a command's combined output, for error messages.
pub fn output_tail(out: &Output, max_lines: usize) -> String {
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
        let child = std::thread::spawn(move || {
            let _entered = handle.enter();
            let mut cmd = Command::new("sleep");
            cmd.arg("30");
            Contained::spawn(cmd).unwrap()
        })
        .join()
        .unwrap();
        let pid = child.id().unwrap();
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
}
