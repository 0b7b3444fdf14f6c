//! PTY mode: portable-pty's blocking master driven by one reader and one writer thread,
//! bridged to async through bounded channels, and a task that reaps the child on SIGCHLD.

use std::ffi::OsString;
use std::future::Future;
use std::io::{self, Read, Write};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use assist_proto::msg::PtyRequest;
use portable_pty::{ChildKiller, CommandBuilder, MasterPty, PtySize, native_pty_system};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc::{self, OwnedPermit, error::SendError};
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

/// Bytes per chunk on the channels to and from the terminal threads.
const CHUNK: usize = 16 * 1024;
/// Chunks in flight per direction: a few, so the threads rarely wait on the async side.
const DEPTH: usize = 4;
/// Ctrl-D, the default VEOF (the terminal's own setting is out of reach without termios).
const EOT: u8 = 0x04;

type Status = watch::Receiver<Option<ExitStatus>>;

pub(super) fn spawn(
    request: PtyRequest,
    command: Option<Vec<String>>,
    env: &[(String, String)],
    cwd: &Path,
) -> Result<Process, ProcessError> {
    let pty_error = |e: anyhow::Error| ProcessError::Pty(format!("{e:#}"));
    let size = PtySize { rows: request.rows, cols: request.cols, pixel_width: 0, pixel_height: 0 };
    let pair = native_pty_system().openpty(size).map_err(pty_error)?;
    let reader = pair.master.try_clone_reader().map_err(pty_error)?;
    let writer = pair.master.take_writer().map_err(pty_error)?;

    let mut cmd = match command {
        None => CommandBuilder::new_default_prog(),
        Some(argv) => CommandBuilder::from_argv(argv.into_iter().map(OsString::from).collect()),
    };
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.env("TERM", if request.term.is_empty() { "dumb" } else { &request.term });
    cmd.cwd(cwd);

    // Listening before the child exists means its exit cannot fall between spawn and the
    // first wait.
    let sigchld = signal(SignalKind::child())
        .map_err(|e| ProcessError::Spawn(format!("cannot listen for child exits: {e}")))?;
    let (kill_tx, kill_rx) = watch::channel(false);
    let (status_tx, status_rx) = watch::channel(None);

    // The threads start before the child so that no failure can leave a child running
    // without them; if spawning fails, dropping `pair` ends them.
    let (output_tx, output_rx) = mpsc::channel(DEPTH);
    let (closed_tx, closed_rx) = std::sync::mpsc::channel();
    start_thread("assist-pty-read", move || read_terminal(reader, output_tx, closed_tx))?;
    let (input_tx, input_rx) = mpsc::channel(DEPTH);
    let status = status_rx.clone();
    start_thread("assist-pty-write", move || write_terminal(writer, input_rx, status, closed_rx))?;

    let child = pair.slave.spawn_command(cmd).map_err(|e| ProcessError::Spawn(format!("{e:#}")))?;
    // The master reads EOF only once no descriptor of the slave is open anywhere.
    drop(pair.slave);
    let hangup = child.clone_killer();
    let pid = child.process_id();
    // portable-pty's own status names signals by strsignal ("Killed"); std's has the number.
    let child: Box<dyn portable_pty::Child> = child;
    let child = match child.downcast::<std::process::Child>() {
        Ok(child) => ChildGuard(*child),
        Err(mut other) => {
            let _ = other.kill();
            return Err(ProcessError::Pty("portable-pty returned an unknown kind of child".into()));
        }
    };
    tokio::spawn(supervise(child, hangup, sigchld, kill_rx, status_tx));

    Ok(Process {
        stdin: Box::new(TerminalInput { tx: Some(input_tx), reserve: None, exit: Exit::new(&status_rx) }),
        stdout: Box::new(TerminalOutput {
            rx: output_rx,
            chunk: Vec::new(),
            pos: 0,
            done: false,
            exit: Exit::new(&status_rx),
            linger: None,
        }),
        stderr: None,
        control: Control::new(pid, kill_tx, status_rx, Some(pair.master)),
    })
}

pub(super) fn resize(master: &Mutex<Box<dyn MasterPty + Send>>, cols: u16, rows: u16) -> io::Result<()> {
    let master = master.lock().unwrap_or_else(PoisonError::into_inner);
    master
        .resize(PtySize { rows, cols, pixel_width: 0, pixel_height: 0 })
        .map_err(|e| io::Error::other(format!("{e:#}")))
}

fn start_thread(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), ProcessError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(drop)
        .map_err(|e| ProcessError::Spawn(format!("cannot start thread {name}: {e}")))
}

