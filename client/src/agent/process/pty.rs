//! PTY mode: pty-process's non-blocking master, read and written on the runtime itself, and
//! a task that reaps the child.
//!
//! No thread sits between the terminal and the QUIC stream: a keystroke goes from the
//! connection's task straight into the master, and the echo straight back, which is most of
//! what the agent adds to a keystroke's round trip.

use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use assist_proto::msg::PtyRequest;
use pty_process::{OwnedReadPty, OwnedWritePty, Size};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep, sleep, sleep_until};
use tracing::debug;

use super::{Control, ExitStatus, Process, ProcessError};

/// How long terminal output may stay silent after the child exited before `stdout` ends
/// anyway, because a descendant still holds the terminal open. Only that case waits: when
/// the last holder closes the terminal, `stdout` ends as soon as it is drained.
pub const TTY_LINGER: Duration = Duration::from_secs(1);

/// How long a PTY child has between SIGHUP and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(1);

/// Most bytes taken from one write to `stdin` at once.
const CHUNK: usize = 16 * 1024;
/// Ctrl-D, the default VEOF (the terminal's own setting is out of reach without termios).
const EOT: u8 = 0x04;

type Status = watch::Receiver<Option<ExitStatus>>;

pub(super) fn spawn(
    request: PtyRequest,
    command: Option<Vec<String>>,
    env: &[(String, String)],
    cwd: &Path,
) -> Result<Process, ProcessError> {
    let pty_error = |e: pty_process::Error| ProcessError::Pty(e.to_string());
    let (pty, pts) = pty_process::open().map_err(pty_error)?;
    pty.resize(Size::new(request.rows, request.cols)).map_err(pty_error)?;
    // A second descriptor of the master, for resizing and for the EOT of a dropped `stdin`.
    let master = Arc::new(rustix::io::dup(&pty).map_err(|e| ProcessError::Pty(e.to_string()))?);

    let mut cmd = match command {
        None => {
            // A login shell, as sshd starts it: argv[0] is the shell's name after a dash.
            let shell = login_shell(env);
            let name = shell.rsplit('/').next().unwrap_or(&shell).to_owned();
            pty_process::Command::new(&shell).arg0(format!("-{name}")).env("SHELL", &shell)
        }
        Some(argv) => {
            let (program, args) = argv.split_first().ok_or(ProcessError::EmptyCommand)?;
            pty_process::Command::new(program).args(args)
        }
    };
    cmd = cmd
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("TERM", if request.term.is_empty() { "dumb" } else { &request.term })
        .current_dir(cwd)
        .kill_on_drop(true);
    let child = cmd.spawn(pts).map_err(|e| ProcessError::Spawn(e.to_string()))?;
    let pid = child.id();
    let (kill_tx, kill_rx) = watch::channel(false);
    let (status_tx, status_rx) = watch::channel(None);
    tokio::spawn(supervise(child, kill_rx, status_tx));

    let (read, write) = pty.into_split();
    Ok(Process {
        stdin: Box::new(TerminalInput {
            pty: Some(write),
            master: master.clone(),
            exit: Exit::new(&status_rx),
        }),
        stdout: Box::new(TerminalOutput {
            pty: Some(read),
            done: false,
            exit: Exit::new(&status_rx),
            linger: None,
        }),
        stderr: None,
        control: Control::new(pid, kill_tx, status_rx, Some(master)),
    })
}

/// The user's shell: `$SHELL` as the child will see it, else the password database's
/// entry for the agent's user, else `/bin/sh`; only an executable file counts.
fn login_shell(env: &[(String, String)]) -> String {
    let executable = |p: &str| rustix::fs::access(p, rustix::fs::Access::EXEC_OK).is_ok();
    let from_env = super::child_var(env, "SHELL").and_then(|s| s.into_string().ok());
    let uid = rustix::process::getuid().as_raw().to_string();
    let from_passwd = std::fs::read_to_string("/etc/passwd").ok().and_then(|passwd| {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() == 7 && fields[2] == uid).then(|| fields[6].to_owned())
        })
    });
    [from_env, from_passwd]
        .into_iter()
        .flatten()
        .find(|shell| !shell.is_empty() && executable(shell))
        .unwrap_or_else(|| "/bin/sh".to_owned())
}

pub(super) fn resize(master: &OwnedFd, cols: u16, rows: u16) -> io::Result<()> {
    let size = rustix::termios::Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    rustix::termios::tcsetwinsize(master, size).map_err(io::Error::from)
}

