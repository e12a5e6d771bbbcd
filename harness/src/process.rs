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
            let (read_out, read_err, status) =
                tokio::join!(drain(stdout.as_mut(), &mut out), drain(stderr.as_mut(), &mut err), self.child.wait());
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

/// A child that has the harness's terminal while it runs (an interactive shell). Like every
/// child it is in its own process group, killed with this handle and with the harness. When
/// the harness has the terminal's foreground, the child's group gets it (Ctrl-C, Ctrl-Z and a
/// shell's job control are the child's, not the harness's), and it comes back when the handle
/// drops.
pub struct Foreground {
    // Dropped in this order: the child's group is killed, then the terminal taken back.
    child: Contained,
    _terminal: Option<TerminalBack>,
}

/// Gives the terminal's foreground back to the harness's process group when dropped.
struct TerminalBack {
    pgrp: libc::pid_t,
}

impl Drop for TerminalBack {
    fn drop(&mut self) {
        // SAFETY: plain syscall on stdin; SIGTTOU is ignored (see Foreground::spawn), so a
        // background harness may take the terminal back.
        unsafe { libc::tcsetpgrp(libc::STDIN_FILENO, self.pgrp) };
    }
}

impl Foreground {
    /// Spawns `cmd` with the harness's stdin, stdout and stderr (unless `cmd` says otherwise).
    pub fn spawn(mut cmd: Command) -> Result<Foreground, RunError> {
        // SAFETY: plain syscalls.
        let ours = unsafe { libc::getpgrp() };
        let has_terminal =
            unsafe { libc::isatty(libc::STDIN_FILENO) == 1 && libc::tcgetpgrp(libc::STDIN_FILENO) == ours };
        if has_terminal {
            // Setting the foreground from a background group (the child before its exec, the
            // harness after the child had the terminal) raises SIGTTOU, which would stop it.
            // SAFETY: setting a signal's disposition to ignore.
            unsafe { libc::signal(libc::SIGTTOU, libc::SIG_IGN) };
            // SAFETY: tcsetpgrp, getpgrp and signal are async-signal-safe. The child is the
            // leader of its new group by now (std sets the group before these closures); it
            // takes the foreground before exec, so an interactive shell never starts in the
            // background (where it would stop itself), and gets SIGTTOU's default back.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpgrp()) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    libc::signal(libc::SIGTTOU, libc::SIG_DFL);
                    Ok(())
                });
            }
        }
        let child = Contained::spawn(cmd)?;
        let terminal = has_terminal.then(|| {
            if let Some(pgid) = child.pgid {
                // SAFETY: plain syscall; the child did the same, whichever runs first.
                unsafe { libc::tcsetpgrp(libc::STDIN_FILENO, pgid) };
            }
            TerminalBack { pgrp: ours }
        });
        Ok(Foreground { child, _terminal: terminal })
    }

    /// Waits for the child to exit.
    pub async fn wait(&mut self, program: &str) -> Result<ExitStatus, RunError> {
        self.child.child.wait().await.map_err(|source| RunError::Wait { program: program.to_string(), source })
    }
}

/// Makes the harness the reaper of its orphaned descendants (`PR_SET_CHILD_SUBREAPER`): what a
/// child leaves running when it exits (a shell's background job, a process that left its
/// group) stays the harness's descendant instead of going to init. Dropped, it kills every
/// descendant of the harness still alive. Held for a whole command, declared first so that it
/// drops last, after the world's own children have been stopped.
pub struct Reaper(());

impl Reaper {
    pub fn adopt() -> io::Result<Reaper> {
        // SAFETY: plain prctl on this process.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Reaper(()))
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        // A process killed mid-exit may hand its own children to us a moment later: sweep
        // until nothing is left, a bounded number of times.
        for _ in 0..20 {
            let left = descendants(std::process::id());
            if left.is_empty() {
                return;
            }
            for pid in left {
                // SAFETY: plain syscall on a descendant (live, not a zombie, when listed).
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The live (not zombie) descendants of `root`, from /proc.
pub fn descendants(root: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    // (pid, parent, alive)
    let processes: Vec<(u32, u32, bool)> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the command name, which is in parentheses and may hold spaces.
            let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
            let state = fields.next()?;
            Some((pid, fields.next()?.parse().ok()?, state != "Z"))
        })
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(processes.iter().filter(|(_, ppid, _)| *ppid == parent).map(|(pid, _, _)| *pid));
        i += 1;
    }
    found.into_iter().skip(1).filter(|pid| processes.iter().any(|(p, _, alive)| p == pid && *alive)).collect()
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
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| !stat[stat.rfind(')').unwrap() + 2..].starts_with('Z'))
    }

    /// Waits up to 5 s for `pid` to die; `why` says what should have killed it.
    fn assert_dies(pid: u32, why: &str) {
        let started = std::time::Instant::now();
        while alive(pid) {
            assert!(started.elapsed() < Duration::from_secs(5), "{why}");
            std::thread::sleep(Duration::from_millis(20));
        }
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
        assert_dies(pid, "dropping the handle did not kill the child");
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
        assert_dies(pid, "the timed-out child was not killed");
    }

    #[tokio::test]
    async fn descendants_include_grandchildren() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30 & echo $!; wait"]).stdout(Stdio::piped());
        let mut child = Contained::spawn(cmd).unwrap();
        let shell = child.child_mut().id().unwrap();
        let mut stdout = child.child_mut().stdout.take().unwrap();
        let mut line = Vec::new();
        while !line.ends_with(b"\n") {
            let mut byte = [0u8; 1];
            assert_eq!(stdout.read(&mut byte).await.unwrap(), 1, "the shell printed its job's pid");
            line.push(byte[0]);
        }
        let sleep: u32 = String::from_utf8(line).unwrap().trim().parse().unwrap();
        let found = descendants(std::process::id());
        assert!(found.contains(&shell) && found.contains(&sleep), "{shell} and {sleep} in {found:?}");
        drop(child);
        assert_dies(sleep, "the group was not killed");
        assert!(!descendants(std::process::id()).contains(&sleep), "a killed process is no longer listed");
    }
}
