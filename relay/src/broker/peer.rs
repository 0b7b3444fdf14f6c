//! The seam between the broker and the transports: how the broker reaches a connected
//! party without knowing how it is connected.
//!
//! - An agent is an [`AgentPeer`]: the broker sends it control messages in order, asks its
//!   control channel to be finished and delivered at shutdown, and closes it with a
//!   [`Close`] reason (replaced by a newer connection, revoked).
//! - An engineer's connection is an [`EngineerLink`] (its control messages go through a
//!   queue that the transport drains) with a [`Peer`] handle to close it.
//! - A channel's bytes move between a [`ChunkSource`] and a [`ChunkSink`] (a QUIC stream's
//!   halves, or a browser's WebSocket), so that the splice (`crate::wire::splice`) is the
//!   same whatever the engineer's side is. [`AgentPeer::open_channel`] opens a channel on
//!   an agent for a transport that has no connection of the agent's kind (a browser's
//!   shell or files on a QUIC agent); the QUIC engineer's path opens its streams on the
//!   agent's connection itself (it gets it back from a peer with [`Peer::as_any`]), so
//!   that it can pass the reply on before the agent's `FileReady` arrives.
//!
//! QUIC implements it in `crate::wire`; tests implement it with queues
//! (`broker::tests`). Nothing here does I/O.

use assist_proto::files::FileReady;
use assist_proto::msg::{AgentChannelOpen, ChannelReply, RelayToAgent, RelayToEngineer};
use bytes::Bytes;
use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;

/// A future the seam returns; boxed so that peers can be trait objects.
pub type PeerFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why the broker closes a peer's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// A newer connection of the same agent took its place.
    Replaced,
    /// The agent's certificate was revoked.
    Revoked,
    /// The person was disabled or removed.
    AccessRevoked,
}

impl Close {
    /// What the peer is told.
    pub fn message(self) -> &'static str {
        match self {
            Close::Replaced => "replaced by a newer connection of the same agent",
            Close::Revoked => "agent certificate revoked",
            Close::AccessRevoked => "your access was revoked",
        }
    }
}

/// The peer's control channel is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the peer is gone")]
pub struct PeerGone;

/// Any connected party.
pub trait Peer: Send + Sync + 'static {
    /// Closes its connection, telling it why.
    fn close(&self, why: Close);
    /// The transport's own value, for the transport that made it.
    fn as_any(&self) -> &dyn Any;
}

/// A channel's stream failed (reset, or its connection went).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the stream is gone")]
pub struct StreamGone;

/// One direction of a channel, as a splice reads it.
pub trait ChunkSource: Send {
    /// Takes what has arrived, at least one chunk and at most `bufs.len()`, into `bufs`;
    /// `Ok(None)` once the sender finished.
    fn read_chunks<'a>(
        &'a mut self,
        bufs: &'a mut [Bytes],
    ) -> PeerFuture<'a, Result<Option<usize>, StreamGone>>;
    /// Nothing more is read: the sender is told to stop.
    fn stop(&mut self);
}

/// One direction of a channel, as a splice writes it.
pub trait ChunkSink: Send {
    /// Writes every chunk, waiting for the receiver's room (backpressure).
    fn write_all_chunks<'a>(&'a mut self, bufs: &'a mut [Bytes]) -> PeerFuture<'a, Result<(), StreamGone>>;
    /// Ends the direction after what was written.
    fn finish(&mut self);
    /// Ends the direction at once, discarding what was not delivered.
    fn reset(&mut self);
}

impl<T: ChunkSource + ?Sized> ChunkSource for Box<T> {
    fn read_chunks<'a>(
        &'a mut self,
        bufs: &'a mut [Bytes],
    ) -> PeerFuture<'a, Result<Option<usize>, StreamGone>> {
        (**self).read_chunks(bufs)
    }
    fn stop(&mut self) {
        (**self).stop();
    }
}

impl<T: ChunkSink + ?Sized> ChunkSink for Box<T> {
    fn write_all_chunks<'a>(&'a mut self, bufs: &'a mut [Bytes]) -> PeerFuture<'a, Result<(), StreamGone>> {
        (**self).write_all_chunks(bufs)
    }
    fn finish(&mut self) {
        (**self).finish();
    }
    fn reset(&mut self) {
        (**self).reset();
    }
}

/// A channel opened on an agent: the agent's answer and the stream's two halves.
pub struct AgentChannel {
    /// The stream's id on the agent's connection (what the agent names it by).
    pub stream: u64,
    pub reply: ChannelReply,
    /// For an accepted file or log channel, the agent's description of the data (read
    /// before anything else); `None` if it sent none (the admission refuses that).
    pub ready: Option<FileReady>,
    /// Towards the agent.
    pub send: Box<dyn ChunkSink>,
    /// From the agent.
    pub recv: Box<dyn ChunkSource>,
}

/// Why a channel could not be opened on an agent. The message is what the engineer sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenFailed {
    #[error("cannot open a stream to the agent")]
    NoStream,
    #[error("the agent went away")]
    Gone,
    #[error("the agent did not answer the channel request")]
    NoAnswer,
}

/// A connected agent.
pub trait AgentPeer: Peer {
    /// Sends `msg` on its control channel, after the messages sent before it. Returns
    /// once the transport has taken it (waits only while the agent does not read).
    fn send(&self, msg: RelayToAgent) -> PeerFuture<'_, Result<(), PeerGone>>;
    /// Finishes the control channel after what was sent and waits until the agent has
    /// received all of it (or went away). Callers bound the wait.
    fn finish_delivered(&self) -> PeerFuture<'_, ()>;
    /// Opens a channel stream, sends `open` (the request with the signed grant) and waits
    /// (bounded) for the agent's answer and, for an accepted file or log channel, its
    /// `FileReady`.
    fn open_channel(&self, open: AgentChannelOpen) -> PeerFuture<'_, Result<AgentChannel, OpenFailed>>;
}

/// An engineer's (or approver's, auditor's, admin's) connection, as far as sessions care.
#[derive(Clone)]
pub(crate) struct EngineerLink {
    pub conn_id: u64,
    pub tx: mpsc::Sender<RelayToEngineer>,
    pub peer: Arc<dyn Peer>,
}

/// The engineer connection a channel came from, to tell it what only it needs to hear.
#[derive(Clone)]
pub(crate) struct Opener {
    pub conn_id: u64,
    /// Weak, so that channels never keep a control stream's writer alive.
    pub tx: mpsc::WeakSender<RelayToEngineer>,
    pub peer: Arc<dyn Peer>,
}
