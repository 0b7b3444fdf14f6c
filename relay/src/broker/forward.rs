//! The broker's account of forwarded TCP connections (`forward` channels): what their
//! recording says about their bytes, and their audit events when they open and close.
//!
//! A forward channel is admitted like any other (`broker::admit`, capability
//! `forward:HOST:PORT`); nothing here decides. The transport reports the facts (the
//! engineer connection's address, bytes each way, how long it lasted) and these methods
//! turn them into `forward.opened` and `forward.closed` events. Other kinds are not
//! audited here.

use super::Relay;
use super::admit::Admission;
use crate::audit::{Action, AuditEvent};
use assist_proto::msg::ChannelKind;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;

/// What a channel's recorded description adds about its bytes, for kinds whose bytes are
/// not the assist protocol's own.
pub(crate) fn recording_note(kind: &ChannelKind) -> Option<&'static str> {
    matches!(kind, ChannelKind::Forward { .. })
        .then_some("forwarded TCP; contents as sent (opaque if the protocol encrypts them)")
}

/// A forwarded connection's figures at its close.
pub(crate) struct Closed {
    pub stream: u64,
    /// The address of the engineer connection it came over.
    pub peer: SocketAddr,
    /// Engineer → agent bytes.
    pub bytes_in: u64,
    /// Agent → engineer bytes.
    pub bytes_out: u64,
    pub duration: Duration,
    /// How each direction ended, as the splice says it.
    pub ends: (String, String),
}

impl Admission {
    fn target(&self) -> Option<&str> {
        match &self.kind {
            ChannelKind::Forward { target } => Some(target),
            _ => None,
        }
    }

    async fn forward_event(&self, relay: &Relay, action: Action, detail: Value) {
        let org = self.session.core.lock().await.info.agent_org.clone();
        let event = AuditEvent::new(self.who.user.as_str(), action)
            .org(&org)
            .target(self.agent.as_str())
            .session(&self.session.id)
            .detail(detail);
        // Logged by `audit` if it cannot be stored; the connection is on the record anyway
        // (the recording has its bytes).
        let _ = relay.audit(event).await;
    }

    /// Audits a forwarded connection's opening (`forward.opened`), once the agent has
    /// connected to its target; nothing for other kinds.
    pub(crate) async fn audit_opened(&self, relay: &Relay, stream: u64, peer: SocketAddr) {
        let Some(target) = self.target() else { return };
        let detail =
            json!({ "target": target, "channel": self.channel, "stream": stream, "peer": peer.to_string() });
        self.forward_event(relay, Action::ForwardOpened, detail).await;
    }

    /// Audits a forwarded connection's close (`forward.closed`) with its bytes each way
    /// and duration; nothing for other kinds.
    pub(crate) async fn audit_closed(&self, relay: &Relay, closed: Closed) {
        let Some(target) = self.target() else { return };
        let detail = json!({
            "target": target,
            "channel": self.channel,
            "stream": closed.stream,
            "peer": closed.peer.to_string(),
            "bytes_in": closed.bytes_in,
            "bytes_out": closed.bytes_out,
            "duration_ms": closed.duration.as_millis() as u64,
            "in_end": closed.ends.0,
            "out_end": closed.ends.1,
        });
        self.forward_event(relay, Action::ForwardClosed, detail).await;
    }
}
