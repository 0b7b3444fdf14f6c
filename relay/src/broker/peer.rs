//! The seam between the broker and the transports: how the broker reaches a connected
//! party without knowing how it is connected.
//!
//! - An agent is an [`AgentPeer`]: the broker sends it control messages in order, asks its
//!   control channel to be finished and delivered at shutdown, and closes it with a
//!   [`Close`] reason (replaced by a newer connection, revoked).
//! - An engineer's connection is an [`EngineerLink`] (its control messages go through a
//!   queue that the transport drains) with a [`Peer`] handle to close it.
//! - Channels are not opened through the seam: the transport that admitted a channel
//!   (`broker::admit`) opens its streams itself and gets its own connection back from a
//!   peer with [`Peer::as_any`]. A transport that must reach a peer of another kind (a
//!   browser's shell on a QUIC agent) adds a byte-stream `open_channel` here.
//!
//! QUIC implements it in `crate::wire`; tests implement it with queues
//! (`broker::tests`). Nothing here does I/O.

use assist_proto::msg::{RelayToAgent, RelayToEngineer};
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

/// A connected agent.
pub trait AgentPeer: Peer {
    /// Sends `msg` on its control channel, after the messages sent before it. Returns
    /// once the transport has taken it (waits only while the agent does not read).
    fn send(&self, msg: RelayToAgent) -> PeerFuture<'_, Result<(), PeerGone>>;
    /// Finishes the control channel after what was sent and waits until the agent has
    /// received all of it (or went away). Callers bound the wait.
    fn finish_delivered(&self) -> PeerFuture<'_, ()>;
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
