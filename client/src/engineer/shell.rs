//! `assist shell AGENT [-- CMD ARGS]`: request a session, wait for consent, then run a
//! shell in a remote PTY (interactive) or a command with pipes (like `ssh host cmd`).
//!
//! - While waiting, the engineer sees who must answer and how long is left.
//! - Interactive: the local terminal is in raw mode (restored on every exit path), its size
//!   is sent at start and on every SIGWINCH, and Ctrl-C travels as a byte to the remote PTY.
//! - Command: stdin, stdout and stderr pass through unchanged, and the remote exit code
//!   becomes ours.

use super::config::ConfigDir;
use super::session::{spawn_events, wait_for_consent};
use super::{EngineerError, connect};
use crate::conn::Control;
use crate::term;
use assist_net::read_msg;
use assist_proto::caps::{Capability, Priority};
use assist_proto::ids::AgentName;
use assist_proto::msg::{
    ChannelKind, ChannelOpen, ChannelReply, EngineerToRelay, PtyRequest, RelayToEngineer,
};
use assist_proto::session::EndReason;
use assist_proto::text;
use bytes::Bytes;
use std::io::Write;
use std::os::fd::AsFd;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// Whether to ask for a remote PTY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tty {
    /// A PTY for an interactive shell when stdin is a terminal; none for a command.
    Auto,
    Force,
    Never,
}

#[derive(Clone, Debug)]
pub struct ShellRequest {
    pub agent: AgentName,
    pub ticket: String,
    pub priority: Priority,
    pub reason: String,
    pub command: Option<Vec<String>>,
    pub tty: Tty,
    /// Capabilities asked for besides `shell`, to use from other commands in this session.
    pub also: Vec<Capability>,
    /// How long the grant should last; the relay's default if `None`.
    pub duration_secs: Option<u64>,
}

/// How long to keep reading output after the relay reported the end.
const DRAIN: Duration = Duration::from_secs(3);

fn say(msg: &str) {
    let mut err = std::io::stderr();
    let _ = writeln!(err, "{msg}");
}

/// Runs the session and returns the exit code for the process.
pub async fn run(cfg: &ConfigDir, req: ShellRequest) -> Result<i32, EngineerError> {
    assist_proto::text::check_ticket(&req.ticket)?;
    assist_proto::text::check_reason("reason", &req.reason)?;
    let authed = connect(cfg).await?;
    let result = session(&authed.rc.conn, authed.control, req).await;
    // However it ended, the relay is told the engineer left (and so ends the session) now,
    // not at the idle timeout: the close must be sent before the runtime stops.
    authed.rc.close().await;
    result
}

async fn session(
    conn: &quinn::Connection,
    control: Control,
    req: ShellRequest,
) -> Result<i32, EngineerError> {
    let conn = conn.clone();
    let mut control_send = control.send;
    let control_recv = control.recv;
    assist_net::write_msg(
        &mut control_send,
        &EngineerToRelay::RequestSession {
            agent: req.agent.clone(),
            ticket: req.ticket.clone(),
            priority: req.priority,
            reason: req.reason.clone(),
            capabilities: std::iter::once(Capability::Shell).chain(req.also.iter().cloned()).collect(),
            duration_secs: req.duration_secs,
        },
    )
    .await
    .map_err(|e| EngineerError::Refused(format!("lost the connection to the relay: {e}")))?;

    let mut events = spawn_events(control_recv);

    let approved = wait_for_consent(&mut events).await?;
    let session = approved.id.clone();
    let mut expiry = super::grant::ExpiryWarning::new(&approved);

    let pty = match (req.tty, &req.command) {
        (Tty::Force, _) => true,
        (Tty::Never, _) => false,
        (Tty::Auto, None) => term::stdin_is_tty(),
        (Tty::Auto, Some(_)) => false,
    };
    let pty_req = pty.then(|| {
        let (cols, rows) = term::size();
        PtyRequest { cols, rows, term: std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".into()) }
    });
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| EngineerError::Refused(format!("cannot open the shell channel: {e}")))?;
    let open = ChannelOpen {
        session: session.clone(),
        report_exit: false,
        channel: ChannelKind::Shell { pty: pty_req, command: req.command.clone() },
    };
    assist_net::write_msg(&mut send, &open).await.map_err(|e| EngineerError::Refused(e.to_string()))?;
    match read_msg::<ChannelReply, _>(&mut recv).await {
        Ok(Some(ChannelReply::Accepted)) => {}
        Ok(Some(ChannelReply::Refused { reason, .. })) => {
            return Err(EngineerError::Refused(format!("shell refused: {reason}")));
        }
        Ok(None) | Err(_) => return Err(EngineerError::Refused("the relay closed the shell channel".into())),
    }

    let raw = if pty && term::stdin_is_tty() { Some(term::RawMode::enable()?) } else { None };

    // stdin → remote. Finishing the stream tells the remote command its input ended.
    let stdin_task = tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if send.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = send.finish();
    });
    // remote → stdout.
    let mut stdout_task = tokio::spawn(async move { copy_out(&mut recv, Local::Stdout).await });
    // remote stderr, on streams the agent opens.
    let stderr_conn = conn.clone();
    let stderr_task = tokio::spawn(async move {
        while let Ok(mut uni) = stderr_conn.accept_uni().await {
            if !matches!(
                read_msg::<ChannelOpen, _>(&mut uni).await,
                Ok(Some(ChannelOpen { channel: ChannelKind::Stderr, .. }))
            ) {
                continue;
            }
            tokio::spawn(async move { copy_out(&mut uni, Local::Stderr).await });
        }
    });

    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())?;
    let mut stdout_done = false;
    // Set when the grant stops covering the shell: not a failure, and said as such.
    let mut shell_lost = None;
    let reason = loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(Ok(RelayToEngineer::SessionEnded { reason })) => break reason,
                Some(Ok(RelayToEngineer::Error { message, .. })) => break EndReason::Failed { message },
                Some(Ok(RelayToEngineer::GrantChanged { grant, change, in_force, .. })) => {
                    say(&format!("\r\nassist: {}\r", text::line(&change)));
                    expiry.update(&grant);
                    if let Some(message) = super::grant::shell_lost(&grant, in_force) {
                        shell_lost = Some(message.clone());
                        break EndReason::Failed { message };
                    }
                }
                Some(Ok(RelayToEngineer::Watching { watcher, org, watching, .. })) => {
                    let what = if watching { "is watching" } else { "stopped watching" };
                    say(&format!("\r\nassist: {} ({}) {what}\r", text::line(watcher.as_str()), text::line(org.as_str())));
                }
                Some(Ok(_)) => {}
                Some(Err(message)) => break EndReason::Failed { message },
                None => break EndReason::Failed { message: "relay connection lost".into() },
            },
            _ = winch.recv(), if pty => {
                let (cols, rows) = term::size();
                let _ = assist_net::write_msg(&mut control_send, &EngineerToRelay::Resize { session: session.clone(), cols, rows }).await;
            }
            _ = &mut stdout_task, if !stdout_done => { stdout_done = true; }
            _ = expiry.wait() => say(&format!("\r\nassist: {}\r", text::line(&expiry.message(&session)))),
        }
    };
    if !stdout_done {
        let _ = tokio::time::timeout(DRAIN, &mut stdout_task).await;
    }
    stdin_task.abort();
    stderr_task.abort();
    drop(raw);
    let code = reason.exit_code();
    let shell_exit = matches!(reason, EndReason::ShellExited { .. });
    if let Some(why) = shell_lost {
        // Only the shell is gone: the session stays for what else it holds.
        let left = leave(&mut control_send, &mut events, &session).await;
        say(&format!("\r\nassist: {}; {}", text::line(&why), text::line(&left)));
    } else if pty || !shell_exit {
        say(&format!("\r\nassist: session {session} ended: {}", text::line(&reason.to_string())));
    }
    let _ = control_send.finish();
    Ok(code)
}

