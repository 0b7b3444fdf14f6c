//! Control messages to one online agent: written straight to its control stream by the
//! task that sends them, one message at a time.
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

use assist_proto::msg::RelayToAgent;
use quinn::SendStream;
use std::sync::Arc;
use tokio::sync::Mutex;

/// Sends control messages to one agent. Clones share the stream.
#[derive(Clone, Debug)]
pub(crate) struct AgentTx(Arc<Mutex<Writer>>);

#[derive(Debug)]
struct Writer {
    send: SendStream,
    /// Bytes of a frame whose send was cancelled, written before anything else.
    pending: Vec<u8>,
    /// Set when a write failed or the connection's task closed the stream.
    gone: bool,
}

/// The agent went away: its stream is closed.
#[derive(Debug)]
pub(crate) struct AgentGone;

impl AgentTx {
    pub(crate) fn new(send: SendStream) -> Self {
        Self(Arc::new(Mutex::new(Writer { send, pending: Vec::new(), gone: false })))
    }

    /// Writes `msg` after the messages sent before it.
    pub(crate) async fn send(&self, msg: RelayToAgent) -> Result<(), AgentGone> {
        self.0.lock().await.write(&msg).await
    }

    /// Writes `first` as the stream's first message, with `register` run just before
    /// while the stream is held: whoever `register` lets send (by publishing this
    /// `AgentTx`) is written after `first`.
    pub(crate) async fn send_first(
        &self,
        first: &RelayToAgent,
        register: impl FnOnce(),
    ) -> Result<(), AgentGone> {
        let mut writer = self.0.lock().await;
        register();
        writer.write(first).await
    }

    /// Finishes the stream: later sends fail with [`AgentGone`]. If a send is under way
    /// (the agent is not reading), the stream finishes when the last sender lets go of it.
    pub(crate) fn close(&self) {
        if let Ok(mut writer) = self.0.try_lock() {
            writer.gone = true;
            writer.pending = Vec::new();
            let _ = writer.send.finish();
        }
    }

    /// Finishes the stream after what was sent before, and waits until the agent has
    /// acknowledged all of it (or stopped the stream, or the connection went): a relay
    /// closing its endpoint right after would otherwise discard the last messages (the
    /// sessions' ends) still in flight.
    pub(crate) async fn finish_delivered(&self) {
        let mut writer = self.0.lock().await;
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

impl Writer {
    async fn write(&mut self, msg: &RelayToAgent) -> Result<(), AgentGone> {
        if self.gone {
            return Err(AgentGone);
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
            return Err(AgentGone);
        }
        // No buffer kept while the agent idles.
        self.pending = Vec::new();
        Ok(())
    }
}
