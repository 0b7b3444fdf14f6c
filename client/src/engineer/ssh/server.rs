//! The SSH server side of `assist ssh-proxy`: what an OpenSSH client asks for, mapped to
//! assist channels of one session.
//!
//! - Authentication: the client is the engineer's own `ssh`, on this process's stdio, so
//!   `none` and any public key are accepted (the relay authenticates the engineer by their
//!   login; nothing here is a door to anything).
//! - A session channel's `pty-req` is kept until `shell` or `exec` comes: `shell` opens the
//!   assist shell channel (with the PTY, or `/bin/sh` on pipes without one), `exec CMD`
//!   runs `/bin/sh -c CMD` on the agent, as `assist shell AGENT -- /bin/sh -c CMD` would;
//!   `window-change` becomes a resize, stdin/stdout pass through, the agent's stderr
//!   becomes the channel's extended data, and the command's exit becomes `exit-status`
//!   ([`shell`]). Each is opened with `report_exit`, so its exit and stderr come to this
//!   channel alone and the session goes on: one SSH connection runs many commands, in a
//!   row or at once (VS Code Remote-SSH, `ControlMaster`).
//! - The `sftp` subsystem is served over file channels ([`super::sftp`]).
//! - `direct-tcpip` (`ssh -L`, `-W`) opens a forward channel to `HOST:PORT`.
//! - Whatever the relay or the agent refuses is refused as SSH refuses: a channel open
//!   failure (administratively prohibited, with the reason) or a request failure, and the
//!   reason on stderr, which ssh shows.
//!
//! It does not offer remote forwarding (`-R`), agent or X11 forwarding: each is refused.

use super::link::{Exit, Link};
use super::{say, sftp};
use crate::engineer::session::{Channels, OpenChannel};
use assist_net::codes;
use assist_proto::msg::{ChannelKind, PtyRequest};
use quinn::{RecvStream, SendStream};
use russh::server::{Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, ChannelMsg, ChannelOpenFailure};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What every channel of the SSH connection shares.
pub(super) struct Shared {
    pub channels: Channels,
    pub link: Link,
}

/// One SSH connection's handler.
pub(super) struct Server {
    shared: Arc<Shared>,
    /// Session channels opened and not yet given a `shell`, `exec` or subsystem.
    pending: HashMap<ChannelId, Channel<Msg>>,
    ptys: HashMap<ChannelId, PtyRequest>,
}

impl Server {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared, pending: HashMap::new(), ptys: HashMap::new() }
    }

    /// Opens the assist shell channel for a session channel and pumps it.
    async fn start(&mut self, id: ChannelId, command: Option<Vec<String>>, session: &mut Session) {
        let Some(channel) = self.pending.remove(&id) else {
            let _ = session.channel_failure(id);
            return;
        };
        let pty = self.ptys.remove(&id);
        let command = match (&pty, command) {
            (_, Some(c)) => Some(c),
            (Some(_), None) => None,
            // A shell without a terminal (`ssh -T host`): a shell reading its stdin.
            (None, None) => Some(vec!["/bin/sh".to_owned()]),
        };
        let is_pty = pty.is_some();
        let kind = ChannelKind::Shell { pty, command };
        match self.shared.channels.reporting(kind).await {
            Ok((stream, send, recv)) => {
                let _ = session.channel_success(id);
                tokio::spawn(shell(self.shared.clone(), channel, stream, send, recv, is_pty));
            }
            Err(e) => {
                say(&format!("shell refused: {e}"));
                let _ = session.channel_failure(id);
                let _ = channel.extended_data_bytes(1, format!("assist: {e}\r\n")).await;
                let _ = channel.exit_status(255).await;
                let _ = channel.close().await;
            }
        }
    }
}

impl russh::server::Handler for Server {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        _key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.pending.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let cols = u16::try_from(col_width).unwrap_or(u16::MAX).max(1);
        let rows = u16::try_from(row_height).unwrap_or(u16::MAX).max(1);
        self.ptys.insert(channel, PtyRequest { cols, rows, term: term.to_owned() });
        session.channel_success(channel)
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        self.start(channel, None, session).await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let line = String::from_utf8_lossy(data).into_owned();
        self.start(channel, Some(vec!["/bin/sh".to_owned(), "-c".to_owned(), line]), session).await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match (name, self.pending.remove(&channel)) {
            ("sftp", Some(ch)) => {
                session.channel_success(channel)?;
                sftp::serve(self.shared.channels.clone(), ch);
            }
            _ => {
                say(&format!("subsystem {name:?} is not offered through assist"));
                session.channel_failure(channel)?;
            }
        }
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let host = if host_to_connect.contains(':') {
            format!("[{host_to_connect}]")
        } else {
            host_to_connect.to_owned()
        };
        let target = format!("{host}:{port_to_connect}");
        let channels = self.shared.channels.clone();
        // The open waits for the agent to connect; other channels go on meanwhile.
        tokio::spawn(async move {
            match channels.channel(ChannelKind::Forward { target: target.clone() }).await {
                Ok((send, recv)) => {
                    reply.accept().await;
                    forward(channel, send, recv).await;
                }
                Err(e) => {
                    let reason = format!("assist: {target}: {e}");
                    say(&format!("forward to {target} refused: {e}"));
                    reply.reject(ChannelOpenFailure::Other { code: 1, reason }).await;
                }
            }
        });
        Ok(())
    }

    async fn channel_close(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        self.pending.remove(&channel);
        self.ptys.remove(&channel);
        Ok(())
    }
}

