//! A QUIC agent as the broker sees it ([`QuicAgent`], the [`AgentPeer`] of the seam):
//! control messages written straight to its control stream by the task that sends them,
//! one message at a time, and its connection, to close it or open channels on it.
//!
//! There is no queue and no writer task: an agent idles for days with nothing to send, and
//! a queue (tokio's allocates a block of slots up front) and a task cost every connected
//! agent about 1 KB for nothing. Senders take turns on an async lock instead (first come,
//! first served), and a send returns once quinn has taken the frame into the stream's send
//! buffer, which waits only when the agent stops reading, as a full queue did.
//!
//! A send cancelled halfway through a frame does not break the stream: the frame's rest
//! is kept and written before the next message. It does not read from the agent; the
//! agent's connection task does.

use crate::broker::peer::{AgentChannel, AgentPeer, Close, OpenFailed, Peer, PeerFuture, PeerGone};
use assist_net::{codes, read_msg, write_msg};
use assist_proto::msg::{AgentChannelOpen, ChannelKind, ChannelReply, RelayToAgent};
use quinn::{Connection, SendStream};
use tokio::sync::Mutex;

/// A connected agent: its control stream's writer and its connection.
#[derive(Debug)]
pub(crate) struct QuicAgent {
    writer: Mutex<Writer>,
    pub conn: Connection,
}

#[derive(Debug)]
struct Writer {
    send: SendStream,
    /// Bytes of a frame whose send was cancelled, written before anything else.
    pending: Vec<u8>,
    /// Set when a write failed or the connection's task closed the stream.
    gone: bool,
}

impl QuicAgent {
    pub(crate) fn new(conn: Connection, send: SendStream) -> Self {
        Self { writer: Mutex::new(Writer { send, pending: Vec::new(), gone: false }), conn }
    }

    /// Writes `first` as the stream's first message, with `register` run just before
    /// while the stream is held: whoever `register` lets send (by publishing this
    /// `AgentTx`) is written after `first`.
    pub(crate) async fn send_first(
        &self,
        first: &RelayToAgent,
        register: impl FnOnce(),
    ) -> Result<(), PeerGone> {
        let mut writer = self.writer.lock().await;
        register();
        writer.write(first).await
    }

    /// Writes `msg` after the messages sent before it.
    pub(crate) async fn write(&self, msg: &RelayToAgent) -> Result<(), PeerGone> {
        self.writer.lock().await.write(msg).await
    }

    /// Finishes the stream: later sends fail with [`PeerGone`]. If a send is under way
    /// (the agent is not reading), the stream finishes when the last sender lets go of it.
    pub(crate) fn close_control(&self) {
        if let Ok(mut writer) = self.writer.try_lock() {
            writer.gone = true;
            writer.pending = Vec::new();
            let _ = writer.send.finish();
        }
    }

    /// Finishes the stream after what was sent before, and waits until the agent has
    /// acknowledged all of it (or stopped the stream, or the connection went): a relay
    /// closing its endpoint right after would otherwise discard the last messages (the
    /// sessions' ends) still in flight.
    async fn finish_and_wait(&self) {
        let mut writer = self.writer.lock().await;
        if writer.gone {
            return;
        }
        writer.gone = true;
        writer.pending = Vec::new();
        if writer.send.finish().is_ok() {
            let _ = writer.send.stopped().await;
        }
    }
}

impl Peer for QuicAgent {
    fn close(&self, why: Close) {
        let code = match why {
            Close::Replaced => codes::REPLACED,
            Close::Revoked | Close::AccessRevoked => codes::REFUSED,
        };
        self.conn.close(code, why.message().as_bytes());
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl AgentPeer for QuicAgent {
    fn send(&self, msg: RelayToAgent) -> PeerFuture<'_, Result<(), PeerGone>> {
        Box::pin(async move { self.write(&msg).await })
    }
    fn finish_delivered(&self) -> PeerFuture<'_, ()> {
        Box::pin(self.finish_and_wait())
    }
    fn open_channel(&self, open: AgentChannelOpen) -> PeerFuture<'_, Result<AgentChannel, OpenFailed>> {
        Box::pin(async move {
            let (mut send, mut recv) = self.conn.open_bi().await.map_err(|_| OpenFailed::NoStream)?;
            let stream = u64::from(send.id());
            write_msg(&mut send, &open).await.map_err(|_| OpenFailed::Gone)?;
            let reply: ChannelReply =
                match tokio::time::timeout(super::engineer::HEADER_TIMEOUT, read_msg(&mut recv)).await {
                    Ok(Ok(Some(r))) => r,
                    _ => {
                        let _ = send.reset(codes::PROTOCOL);
                        return Err(OpenFailed::NoAnswer);
                    }
                };
            let described = matches!(open.open.channel, ChannelKind::Files { .. } | ChannelKind::Logs { .. });
            let ready = match &reply {
                ChannelReply::Accepted if described => {
                    match tokio::time::timeout(super::engineer::HEADER_TIMEOUT, read_msg(&mut recv)).await {
                        Ok(Ok(Some(r))) => Some(r),
                        _ => None,
                    }
                }
                _ => None,
            };
            Ok(AgentChannel { stream, reply, ready, send: Box::new(send), recv: Box::new(recv) })
        })
    }
}

/// A person's QUIC connection, as the broker's [`Peer`]. Closing it is graceful: the
/// connection's task stops reading, delivers what was queued for the person (the ends of
/// their sessions), and then closes with the reason.
#[derive(Debug)]
pub(crate) struct QuicEngineer {
    pub conn: Connection,
    /// Set once the broker closed it.
    pub closing: tokio::sync::watch::Sender<Option<Close>>,
}

impl QuicEngineer {
    pub(crate) fn new(conn: Connection) -> Self {
        Self { conn, closing: tokio::sync::watch::Sender::new(None) }
    }
}

impl Peer for QuicEngineer {
    fn close(&self, why: Close) {
        self.closing.send_replace(Some(why));
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Writer {
    async fn write(&mut self, msg: &RelayToAgent) -> Result<(), PeerGone> {
        if self.gone {
            return Err(PeerGone);
        }
        match assist_proto::frame::encode(msg) {
            Ok(frame) if self.pending.is_empty() => self.pending = frame,
            Ok(frame) => self.pending.extend_from_slice(&frame),
            // A message that cannot be framed ends the stream, as a failed write does.
            Err(_) => self.gone = true,
        }
        while !self.gone && !self.pending.is_empty() {
            // Cancel-safe: what a completed write took is gone from `pending` before the
            // next await.
            match self.send.write(&self.pending).await {
                Ok(n) => drop(self.pending.drain(..n)),
                Err(_) => self.gone = true,
            }
        }
        if self.gone {
            self.pending = Vec::new();
            return Err(PeerGone);
        }
        // No buffer kept while the agent idles.
        self.pending = Vec::new();
        Ok(())
    }
}

/// The QUIC connection of a peer this module made, to open streams on it.
pub(crate) fn connection(peer: &dyn Peer) -> Option<Connection> {
    let any = peer.as_any();
    any.downcast_ref::<QuicEngineer>()
        .map(|e| e.conn.clone())
        .or_else(|| any.downcast_ref::<QuicAgent>().map(|a| a.conn.clone()))
}