/// Reaps the child and carries out kills. Signals go out only while the child is unreaped
/// (only `wait` reaps it, and it runs in this task), so its pid cannot have been reused.
async fn supervise(
    mut child: tokio::process::Child,
    mut kill: watch::Receiver<bool>,
    status: watch::Sender<Option<ExitStatus>>,
) {
    let mut escalate_at = None;
    let mut killed = false;
    let exit = loop {
        tokio::select! {
            exit = child.wait() => break match exit {
                Ok(exit) => ExitStatus::from(exit),
                Err(e) => {
                    debug!(error = %e, "cannot wait for the terminal's child");
                    ExitStatus::unknown()
                }
            },
            // A kill request, or every Control dropped.
            _ = kill.changed(), if escalate_at.is_none() => {
                // SIGHUP, what a closed terminal sends; a shell passes it on to its jobs.
                signal_group(&child, rustix::process::Signal::HUP);
                escalate_at = Some(Instant::now() + KILL_GRACE);
            }
            () = sleep_until(escalate_at.unwrap_or_else(Instant::now)), if escalate_at.is_some() && !killed => {
                killed = true;
                signal_group(&child, rustix::process::Signal::KILL);
                if let Err(e) = child.start_kill() {
                    debug!(error = %e, "SIGKILL failed");
                }
            }
        }
    };
    status.send_replace(Some(exit));
}

/// Signals the child's process group: the child is a session leader, so the group is the
/// child and what it started without job control of its own (`sh -c 'a | b'`).
fn signal_group(child: &tokio::process::Child, signal: rustix::process::Signal) {
    let Some(pid) = child.id().and_then(|id| rustix::process::Pid::from_raw(id as i32)) else { return };
    if let Err(e) = rustix::process::kill_process_group(pid, signal) {
        debug!(error = %e, ?signal, "cannot signal the terminal's process group");
    }
}

/// Tells a stream, from its poll functions, that the child has exited.
struct Exit {
    status: Status,
    wait: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    exited: bool,
}

impl Exit {
    fn new(status: &Status) -> Self {
        Exit { status: status.clone(), wait: None, exited: false }
    }

    /// Whether the child has exited; if not, `cx` is woken when it does.
    fn poll(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.exited {
            let status = &self.status;
            let wait = self.wait.get_or_insert_with(|| {
                let mut status = status.clone();
                Box::pin(async move {
                    let _ = status.wait_for(Option::is_some).await;
                })
            });
            if wait.as_mut().poll(cx).is_ready() {
                self.exited = true;
                self.wait = None;
            }
        }
        self.exited
    }
}

struct TerminalInput {
    /// `None` once shut down.
    pty: Option<OwnedWritePty>,
    master: Arc<OwnedFd>,
    exit: Exit,
}

fn child_gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the terminal's process has exited")
}

impl TerminalInput {
    /// Ends input with one EOT, unless the child has already exited. Never a newline: that
    /// would run a half-typed command line. The master is non-blocking, so a full terminal
    /// drops the EOT rather than stalling.
    fn end(&mut self) {
        if self.pty.take().is_some() && self.exit.status.borrow().is_none() {
            let _ = rustix::io::write(&*self.master, &[EOT]);
        }
    }
}

impl Drop for TerminalInput {
    fn drop(&mut self) {
        self.end();
    }
}

impl AsyncWrite for TerminalInput {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.exit.poll(cx) {
            return Poll::Ready(Err(child_gone()));
        }
        let Some(pty) = &mut this.pty else {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "stdin was shut down")));
        };
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(CHUNK);
        Pin::new(pty).poll_write(cx, &buf[..n])
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Ends input: sends EOT.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().end();
        Poll::Ready(Ok(()))
    }
}

struct TerminalOutput {
    /// `None` once handed to the drain task (see `Drop`).
    pty: Option<OwnedReadPty>,
    done: bool,
    exit: Exit,
    /// Runs while the child has exited and no output is waiting.
    linger: Option<Pin<Box<Sleep>>>,
}

/// Linux reports a terminal closed on every slave descriptor as EIO on the master.
fn is_hangup(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error())
}

impl AsyncRead for TerminalOutput {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(Ok(()));
        }
        let Some(pty) = &mut this.pty else { return Poll::Ready(Ok(())) };
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(pty).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                this.linger = None;
                return Poll::Ready(Ok(()));
            }
            // End of the terminal: every process closed it.
            Poll::Ready(Ok(())) => {
                this.done = true;
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(e)) if is_hangup(&e) => {
                this.done = true;
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(e)) => {
                this.done = true;
                return Poll::Ready(Err(e));
            }
            Poll::Pending => {}
        }
        if !this.exit.poll(cx) {
            return Poll::Pending;
        }
        let linger = this.linger.get_or_insert_with(|| Box::pin(sleep(TTY_LINGER)));
        if linger.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        // The session is over; what its leftovers write later is not part of it.
        this.done = true;
        Poll::Ready(Ok(()))
    }
}

impl Drop for TerminalOutput {
    /// Keeps reading and discarding the terminal's output until every process has closed
    /// it, so that nothing still running blocks on a full terminal, and the master stays
    /// open (closing it would hang up whatever still runs in the terminal).
    fn drop(&mut self) {
        let Some(mut pty) = self.pty.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(async move {
            let _ = tokio::io::copy(&mut pty, &mut tokio::io::sink()).await;
        });
    }
}
