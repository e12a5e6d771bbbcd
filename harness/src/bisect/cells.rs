//! Where a bisection's probes run. The bisection itself fetches and builds tool versions as it
//! goes, which needs the network, so it stays in the calling process; the world and the cells
//! go into a second ko-matrix process in the network namespace ([`crate::containment`]), which
//! takes one tool binary per line on stdin and answers each with the cell's result on stdout.
//! Where the namespace cannot be had, they run here, kept off the network by the proxy only.

use std::path::PathBuf;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::containment::Containment;
use crate::outcome::Outcome;
use crate::result::CellResult;
use crate::run::Runner;
use crate::scenario::Scenario;
use crate::tool::ToolBinary;

/// The line the contained process writes once its world is up.
const READY: &str = "ready";

/// The world and the cells of one bisection, and how they are contained.
pub struct Cells {
    place: Place,
    pub containment: Containment,
}

enum Place {
    Here(Runner),
    Contained { channel: tokio::sync::Mutex<Channel>, pid: Option<u32> },
}

struct Channel {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CellsError {
    /// The contained process ended before its world was up; it said why on stderr.
    #[error("the contained bisect process ended before its world was up ({status}); its error is above")]
    Exited { status: std::process::ExitStatus },
    #[error("talking to the contained bisect process: {0}")]
    Io(#[from] std::io::Error),
}

impl Cells {
    /// Cells in this process, contained by the proxy only (`containment` says why).
    pub fn here(runner: Runner, containment: Containment) -> Cells {
        Cells { place: Place::Here(runner), containment }
    }

    /// Cells in `child`, a contained process started with piped stdin and stdout that runs
    /// [`serve`]; waits until its world is up.
    pub async fn contained(mut child: Child) -> Result<Cells, CellsError> {
        let missing = || std::io::Error::other("the contained process has no piped stdin/stdout");
        let stdin = child.stdin.take().ok_or_else(missing)?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or_else(missing)?).lines();
        match stdout.next_line().await? {
            Some(line) if line == READY => {}
            _ => return Err(CellsError::Exited { status: child.wait().await? }),
        }
        let pid = child.id();
        let channel = tokio::sync::Mutex::new(Channel { child, stdin: Some(stdin), stdout });
        Ok(Cells { place: Place::Contained { channel, pid }, containment: Containment::Namespace })
    }

    /// Runs `scenario`'s cell with `tool`, as [`Runner::run_cell`]; a contained process that
    /// fails to answer makes the cell `infra-error`.
    pub async fn run_cell(&self, tool: &ToolBinary, scenario: &Scenario) -> CellResult {
        let channel = match &self.place {
            Place::Here(runner) => return runner.run_cell(tool, scenario).await,
            Place::Contained { channel, .. } => channel,
        };
        let mut channel = channel.lock().await;
        let answer = async {
            let mut request = serde_json::to_vec(tool).map_err(std::io::Error::other)?;
            request.push(b'\n');
            let stdin = channel.stdin.as_mut().ok_or_else(|| std::io::Error::other("stdin closed"))?;
            stdin.write_all(&request).await?;
            stdin.flush().await?;
            let line =
                channel.stdout.next_line().await?.ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "it ended without answering")
                })?;
            serde_json::from_str::<CellResult>(&line).map_err(std::io::Error::other)
        };
        answer.await.unwrap_or_else(|e| CellResult {
            tool: tool.tool.name().into(),
            version: tool.version.clone(),
            scenario: scenario.name.clone(),
            verb: scenario.verb(),
            outcome: Outcome::InfraError,
            class: None,
            detail: format!("the contained bisect process did not run the cell: {e}; see its error above"),
            diagnosis: None,
            duration_ms: 0,
            tool_ms: 0,
            log: PathBuf::new(),
            retry_log: None,
            attempts: Vec::new(),
            env: Default::default(),
            requests: Vec::new(),
        })
    }

    /// Sends `signal` to a contained process (which then stops its world and exits).
    pub fn signal(&self, signal: libc::c_int) {
        if let Place::Contained { pid: Some(pid), .. } = &self.place {
            // SAFETY: signalling our own child, which is not reaped before `stop` waits for it.
            unsafe { libc::kill(*pid as libc::pid_t, signal) };
        }
    }

    /// Lets a contained process stop its world and exit (its stdin closes), and waits for it.
    pub async fn stop(self) -> Result<(), CellsError> {
        if let Place::Contained { channel, .. } = self.place {
            let mut channel = channel.into_inner();
            drop(channel.stdin.take());
            channel.child.wait().await?;
        }
        Ok(())
    }
}

/// The contained side: says the world is up, then runs `scenario`'s cell for each tool binary
/// read from `input` and writes its result to `output`, until `input` ends.
pub async fn serve(
    runner: &Runner,
    scenario: &Scenario,
    input: impl AsyncBufRead + Unpin,
    mut output: impl AsyncWrite + Unpin,
) -> std::io::Result<()> {
    output.write_all(format!("{READY}\n").as_bytes()).await?;
    output.flush().await?;
    let mut lines = input.lines();
    while let Some(line) = lines.next_line().await? {
        let tool: ToolBinary = serde_json::from_str(&line)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("a probe request: {e}")))?;
        let cell = runner.run_cell(&tool, scenario).await;
        let mut answer = serde_json::to_vec(&cell).map_err(std::io::Error::other)?;
        answer.push(b'\n');
        output.write_all(&answer).await?;
        output.flush().await?;
    }
    Ok(())
}