/// Reads until the slave is closed everywhere, then drops `_closed` to tell the writer.
fn read_terminal(
    mut reader: Box<dyn Read + Send>,
    tx: mpsc::Sender<io::Result<Vec<u8>>>,
    _closed: std::sync::mpsc::Sender<()>,
) {
    let mut buf = vec![0; CHUNK];
    let mut tx = Some(tx);
    loop {
        let item = match reader.read(&mut buf) {
            // portable-pty reports the EIO of a slave closed everywhere as EOF.
            Ok(0) => return,
            Ok(n) => Ok(buf[..n].to_vec()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
        let failed = item.is_err();
        // Without a listener, keep draining: the end of the terminal is still worth knowing.
        if tx.as_ref().is_some_and(|tx| tx.blocking_send(item).is_err()) {
            tx = None;
        }
        if failed {
            return;
        }
    }
}

fn write_terminal(
    mut writer: Box<dyn Write + Send>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    status: Status,
    closed: std::sync::mpsc::Receiver<()>,
) {
    while let Some(chunk) = rx.blocking_recv() {
        if let Err(e) = writer.write_all(&chunk) {
            debug!(error = %e, "terminal input failed");
            break;
        }
    }
    // Further writes to `stdin` fail instead of filling a channel that nobody reads.
    drop(rx);
    if status.borrow().is_none() {
        let _ = writer.write_all(&[EOT]);
    }
    // portable-pty's writer writes a newline and VEOF when dropped. A newline would run a
    // half-typed command line, or reach whatever still holds the terminal (even a process
    // forked elsewhere in the agent that has not yet exec'd): the writer lives until the
    // slave is closed everywhere, when that write fails with EIO.
    let _ = closed.recv();
}

/// Kills the child if the task that should reap it is dropped (runtime shutdown).
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
    }
}

/// Reaps the child on SIGCHLD and carries out kills. Signals go out only between a
/// `try_wait` that found the child unreaped and the next one, so its pid cannot have been
/// reused by then.
async fn supervise(
    mut child: ChildGuard,
    mut hangup: Box<dyn ChildKiller + Send + Sync>,
    mut sigchld: Signal,
    mut kill: watch::Receiver<bool>,
    status: watch::Sender<Option<ExitStatus>>,
) {
    let mut escalate_at = None;
    let mut killed = false;
    let exit = loop {
        match child.0.try_wait() {
            Ok(Some(exit)) => break ExitStatus::from(exit),
            Ok(None) => {}
            Err(e) => {
                debug!(error = %e, "cannot wait for the terminal's child");
                break ExitStatus::unknown();
            }
        }
        tokio::select! {
            received = sigchld.recv() => if received.is_none() {
                break ExitStatus::unknown();
            },
            // A kill request, or every Control dropped.
            _ = kill.changed(), if escalate_at.is_none() => {
                if let Err(e) = hangup.kill() {
                    debug!(error = %e, "SIGHUP failed");
                }
                escalate_at = Some(Instant::now() + KILL_GRACE);
            }
            () = sleep_until(escalate_at.unwrap_or_else(Instant::now)), if escalate_at.is_some() && !killed => {
                killed = true;
                if let Err(e) = child.0.kill() {
                    debug!(error = %e, "SIGKILL failed");
                }
            }
        }
    };
    status.send_replace(Some(exit));
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

type Reserve = Pin<Box<dyn Future<Output = Result<OwnedPermit<Vec<u8>>, SendError<()>>> + Send>>;

struct TerminalInput {
    /// `None` once shut down.
    tx: Option<mpsc::Sender<Vec<u8>>>,
    reserve: Option<Reserve>,
    exit: Exit,
}

fn child_gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the terminal's process has exited")
}

impl AsyncWrite for TerminalInput {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.exit.poll(cx) {
            return Poll::Ready(Err(child_gone()));
        }
        let Some(tx) = &this.tx else {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "stdin was shut down")));
        };
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let reserve = this.reserve.get_or_insert_with(|| Box::pin(tx.clone().reserve_owned()));
        let permit = std::task::ready!(reserve.as_mut().poll(cx));
        this.reserve = None;
        let Ok(permit) = permit else { return Poll::Ready(Err(child_gone())) };
        let n = buf.len().min(CHUNK);
        permit.send(buf[..n].to_vec());
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Ends input; the writer thread then sends EOT.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.tx = None;
        this.reserve = None;
        Poll::Ready(Ok(()))
    }
}

struct TerminalOutput {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
    done: bool,
    exit: Exit,
    /// Runs while the child has exited and no output is waiting.
    linger: Option<Pin<Box<Sleep>>>,
}

impl AsyncRead for TerminalOutput {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.pos < this.chunk.len() {
                let n = buf.remaining().min(this.chunk.len() - this.pos);
                buf.put_slice(&this.chunk[this.pos..this.pos + n]);
                this.pos += n;
                return Poll::Ready(Ok(()));
            }
            if this.done {
                return Poll::Ready(Ok(()));
            }
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    (this.chunk, this.pos, this.linger) = (chunk, 0, None);
                    continue;
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    continue;
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
            this.rx.close();
        }
    }
}
