//! OpenSSH's tools through assist: `assist ssh-proxy HOST` is an OpenSSH `ProxyCommand`
//! that serves SSH on its stdio, and `assist ssh-config` prints the `~/.ssh/config` block
//! that uses it ([`config`]).
//!
//! - HOST (`%h`, e.g. `erp-db01.assist`) names the agent. Its host key ([`hostkey`]) is
//!   pinned in a known_hosts file of the engineer's config directory, so ssh never asks.
//! - The session is a new one requested like `assist shell` (ticket, priority, reason,
//!   duration and capabilities from options or the environment, the wait for consent on
//!   stderr, where ssh shows it), or a live one with `--session S`, which the proxy then
//!   follows (told of its grant changes and end). Only then does the SSH handshake start.
//! - SSH's encryption ends in this process: what the channels carry goes to the relay as
//!   `assist shell`, `cp` and `forward` send it, and is recorded the same way
//!   ([`server`], [`sftp`]).
//! - The proxy leaves when ssh closes the connection or stops it (SIGHUP, as ssh does
//!   once it is done; SIGINT, SIGTERM): a session it requested then ends as "ssh
//!   connection closed" (a command's exit does not end it: each goes to its own SSH
//!   channel). Stopped while waiting for consent, it withdraws the request. It also leaves
//!   when the session ends (ssh is told by the connection closing).

pub mod config;
pub mod hostkey;
mod link;
mod reading;
mod server;
mod sftp;

use super::EngineerError;
use super::config::ConfigDir;
use super::session::{self, SessionChoice};
use assist_proto::caps::Capability;
use assist_proto::session::Work;
use hostkey::HostKeys;
use russh::MethodKind;
use std::sync::Arc;
use std::time::Duration;

/// What `assist ssh-proxy` was asked for.
#[derive(Clone, Debug)]
pub struct ProxyRequest {
    /// The SSH host name (`%h`).
    pub host: String,
    pub choice: SessionChoice,
    /// What a new session asks for.
    pub capabilities: Vec<Capability>,
}

/// One status line on stderr (ssh shows it); its parts may hold the relay's text.
pub(crate) fn say(line: &str) {
    eprintln!("assist: {}", assist_proto::text::line(line));
}

fn refused(e: impl std::fmt::Display) -> EngineerError {
    EngineerError::Refused(e.to_string())
}

/// How long ssh gets to close the connection after the session ended (a command's exit
/// status is on its way) before the proxy closes it.
const GRACE: Duration = Duration::from_secs(3);

/// Standard input as ssh gives it (a pipe) read without a thread: the pipe made
/// non-blocking on the runtime. Anything else (a terminal, a socket) is read as tokio
/// reads stdin, on a blocking thread.
fn stdin() -> Box<dyn tokio::io::AsyncRead + Unpin + Send> {
    use std::os::fd::AsFd;
    let pipe = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .and_then(|fd| tokio::net::unix::pipe::Receiver::from_owned_fd(fd).ok());
    match pipe {
        Some(p) => Box::new(p),
        None => Box::new(tokio::io::stdin()),
    }
}

/// Standard output, the same way as [`stdin`].
fn stdout() -> Box<dyn tokio::io::AsyncWrite + Unpin + Send> {
    use std::os::fd::AsFd;
    let pipe = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .and_then(|fd| tokio::net::unix::pipe::Sender::from_owned_fd(fd).ok());
    match pipe {
        Some(p) => Box::new(p),
        None => Box::new(tokio::io::stdout()),
    }
}

/// Serves SSH on stdin/stdout for the session; returns the exit code.
pub async fn run(cfg: &ConfigDir, req: ProxyRequest) -> Result<i32, EngineerError> {
    let agent = hostkey::agent_of(&req.host).map_err(refused)?;
    let key = HostKeys::new(cfg).for_agent(&agent).map_err(refused)?;
    // ssh stops its ProxyCommand with SIGHUP once it has closed the connection, and
    // Ctrl-C at ssh reaches this process too: both are the client leaving, not a failure.
    let stop = super::forward::stop_signal();
    tokio::pin!(stop);
    let live = tokio::select! {
        live = session::open(cfg, &agent, req.choice, req.capabilities) => live?,
        number = &mut stop => {
            crate::conn::interrupt_all().await;
            say("interrupted");
            return Ok(128 + number);
        }
    };
    let own = live.approved.is_some();
    let mut live = live;
    live.follow().await?;
    let channels = live.channels();
    let (link, running) = link::spawn(live);
    let shared = Arc::new(server::Shared { channels, link: link.clone() });
    let config = russh::server::Config {
        server_id: russh::SshId::Standard(format!("SSH-2.0-assist_{}", env!("CARGO_PKG_VERSION")).into()),
        methods: russh::MethodSet::from(&[MethodKind::None, MethodKind::PublicKey][..]),
        auth_rejection_time: Duration::ZERO,
        keys: vec![key.key],
        // The client is on our stdio: no idle timeout of our own (the relay has one).
        inactivity_timeout: None,
        window_size: 8 * 1024 * 1024,
        ..Default::default()
    };
    let stdio = tokio::io::join(stdin(), stdout());
    let served = russh::server::run_stream(Arc::new(config), stdio, server::Server::new(shared)).await;
    let mut ended = link.ended();
    let ok = match served {
        Err(e) => {
            say(&format!("ssh: {e}"));
            false
        }
        Ok(running_ssh) => {
            tokio::pin!(running_ssh);
            tokio::select! {
                // ssh closing its end of the pipe without a disconnect message is how
                // it usually leaves: the connection is over either way.
                done = &mut running_ssh => {
                    if let Err(e) = done {
                        tracing::debug!(error = %e, "ssh connection ended");
                    }
                    true
                }
                number = &mut stop => {
                    tracing::debug!(number, "stopped by a signal");
                    true
                }
                _ = ended.wait_for(|e| e.is_some()) => {
                    let _ = tokio::time::timeout(GRACE, &mut running_ssh).await;
                    true
                }
            }
        }
    };
    let end = ended.borrow().clone();
    if let Some(reason) = &end {
        let unsaid = matches!(reason, assist_proto::session::EndReason::ShellExited { .. });
        if !unsaid {
            say(&format!("session ended: {reason}"));
        }
    }
    tracing::debug!(?end, own, ok, "leaving");
    match running.stop().await {
        Some(live) if own && end.is_none() => live.finish(Work::Ssh, ok).await,
        Some(live) => live.close().await,
        None => {}
    }
    Ok(if ok { 0 } else { 255 })
}
