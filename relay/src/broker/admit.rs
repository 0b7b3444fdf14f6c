//! Admission: the one place that decides whether a channel may open, and what the transport
//! must do around it.
//!
//! - [`Relay::admit_channel`] for every channel a person asks for, whatever its kind:
//!   the kind is one a person may open and is well formed, what it declares is within the
//!   relay's limits, the session is live and the caller's, its grant verifies and covers
//!   the capability the channel needs now, the session is recorded if recording is
//!   mandatory, and the agent is connected. A session another relay of the cluster holds
//!   is refused naming that relay (`holder`), which admits the channel itself. A yes is an [`Admission`]: the channel is
//!   numbered and registered for revocation under the same lock as the grant check, so a
//!   revocation either refused it or finds it. A no is audited (`channel.refused`) here.
//! - [`Admission`]'s methods for what happens on the way: the agent's `FileReady` checked
//!   against the limits, the agent's refusal audited, the end gate of a file channel, the
//!   channel's opening in the recording.
//! - [`Relay::admit_agent_stream`] for the streams an agent opens (a command's stderr):
//!   only for an active session of that agent, to the connection that ran the command.
//!
//! Transport code reads the frames and splices what was admitted; it never decides. This
//! module reads no stream: it is given what the transport read.

use super::files::Account;
use super::grants::ChannelHandle;
use super::peer::{AgentPeer, Peer};
use super::policy::Principal;
use super::{LiveSession, Opener, Refusal, Relay};
use crate::recording::Recorder;
use assist_proto::files::{FileReady, OverLimit};
use assist_proto::grant::SignedGrant;
use assist_proto::ids::{AgentName, SessionId};
use assist_proto::msg::{ChannelKind, ChannelOpen};
use std::sync::Arc;
use tokio::sync::watch;

/// A channel the broker let through, for the transport to open towards the agent and
/// splice. Dropping it unregisters the channel.
pub(crate) struct Admission {
    pub session: Arc<LiveSession>,
    pub agent: AgentName,
    /// The connected agent, to open the channel on.
    pub peer: Arc<dyn AgentPeer>,
    /// The grant the agent checks again.
    pub grant: SignedGrant,
    /// The channel's number in the session's recording.
    pub channel: u32,
    pub kind: ChannelKind,
    /// Whether the opener asked for the channel's exit (`ChannelOpen::report_exit`).
    pub report_exit: bool,
    /// Turns true when the channel must stop (revocation, expiry, the session's end).
    pub handle: ChannelHandle,
    /// Where its bytes are recorded; `None` only when recording is off.
    pub recorder: Option<Recorder>,
    pub(super) who: Principal,
}

/// The client an engineer opened a channel from, as the recording names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Client {
    /// `assist`, over QUIC.
    Cli,
    /// The console's shell in a browser, over a WebSocket.
    Browser,
}

impl Client {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Client::Cli => "assist",
            Client::Browser => "browser",
        }
    }
}

/// Why a channel was not admitted. The message is what the caller is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChannelRefused {
    /// Standard error streams come from the agent only.
    #[error("a stderr channel is opened by the agent, not the engineer")]
    AgentOnly,
    /// The channel's request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The channel declares, or the agent describes, more than the relay's limits.
    #[error(transparent)]
    OverLimit(#[from] OverLimit),
    /// The session is not live, not the caller's, not approved, or its grant does not
    /// cover the channel now.
    #[error("{}", .0.message)]
    Session(Refusal),
    /// The session has no recorder, and recording is mandatory.
    #[error("session {0} is not recorded, and recording is mandatory")]
    Unrecorded(SessionId),
    /// The agent is not connected.
    #[error("agent {0} is offline")]
    AgentOffline(AgentName),
    /// The agent did not describe a file channel's data before sending it.
    #[error("the agent did not describe the file")]
    NotDescribed,
    /// Another relay of the cluster holds the session: the channel opens there
    /// ([`Relay::holder_elsewhere`]). Not a refusal of access: not audited.
    #[error("{}", .0.message)]
    HeldElsewhere(Refusal),
}

impl ChannelRefused {
    /// Whether the refusal is audited (`channel.refused`). An offline agent's is not: its
    /// going is audited already.
    fn audited(&self) -> bool {
        !matches!(self, ChannelRefused::AgentOffline(_) | ChannelRefused::HeldElsewhere(_))
    }