/// Leaves the session without ending it; says what became of it.
async fn leave(
    control: &mut quinn::SendStream,
    events: &mut mpsc::Receiver<super::session::Event>,
    session: &assist_proto::ids::SessionId,
) -> String {
    let ended = |reason: &dyn std::fmt::Display| format!("session {session} ended: {reason}");
    let detach = EngineerToRelay::Detach { session: session.clone() };
    if let Err(e) = assist_net::write_msg(control, &detach).await {
        return ended(&format!("lost the connection to the relay: {e}"));
    }
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.recv().await {
                Some(Ok(RelayToEngineer::Done { message })) => return Ok(message),
                Some(Ok(RelayToEngineer::SessionEnded { reason })) => return Err(reason.to_string()),
                Some(Ok(RelayToEngineer::Error { message, .. })) => return Err(message),
                Some(Ok(_)) => {}
                Some(Err(message)) => return Err(message),
                None => return Err("connection to the relay lost".into()),
            }
        }
    })
    .await;
    match answer {
        Ok(Ok(message)) => format!(
            "{message}; use it with --session {session} (assist cp, ls, exec, logs), \
             ask for more with assist escalate {session}, or end it with assist end {session}"
        ),
        Ok(Err(message)) => ended(&message),
        Err(_) => ended(&"the relay did not answer"),
    }
}

/// A local output for remote bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Local {
    Stdout,
    Stderr,
}

/// Copies a remote stream to a local output until the stream ends or the output fails.
///
/// Reads take the chunks that have arrived by reference (no copy); a thread of its own
/// writes them with vectored blocking writes on a duplicate of the descriptor (no async
/// buffer, no copy, no blocking-pool round trip per write). Bulk output costs a few large
/// writes, and interactive output is written as soon as it arrives. The channel to the
/// thread is bounded: a slow output slows the remote side.
pub(crate) async fn copy_out(recv: &mut quinn::RecvStream, to: Local) {
    let (tx, rx) = mpsc::channel::<Vec<Bytes>>(8);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let file = match to {
        Local::Stdout => std::io::stdout().as_fd().try_clone_to_owned(),
        Local::Stderr => std::io::stderr().as_fd().try_clone_to_owned(),
    };
    let writer = file.map(std::fs::File::from).and_then(|file| {
        std::thread::Builder::new().name("assist-output".into()).spawn(move || {
            write_out(file, rx);
            let _ = done_tx.send(());
        })
    });
    if let Err(e) = writer {
        say(&format!("assist: cannot write the remote output: {}", text::line(&e.to_string())));
        return;
    }
    let mut bufs = vec![Bytes::new(); 32];
    while let Ok(Some(n)) = recv.read_chunks(&mut bufs).await {
        if tx.send(bufs[..n].to_vec()).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = done_rx.await;
}

/// Writes what arrives on `rx` to `out` until the channel closes or a write fails.
fn write_out(mut out: std::fs::File, mut rx: mpsc::Receiver<Vec<Bytes>>) {
    let mut pending: Vec<Bytes> = Vec::new();
    while crate::disk::next_writes(&mut rx, &mut pending) {
        if crate::disk::write_all_vectored(&mut out, &pending).is_err() {
            return;
        }
        pending.clear();
    }
}
