//! The one way a browser's channel is opened (shell, desktop, clipboard, files): admitted
//! by `Relay::admit_channel`, opened on the agent through the seam
//! (`AgentPeer::open_channel`), the agent's answer (and, for a file channel, its
//! description against the relay's limits) checked, and its opening recorded with the
//! client `browser`. Each refusal after admission is audited as `channel.refused`.
//!
//! It splices nothing and decides nothing: the caller moves the bytes; every check is the
//! broker's.

use crate::broker::peer::AgentChannel;
use crate::broker::policy::Principal;
use crate::broker::{Admission, ChannelRefused, Client, Opener, Relay};
use assist_proto::msg::{AgentChannelOpen, ChannelOpen, ChannelReply};
use tracing::Instrument;

/// Why a browser's channel did not open. Nothing was spliced.
#[derive(Debug, thiserror::Error)]
pub(super) enum OpenFailed {
    /// Not admitted, or the agent's description was over a limit (the message says why).
    #[error("{0}")]
    Refused(ChannelRefused),
    /// The agent could not be reached on a new stream.
    #[error("{0}")]
    Unreachable(String),
    /// The agent refused the channel, for this reason.
    #[error("the agent refused: {0}")]
    AgentRefused(String),
    /// The recorder failed, so nothing may pass.
    #[error("the session could not be recorded")]
    Unrecorded,
}

/// An admitted channel, open on the agent and recorded.
pub(super) struct Opened {
    pub admitted: Admission,
    pub ch: AgentChannel,
}

/// Admits and opens `open` for `who`. `opener` is the page's connection, for the channels
/// whose exit goes back to it (`Admission::agent_stream`).
pub(super) async fn open_for_browser(
    relay: &Relay,
    who: &Principal,
    open: ChannelOpen,
    opener: Option<&Opener>,
) -> Result<Opened, OpenFailed> {
    let admitted = relay.admit_channel(who, &open).await.map_err(OpenFailed::Refused)?;
    let span = admitted.session.span.clone();
    async move {
        let agent = admitted.agent.clone();
        let header = AgentChannelOpen { open, grant: admitted.grant.clone() };
        let mut ch = admitted
            .peer
            .open_channel(header)
            .await
            .map_err(|e| OpenFailed::Unreachable(format!("agent {agent}: {e}")))?;
        if let Some(opener) = opener {
            admitted.agent_stream(relay, ch.stream, opener, None);
        }
        if let ChannelReply::Refused { reason, .. } = &ch.reply {
            admitted.refused(relay, &format!("refused by the agent: {reason}")).await;
            return Err(OpenFailed::AgentRefused(reason.clone()));
        }
        if admitted.wants_ready()
            && let Err(refused) = admitted.check_ready(relay, ch.ready.as_ref()).await
        {
            ch.send.reset();
            ch.recv.stop();
            return Err(OpenFailed::Refused(refused));
        }
        if admitted.record_open(ch.stream, ch.ready.as_ref(), Client::Browser).await.is_err() {
            ch.send.reset();
            ch.recv.stop();
            return Err(OpenFailed::Unrecorded);
        }
        Ok(Opened { admitted, ch })
    }
    .instrument(span)
    .await
}