    /// The relay holding the session, when it is another one of the cluster.
    pub(crate) fn held_by(&self) -> Option<assist_proto::msg::HeldBy> {
        match self {
            ChannelRefused::HeldElsewhere(r) => r.held_by.clone(),
            _ => None,
        }
    }
}

/// Why the relay does not forward a stream the agent opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamRefused {
    /// Not a stream an agent may open.
    Protocol,
    /// No active session of this agent by that id.
    NoSession,
    /// The session cannot record it (recording mandatory).
    Unrecorded,
}

/// A stream the agent opened, let through towards `to`.
pub(crate) struct AgentStream {
    pub session: Arc<LiveSession>,
    /// The connection it goes to: the one that ran the command, or the session's own.
    pub to: Arc<dyn Peer>,
    /// What the engineer is told the stream is.
    pub open: ChannelOpen,
}

/// A started agent stream: its recording channel and its registration.
pub(crate) struct AgentStreamStarted {
    pub channel: u32,
    pub recorder: Option<Recorder>,
    pub handle: ChannelHandle,
}

impl Relay {
    /// Decides whether `who` may open the channel `open` asks for (see the module docs).
    /// A refusal is audited before it is returned.
    pub(crate) async fn admit_channel(
        &self,
        who: &Principal,
        open: &ChannelOpen,
    ) -> Result<Admission, ChannelRefused> {
        let admitted = self.admission(who, open).await;
        if let Err(refused) = &admitted
            && refused.audited()
        {
            self.audit_refusal(who, &open.session, &open.channel, &refused.to_string()).await;
        }
        admitted
    }

    async fn admission(&self, who: &Principal, open: &ChannelOpen) -> Result<Admission, ChannelRefused> {
        if matches!(open.channel, ChannelKind::Stderr | ChannelKind::StderrOf { .. }) {
            return Err(ChannelRefused::AgentOnly);
        }
        open.channel.validate().map_err(|e| ChannelRefused::BadRequest(e.to_string()))?;
        self.check_declared(&open.channel)?;
        if let Some(there) = self.holder_elsewhere(who, &open.session).await {
            return Err(ChannelRefused::HeldElsewhere(there));
        }
        let cap = open.channel.required_capability();
        let (session, agent, grant, channel, handle) =
            self.grant_for_channel(who, &open.session, &cap).await.map_err(ChannelRefused::Session)?;
        let recorder = session.recorder();
        if recorder.is_none() && self.cfg.recording_mandatory {
            return Err(ChannelRefused::Unrecorded(open.session.clone()));
        }
        let peer = self.agent_tx(&agent).ok_or_else(|| ChannelRefused::AgentOffline(agent.clone()))?;
        Ok(Admission {
            session,
            agent,
            peer,
            grant,
            channel,
            kind: open.channel.clone(),
            report_exit: open.report_exit,
            handle,
            recorder,
            who: who.clone(),
        })
    }

    /// For a stream the agent opened with header `open`: where it goes, if it is a stderr
    /// stream of an active session of this agent.
    pub(crate) async fn admit_agent_stream(
        &self,
        agent: &AgentName,
        open: ChannelOpen,
    ) -> Result<AgentStream, StreamRefused> {
        let of = match open.channel {
            ChannelKind::Stderr => None,
            ChannelKind::StderrOf { stream } => Some(stream),
            _ => return Err(StreamRefused::Protocol),
        };
        let session = self.session_of_agent(agent, &open.session).await.ok_or(StreamRefused::NoSession)?;
        if session.recorder().is_none() && self.cfg.recording_mandatory {
            return Err(StreamRefused::Unrecorded);
        }
        if let Some((to, opened_as)) = of.and_then(|stream| self.reporting_stderr(&session, stream)) {
            let channel = ChannelKind::StderrOf { stream: opened_as };
            let open = ChannelOpen { session: open.session, report_exit: false, channel };
            return Ok(AgentStream { session, to, open });
        }
        let to = of.and_then(|stream| self.stderr_to(&session, stream));
        let to = to.unwrap_or_else(|| session.engineer.peer.clone());
        // Engineers that did not ask for `report_exit` know one kind of standard error stream.
        let open = ChannelOpen { session: open.session, report_exit: false, channel: ChannelKind::Stderr };
        Ok(AgentStream { session, to, open })
    }
}