/// A shell or command: SSH channel ⇄ the assist shell channel on `stream`, then its
/// exit status (told for this channel alone; the session goes on).
async fn shell(
    shared: Arc<Shared>,
    channel: Channel<Msg>,
    stream: u64,
    mut send: SendStream,
    mut recv: RecvStream,
    pty: bool,
) {
    let (mut from_ssh, to_ssh) = channel.split();
    let link = shared.link.clone();
    let up = tokio::spawn(async move {
        while let Some(msg) = from_ssh.wait().await {
            match msg {
                ChannelMsg::Data { data } if send.write_all(&data).await.is_err() => break,
                ChannelMsg::Eof => {
                    let _ = send.finish();
                }
                ChannelMsg::WindowChange { col_width, row_height, .. } if pty => {
                    let cols = u16::try_from(col_width).unwrap_or(u16::MAX).max(1);
                    let rows = u16::try_from(row_height).unwrap_or(u16::MAX).max(1);
                    link.resize(cols, rows).await;
                }
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        let _ = send.reset(codes::SESSION_ENDED);
    });
    let mut stderr = shared.link.stderr_of(stream);
    let mut exits = shared.link.exits();
    let mut ended = shared.link.ended();
    let mut out_done = false;
    let mut err_open = true;
    // The exit follows the output; the session's end (revocation, expiry, an end by a
    // person) means none will come.
    let exit = loop {
        let exited = exits.borrow().get(&stream).cloned();
        let session_over = ended.borrow().is_some();
        if out_done && (exited.is_some() || session_over) {
            break exited;
        }
        tokio::select! {
            chunk = recv.read_chunk(64 * 1024, true), if !out_done => match chunk {
                Ok(Some(c)) => {
                    if to_ssh.data_bytes(c.bytes).await.is_err() {
                        // ssh closed the channel: nobody waits for the exit.
                        break None;
                    }
                }
                _ => out_done = true,
            },
            bytes = stderr.recv(), if err_open => match bytes {
                Some(b) => {
                    let _ = to_ssh.extended_data_bytes(1, b).await;
                }
                None => err_open = false,
            },
            _ = exits.changed() => {}
            changed = ended.changed() => {
                if changed.is_err() {
                    let exited = exits.borrow().get(&stream).cloned();
                    break exited;
                }
            }
        }
    };
    // The rest of the command's stderr: its stream may finish after the exit was told.
    shared.link.stderr_done(stream);
    let rest = async {
        while let Some(b) = stderr.recv().await {
            let _ = to_ssh.extended_data_bytes(1, b).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), rest).await;
    let end = ended.borrow().clone();
    let code = match (&exit, end) {
        (Some(Exit { code: Some(c), .. }), _) => *c,
        (Some(Exit { signal: Some(s), .. }), _) => {
            let _ = to_ssh.extended_data_bytes(1, format!("assist: killed by {s}\r\n")).await;
            255
        }
        (_, Some(reason)) => reason.exit_code(),
        _ => 255,
    };
    shared.link.forget_exit(stream);
    let _ = to_ssh.exit_status(u32::try_from(code).unwrap_or(255)).await;
    let _ = to_ssh.eof().await;
    let _ = to_ssh.close().await;
    up.abort();
}

/// A forwarded connection: SSH channel ⇄ forward channel, half-closes passed on; a reset
/// on either side (revocation, the session's end) closes the SSH channel.
async fn forward(channel: Channel<Msg>, mut send: SendStream, mut recv: RecvStream) {
    let stream = channel.into_stream();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = rd.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            send.write_all(&buf[..n]).await.map_err(std::io::Error::other)?;
        }
        send.finish().map_err(std::io::Error::other)
    };
    let down = async {
        while let Some(chunk) = recv.read_chunk(64 * 1024, true).await.map_err(std::io::Error::other)? {
            wr.write_all(&chunk.bytes).await?;
        }
        wr.shutdown().await
    };
    if tokio::try_join!(up, down).is_err() {
        let _ = send.reset(codes::SESSION_ENDED);
        let _ = recv.stop(codes::SESSION_ENDED);
    }
    let _ = wr.shutdown().await;
}
