//! The queue of control messages to one online agent.
//!
//! Messages are boxed in the queue: tokio's channel allocates its slots in blocks of 32
//! up front, and a `RelayToAgent` is a few hundred bytes, so unboxed slots cost each
//! connected agent about 10 KB while it idles with nothing queued. Boxed, the block is
//! 32 pointers and a message costs memory only while it waits.
//!
//! It does not write to the agent's stream; the agent's connection task drains [`AgentRx`].

use assist_proto::msg::RelayToAgent;
use tokio::sync::mpsc;

/// Sends control messages to one agent. Clones share the queue.
#[derive(Clone, Debug)]
pub(crate) struct AgentTx(mpsc::Sender<Box<RelayToAgent>>);

/// The receiving end, read by the agent's writer task.
pub(crate) type AgentRx = mpsc::Receiver<Box<RelayToAgent>>;

/// The agent went away: its queue is closed.
#[derive(Debug)]
pub(crate) struct AgentGone;

impl AgentTx {
    /// Queues `msg`, waiting while `capacity` messages are already queued.
    pub(crate) async fn send(&self, msg: RelayToAgent) -> Result<(), AgentGone> {
        self.0.send(Box::new(msg)).await.map_err(|_| AgentGone)
    }
}

/// A queue of at most `capacity` messages.
pub(crate) fn channel(capacity: usize) -> (AgentTx, AgentRx) {
    let (tx, rx) = mpsc::channel(capacity);
    (AgentTx(tx), rx)
}