impl Admission {
    /// Whether the agent describes the data (`FileReady`) before any is spliced.
    pub(crate) fn wants_ready(&self) -> bool {
        matches!(self.kind, ChannelKind::Files { .. } | ChannelKind::Logs { .. })
    }

    /// Checks the agent's description of a file channel against the relay's limits. A
    /// refusal is audited.
    pub(crate) async fn check_ready(
        &self,
        relay: &Relay,
        ready: Option<&FileReady>,
    ) -> Result<(), ChannelRefused> {
        let checked = match ready {
            Some(ready) => relay.check_ready(&self.kind, ready).map_err(ChannelRefused::OverLimit),
            None => Err(ChannelRefused::NotDescribed),
        };
        if let Err(refused) = &checked {
            self.refused(relay, &refused.to_string()).await;
        }
        checked
    }

    /// Audits a refusal of this channel after its admission (over a limit, or refused by
    /// the agent).
    pub(crate) async fn refused(&self, relay: &Relay, reason: &str) {
        relay.audit_refusal(&self.who, &self.session.id, &self.kind, reason).await;
    }

    /// Registers the agent's stream of this channel before the agent can run anything on
    /// it: an exec channel opened from another connection than the session's gets its
    /// stderr and exit (`Relay::exec_opened`).
    /// A shell channel opened with `report_exit` (as stream `opened_as` of the opener)
    /// gets them too, from any connection ([`Relay::reporting_opened`]).
    pub(crate) fn agent_stream(&self, relay: &Relay, stream: u64, opener: &Opener, opened_as: Option<u64>) {
        match (&self.kind, opened_as) {
            (ChannelKind::Exec { .. }, _) => relay.exec_opened(&self.session, stream, opener.clone()),
            (ChannelKind::Shell { .. }, Some(opened_as)) if self.report_exit => {
                relay.reporting_opened(&self.session, stream, opener.clone(), opened_as)
            }
            _ => {}
        }
    }

    /// For a file channel, the gate that holds its end from the engineer until the agent
    /// has accounted for it.
    pub(crate) fn end_gate(&self, stream: u64) -> Option<watch::Receiver<bool>> {
        self.wants_ready().then(|| self.session.file_stream(stream, self.channel, Account::of(&self.kind)))
    }

    /// Writes the channel's opening into the recording, with the client the engineer used.
    /// An error means the recorder failed: nothing may be spliced.
    pub(crate) async fn record_open(
        &self,
        stream: u64,
        ready: Option<&FileReady>,
        client: Client,
    ) -> Result<(), ()> {
        let Some(rec) = &self.recorder else { return Ok(()) };
        let mut described = serde_json::json!({ "kind": self.kind.name(), "stream": stream, "request": &self.kind, "ready": ready, "client": client.name() });
        if let Some(note) = super::forward::recording_note(&self.kind) {
            described["note"] = note.into();
        }
        rec.channel_open(self.channel, described).await.map_err(|_| ())?;
        if let ChannelKind::Shell { pty: Some(pty), .. } = &self.kind {
            let _ = rec.resize(self.channel, pty.cols, pty.rows).await;
        }
        Ok(())
    }

    /// Writes the channel's close into the recording.
    pub(crate) async fn record_close(&self, detail: serde_json::Value) {
        if let Some(rec) = &self.recorder {
            let _ = rec.channel_close(self.channel, detail).await;
        }
    }
}

impl AgentStream {
    /// Numbers the stream in the session's recording, records its opening and registers it
    /// for revocation. An error means the recorder failed.
    pub(crate) async fn start(&self, stream: u64) -> Result<AgentStreamStarted, ()> {
        let channel = self.session.next_channel();
        let recorder = self.session.recorder();
        if let Some(rec) = &recorder {
            let described = serde_json::json!({ "kind": "stderr", "stream": stream });
            rec.channel_open(channel, described).await.map_err(|_| ())?;
        }
        let handle = self.session.register_channel(channel, self.open.channel.required_capability());
        Ok(AgentStreamStarted { channel, recorder, handle })
    }
}
