//! What the control loop and every channel server share: the agent's per-connection
//! state, the refusal of a channel stream, the running digest of each direction of a
//! stream, and the agent's countersignature of those digests.
//!
//! It sits below [`super::channel`], [`super::files`] and [`super::logs`] so that none of
//! them imports another's helpers (no import loop). It serves no channel itself and
//! decides nothing about grants (see [`super::grants`]).

use super::exec::Scripts;
use super::grants::Grants;
use assist_net::write_msg;
use assist_proto::files::TransferLimits;
use assist_proto::ids::{AgentName, SessionId};
use assist_proto::msg::{AgentToRelay, ChannelReply, StreamDigest};
use aws_lc_rs::digest::{Context, SHA256};
use quinn::SendStream;
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::warn;

/// What the agent knows about sessions, shared by the control loop and the channels.
pub(crate) struct AgentState {
    pub name: AgentName,
    /// The agent's own record of each grant, and the processes they cover.
    pub grants: Arc<Grants>,
    pub control: mpsc::Sender<AgentToRelay>,
    /// Signs the agent's digests of each channel (its countersignature).
    pub signing_key: aws_lc_rs::signature::EcdsaKeyPair,
    pub limits: TransferLimits,
    pub scripts: Arc<Scripts>,
    /// The agent's terminal, when it shows sessions (`run --show-sessions`).
    pub show: Option<Arc<super::show::Shown>>,
    /// Where desktops come from, if this agent serves them.
    pub desktop: Option<Arc<dyn super::desktop::DesktopHost>>,
}

/// A running SHA-256 and byte count of one direction of one stream.
pub(crate) struct Digest {
    stream: u64,
    direction: &'static str,
    bytes: u64,
    ctx: Context,
}

impl Digest {
    pub(crate) fn new(stream: u64, direction: &'static str) -> Self {
        Self { stream, direction, bytes: 0, ctx: Context::new(&SHA256) }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        self.ctx.update(data);
    }

    pub(crate) fn finish(self) -> StreamDigest {
        StreamDigest {
            stream: self.stream,
            direction: self.direction.to_owned(),
            bytes: self.bytes,
            sha256: hex::encode(self.ctx.finish().as_ref()),
        }
    }
}

/// Signs the agent's digests of a finished channel and sends them to the relay.
pub(crate) async fn countersign(state: &AgentState, session: &SessionId, digests: Vec<StreamDigest>) {
    let message = assist_proto::msg::countersign_message(session, &state.name, &digests);
    let rng = aws_lc_rs::rand::SystemRandom::new();
    match state.signing_key.sign(&rng, &message) {
        Ok(sig) => {
            let signature = hex::encode(sig.as_ref());
            let _ = state
                .control
                .send(AgentToRelay::Countersign { session: session.clone(), digests, signature })
                .await;
        }
        Err(e) => warn!(%session, error = %e, "cannot countersign"),
    }
}

pub(crate) async fn refuse(send: &mut SendStream, reason: String) {
    warn!(reason = %assist_proto::text::line(&reason), "channel refused");
    let _ = write_msg(send, &ChannelReply::refused(reason)).await;
    let _ = send.finish();
}
