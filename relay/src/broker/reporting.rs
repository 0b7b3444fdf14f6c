//! Shell channels whose exit goes to the connection that opened them (`ChannelOpen`'s
//! `report_exit`, which `assist ssh-proxy` sets for every SSH channel) instead of ending
//! the session: one SSH connection then runs many commands, one after another or at once.
//!
//! - Registered by the agent's stream id before the agent can run anything on it.
//! - The command's stderr goes to that connection as `StderrOf` the stream as the
//!   connection opened it, so concurrent commands' stderr stay apart.
//! - Its exit is audited and told to that connection alone
//!   ([`RelayToEngineer::ChannelExited`]); the session goes on, and ends as any session
//!   does (the requesting command finishing or leaving, the grant's end, an end by a person).
//!
//! Exec channels of `assist exec --session` follow their own rule ([`super::sessions`]).

use super::{LiveSession, Opener, Relay};
use crate::audit::{Action, agent_actor};
use assist_proto::ids::{AgentName, SessionId};
use assist_proto::msg::RelayToEngineer;
use serde_json::json;
use tracing::info;

/// Who hears of a reporting channel: the opener, and the channel's stream as it opened it.
pub(crate) struct Reporting {
    pub opener: Opener,
    pub stream: u64,
}

impl Relay {
    /// Registers the shell channel on agent stream `stream`, opened as `opened_as` by
    /// `opener` with `report_exit`.
    pub(crate) fn reporting_opened(&self, s: &LiveSession, stream: u64, opener: Opener, opened_as: u64) {
        s.reporting.lock().expect("reporting lock").insert(stream, Reporting { opener, stream: opened_as });
    }

    /// For a reporting channel on agent stream `stream`: where its stderr goes, and as
    /// which stream.
    pub(crate) fn reporting_stderr(
        &self,
        s: &LiveSession,
        stream: u64,
    ) -> Option<(std::sync::Arc<dyn super::peer::Peer>, u64)> {
        s.reporting.lock().expect("reporting lock").get(&stream).map(|r| (r.opener.peer.clone(), r.stream))
    }

    /// The agent reports that the channel on `stream` exited: if it is a reporting channel,
    /// audited and told to its opener (true); false otherwise.
    pub(crate) async fn reporting_exited(
        &self,
        agent: &AgentName,
        id: &SessionId,
        stream: u64,
        code: Option<i32>,
        signal: Option<String>,
    ) -> bool {
        let Some(s) = self.session(id) else { return false };
        if &s.agent != agent {
            return false;
        }
        let Some(r) = s.reporting.lock().expect("reporting lock").remove(&stream) else {
            return false;
        };
        let info = s.core.lock().await.info();
        let event = super::audit::session_event(&agent_actor(agent), Action::CommandExited, &info)
            .detail(json!({ "code": code, "signal": signal, "stream": stream }));
        let _ = self.audit(event).await;
        s.span.in_scope(|| info!(stream, ?code, ?signal, "command exited; session continues"));
        if let Some(tx) = r.opener.tx.upgrade() {
            let msg = RelayToEngineer::ChannelExited { session: id.clone(), stream: r.stream, code, signal };
            let _ = tx.send(msg).await;
        }
        true
    }
}
