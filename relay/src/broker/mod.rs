//! The broker: live agents, live sessions, consent, and the rules that connect them.
//!
//! Flow of one session:
//!
//! - an engineer's `RequestSession` is checked (role, supported organisation, agent online),
//!   stored as `requested`, and shown to whoever must consent: the customer at the agent
//!   (consent mode `prompt`, via a `ConsentRequest`) or an approver of the agent's
//!   organisation (`assist requests`);
//! - a request nobody answers is expired at its deadline;
//! - approval creates a [`SignedGrant`], sent to the agent (its own record) and used by the
//!   relay for every channel stream; no stream is spliced before it exists;
//! - the session ends when its shell exits, either side disconnects, or an approver or admin
//!   ends it; every end is stored with its reason and told to both sides.
//!
//! The broker knows no transport: it reaches connected parties through [`peer`], and
//! transport code (`crate::wire`) only reads frames and splices what [`admit`] let through;
//! every decision is made here or in [`policy`]. State changes are written to the store, each with its audit
//! event in the same transaction, before anyone is told about them. Events without a state
//! change (refusals) are appended on their own ([`Relay::audit`]).

mod admit;
mod agents;
mod audit;
pub mod bus;
mod changes;
mod files;
mod followers;
mod forward;
mod grants;
mod holder;
mod login;
mod lost;
mod people;
pub mod policy;
mod reattach;
mod recording;
mod refusals;
mod reporting;
mod sessions;
#[cfg(test)]
mod tests;
mod timers;
mod watching;
pub(crate) use admit::{Admission, AgentStreamStarted, ChannelRefused, Client, StreamRefused};
pub(crate) use agents::{AgentRefused, Hello};
pub(crate) use forward::Closed as ForwardClosed;
pub(crate) use grants::Approval;
pub(crate) use sessions::{Answerer, NewSession};
pub(crate) use watching::Watching;
pub mod peer;
pub mod throttle;
pub mod windows;

use crate::audit::{Action, AuditEvent, RELAY_ACTOR, agent_actor};
use crate::auth::TokenKeys;
use crate::store::{AgentRow, Store, StoreError};
use assist_certs::Ca;
use assist_proto::caps::{Capability, ConsentMode, Priority, Role};
use assist_proto::grant::{Grant, SignedGrant};
use assist_proto::ids::{AgentName, OrgName, SessionId};
use assist_proto::msg::{AgentInfo, ErrorCode, RelayToAgent, RelayToEngineer, SessionInfo};
use assist_proto::session::{EndReason, SessionMachine, SessionState, TransitionError};
use audit::session_event;
use aws_lc_rs::signature::Ed25519KeyPair;
use peer::{AgentPeer, Close};
pub(crate) use peer::{EngineerLink, Opener};
use policy::Principal;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{Instrument, info, warn};

/// Settings of the broker.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// How long a request waits for consent before it is denied. Default 5 minutes.
    pub consent_timeout: Duration,
    /// The same for P0 and P1 tickets, which should not wait long. Default 2 minutes.
    pub urgent_consent_timeout: Duration,
    /// Lifetime of engineer tokens. Default 8 hours (a working day).
    pub token_ttl: Duration,
    /// The longest grant an engineer may ask for (and so the longest any approval lasts).
    /// Default 4 hours.
    pub grant_ttl: Duration,
    /// How long a grant lasts when the engineer does not say. Default 1 hour.
    pub default_grant: Duration,
    /// Whether a session may run only while it is recorded. Default true: a session whose
    /// recorder fails is ended, never continued unrecorded.
    pub recording_mandatory: bool,
    /// Where recordings are written. `None` records nothing (only for tests of the broker
    /// itself; with `recording_mandatory` every channel is then refused).
    pub recordings: Option<Arc<dyn crate::recording::RecordingStore>>,
    /// Largest file transfer. Default 2 GiB and 10,000 files.
    pub transfer_limits: assist_proto::files::TransferLimits,
    /// When failed logins make the next attempts wait.
    pub login_throttle: throttle::ThrottleConfig,
    /// Within this window, repeated refusals of one kind are counted and audited as one
    /// event (see `refusals`). Default 1 minute.
    pub refusal_window: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            consent_timeout: Duration::from_secs(300),
            urgent_consent_timeout: Duration::from_secs(120),
            token_ttl: Duration::from_secs(8 * 3600),
            grant_ttl: Duration::from_secs(4 * 3600),
            default_grant: Duration::from_secs(3600),
            recording_mandatory: true,
            recordings: None,
            transfer_limits: Default::default(),
            login_throttle: Default::default(),
            refusal_window: Duration::from_secs(60),
        }
    }
}

/// An error to show the caller: a code to match on and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
    /// Another relay of the cluster holds the session: the command goes there
    /// ([`Relay::holder_elsewhere`]).
    pub held_by: Option<assist_proto::msg::HeldBy>,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), held_by: None }
    }
    pub fn to_engineer(&self) -> RelayToEngineer {
        RelayToEngineer::Error {
            code: self.code,
            message: self.message.clone(),
            held_by: self.held_by.clone(),
        }
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        // The details go to the log; the caller learns only that it failed inside, or
        // that the database is out of reach for now.
        warn!(error = %e, "store error");
        if e.is_unreachable() {
            return Refusal::new(
                ErrorCode::Internal,
                "the relay cannot reach its database just now: try again in a moment, or through another relay of the cluster",
            );
        }
        Refusal::new(ErrorCode::Internal, "internal error in the relay (see its log)")
    }
}

/// An online agent.
pub(crate) struct LiveAgent {
    pub conn_id: u64,
    /// When its presence on this relay was stored (`Store::agent_connected`), which names
    /// this connection's row.
    pub since: i64,
    pub org: OrgName,
    pub consent: ConsentMode,
    pub peer: Arc<dyn AgentPeer>,
    /// The agent's allowlist of diagnostic script names, if it published one.
    pub scripts: Option<Box<[String]>>,
    /// Whether the agent said it can serve a desktop (it has a display).
    pub desktop: bool,
    /// Whether it keeps a connection to every relay of a cluster (and is told when they
    /// change).
    pub cluster: bool,
}

/// The script names an agent published, if they are all plain names (else none: the
/// agent still refuses what it does not have, only later).
pub(crate) fn published_scripts(agent: &AgentName, names: Option<Vec<String>>) -> Option<Box<[String]>> {
    let names = names?;
    let plain = names.len() <= 1000
        && names.iter().all(|n| Capability::Exec { scripts: vec![n.clone()] }.validate().is_ok());
    if !plain {
        warn!(%agent, "the agent published script names that are not plain names; not checked before consent");
        return None;
    }
    Some(names.into_boxed_slice())
}

/// A live session's mutable part. Its state is `machine`'s alone: `info` holds the rest
/// of what is shown and stored, and its `state` field is never written after the request
/// (it stays `requested`); read [`SessionCore::info`] or [`SessionCore::state`].
struct SessionCore {
    info: SessionInfo,
    machine: SessionMachine,
    /// The current grant as signed (sent with every channel), and as read: the relay
    /// signed it, so it never verifies its own signature to read it back.
    grant: Option<SignedGrant>,
    current: Option<Grant>,
    revision: u32,
    consent: ConsentMode,
    exit: Option<EndReason>,
    /// Who asked for the pending escalation, to be told the answer.
    escalator: Option<mpsc::Sender<RelayToEngineer>>,
    /// Whom the request waits for, as the engineer was told.
    waiting_for: Option<String>,
}

impl SessionCore {
    /// The session as shown and stored: `info` with the machine's state.
    fn info(&self) -> SessionInfo {
        SessionInfo { state: self.machine.state(), ..self.info.clone() }
    }

    fn state(&self) -> SessionState {
        self.machine.state()
    }
}

/// A session that is not over yet.
pub(crate) struct LiveSession {
    pub id: SessionId,
    pub agent: AgentName,
    pub span: tracing::Span,
    core: tokio::sync::Mutex<SessionCore>,
    pub engineer: EngineerLink,
    /// Set when the engineer's requesting command left without ending the session
    /// (`Detach`): its connection going away then no longer ends the session.
    pub detached: std::sync::atomic::AtomicBool,
    /// Turns true when the session ends; splices reset their streams on it.
    pub ended: watch::Sender<bool>,
    /// Open agent → engineer splices, so an exit is reported after the output.
    pub open_outputs: watch::Sender<u32>,
    /// The session's recorder, from approval on.
    recorder: std::sync::OnceLock<crate::recording::Recorder>,
    /// Channel numbers handed out so far.
    channels: std::sync::atomic::AtomicU32,
    /// The agent's countersignatures, collected for the seal.
    countersignatures: Mutex<Vec<crate::recording::recorder::AgentCountersignature>>,
    /// Open channels by number, so that a grant change closes what it no longer covers.
    open: Mutex<HashMap<u32, grants::OpenChannel>>,
    /// Exec channels opened by a command that does not own the session (`assist exec
    /// --session`), by the agent's stream id: their exit is told to that command only.
    execs: Mutex<HashMap<u64, Opener>>,
    /// Shell channels opened with `report_exit`, by the agent's stream id ([`reporting`]).
    reporting: Mutex<HashMap<u64, reporting::Reporting>>,
    /// Other connections of its engineer told of its grant changes and end
    /// ([`followers`]), by connection id.
    followers: Mutex<HashMap<u64, mpsc::WeakSender<RelayToEngineer>>>,
    /// Shell channels (by the agent's stream id) that ended because the browser's page
    /// went away: their exit does not end the session, which waits to be picked up.
    left_shells: Mutex<std::collections::HashSet<u64>>,
    /// File and log channels by the agent's stream id, for transfer reports and for
    /// holding each one's end until the agent accounted for it.
    file_streams: Mutex<HashMap<u64, files::FileStream>>,
    /// Its timers (consent, escalation, expiry, lapse, drain, recorder watch), aborted
    /// when it ends ([`timers`]).
    timers: Mutex<Vec<tokio::task::AbortHandle>>,
    /// Its shell output, for watchers ([`watching`]).
    screen: Arc<watching::Screen>,
}

impl LiveSession {
    pub(crate) fn recorder(&self) -> Option<crate::recording::Recorder> {
        self.recorder.get().cloned()
    }

    /// The next channel number (1, 2, …) within this session.
    pub(crate) fn next_channel(&self) -> u32 {
        self.channels.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// The relay's shared state.
pub struct Relay {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) tokens: TokenKeys,
    pub(crate) grant_key: Arc<Ed25519KeyPair>,
    pub(crate) recordings: Option<Arc<dyn crate::recording::RecordingStore>>,
    pub(crate) ca: Ca,
    pub(crate) cfg: BrokerConfig,
    agents: Mutex<HashMap<AgentName, LiveAgent>>,
    people: people::People,
    sessions: Mutex<HashMap<SessionId, Arc<LiveSession>>>,
    next_conn: AtomicU64,
    throttle: throttle::LoginThrottle,
    refusals: refusals::RefusalLog,
    changes: changes::Changes,
    /// The other relays of a cluster, once joined ([`bus`]); none on one relay.
    bus: std::sync::OnceLock<Arc<dyn bus::Bus>>,
    /// In a cluster: this relay's name and the live relays, told to agents in `Welcome`
    /// (kept fresh by [`crate::cluster`]).
    cluster: Mutex<Option<assist_proto::msg::ClusterRelays>>,
    /// In a cluster: whether this relay is cut off from the database ([`lost`]).
    standing: lost::Standing,
}

#[cfg(not(test))]
fn now_ms() -> i64 {
    crate::now_ms()
}

/// In unit tests, a clock that moves with tokio's (paused) time: see `tests`.
#[cfg(test)]
fn now_ms() -> i64 {
    tests::clock_ms()
}

fn new_session_id() -> SessionId {
    SessionId::new(format!("s-{}", hex::encode(assist_certs::random_bytes::<6>())))
}

fn check_text(what: &'static str, value: &str, max: usize) -> Result<(), Refusal> {
    assist_proto::text::check(what, value, max)
        .map_err(|e| Refusal::new(ErrorCode::BadRequest, e.to_string()))
}

impl Relay {
    pub fn new(
        store: Arc<dyn Store>,
        tokens: TokenKeys,
        grant_key: Ed25519KeyPair,
        ca: Ca,
        cfg: BrokerConfig,
    ) -> Self {
        Self {
            store,
            tokens,
            grant_key: Arc::new(grant_key),
            recordings: cfg.recordings.clone(),
            throttle: throttle::LoginThrottle::new(cfg.login_throttle),
            ca,
            refusals: refusals::RefusalLog::new(cfg.refusal_window),
            cfg,
            agents: Mutex::default(),
            people: people::People::default(),
            sessions: Mutex::default(),
            next_conn: AtomicU64::new(1),
            changes: changes::Changes::default(),
            bus: std::sync::OnceLock::new(),
            cluster: Mutex::default(),
            standing: lost::Standing::default(),
        }
    }

    /// Sets what agents are told of the cluster when they connect; when the relays
    /// changed, tells the agents connected now (in a task of its own).
    pub fn set_cluster(&self, cluster: Option<assist_proto::msg::ClusterRelays>) {
        let changed = {
            let mut current = self.cluster.lock().expect("cluster lock");
            let changed = current.is_some() && *current != cluster;
            *current = cluster.clone();
            changed
        };
        if let (true, Some(cluster)) = (changed, cluster) {
            let peers: Vec<Arc<dyn AgentPeer>> = self
                .agents
                .lock()
                .expect("agents lock")
                .values()
                .filter(|a| a.cluster)
                .map(|a| a.peer.clone())
                .collect();
            tokio::spawn(async move {
                for peer in peers {
                    let _ = peer.send(RelayToAgent::Cluster { cluster: cluster.clone() }).await;
                }
            });
        }
    }

    /// What agents are told of the cluster when they connect (`None`: a single relay).
    pub(crate) fn cluster(&self) -> Option<assist_proto::msg::ClusterRelays> {
        self.cluster.lock().expect("cluster lock").clone()
    }

    pub(crate) fn conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn grant_public_key(&self) -> Vec<u8> {
        assist_proto::grant::public_key(&self.grant_key)
    }

    fn session(&self, id: &SessionId) -> Option<Arc<LiveSession>> {
        self.sessions.lock().expect("sessions lock").get(id).cloned()
    }

    /// The connected agent `name`, to send it control messages or (for the transport) to
    /// open a channel to it.
    pub(crate) fn agent_tx(&self, name: &AgentName) -> Option<Arc<dyn AgentPeer>> {
        self.agents.lock().expect("agents lock").get(name).map(|a| a.peer.clone())
    }

    /// Refuses, before anyone is asked, a request for a script the agent said it does not
    /// have, or for a desktop or its clipboard on an agent that said it has no display.
    fn check_scripts(&self, agent: &AgentName, caps: &[Capability]) -> Result<(), Refusal> {
        let agents = self.agents.lock().expect("agents lock");
        let wants_desktop = caps.iter().any(|c| {
            matches!(c, Capability::DesktopView | Capability::DesktopControl | Capability::Clipboard)
        });
        if wants_desktop && agents.get(agent).is_some_and(|a| !a.desktop) {
            return Err(Refusal::new(
                ErrorCode::BadRequest,
                format!(
                    "agent {agent} has no desktop to show (it runs without a display: see `assist-agent run --display`); nobody was asked"
                ),
            ));
        }
        let Some(known) = agents.get(agent).and_then(|a| a.scripts.as_deref()) else {
            return Ok(());
        };
        for cap in caps {
            let Capability::Exec { scripts } = cap else { continue };
            if let Some(missing) = scripts.iter().find(|s| !known.contains(s)) {
                let has = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
                return Err(Refusal::new(
                    ErrorCode::BadRequest,
                    format!(
                        "agent {agent} has no script {missing} in its allowlist (it has: {has}); nobody was asked"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn is_online(&self, name: &AgentName) -> Option<ConsentMode> {
        self.agents.lock().expect("agents lock").get(name).map(|a| a.consent)
    }

    /// Registers an online agent, replacing (and closing) an older connection of the same
    /// agent.
    pub(crate) fn agent_online(&self, name: AgentName, agent: LiveAgent) {
        let old = self.agents.lock().expect("agents lock").insert(name, agent);
        if let Some(old) = old {
            old.peer.close(Close::Replaced);
        }
    }

    /// Removes an agent whose connection `conn_id` ended, and ends its sessions. Returns
    /// false if a newer connection had already replaced it.
    pub(crate) async fn agent_offline(&self, name: &AgentName, conn_id: u64) -> bool {
        let removed = {
            let mut agents = self.agents.lock().expect("agents lock");
            match agents.get(name) {
                Some(a) if a.conn_id == conn_id => agents.remove(name),
                _ => None,
            }
        };
        let Some(removed) = removed else {
            return false;
        };
        let event = AuditEvent::new(agent_actor(name), Action::AgentDisconnected)
            .org(&removed.org)
            .target(name.as_str());
        if let Err(e) = self.store.agent_disconnected(name, removed.since, now_ms(), &event).await {
            warn!(error = %e, agent = %name, "cannot record agent disconnection");
        }
        let ids: Vec<SessionId> = self
            .sessions
            .lock()
            .expect("sessions lock")
            .values()
            .filter(|s| &s.agent == name)
            .map(|s| s.id.clone())
            .collect();
        for id in ids {
            self.end_session(&id, EndReason::AgentDisconnected).await;
        }
        true
    }

    /// Closes the connection of every online agent that has been revoked since it
    /// connected. Called periodically, because revocation happens in another process.
    pub(crate) async fn enforce_revocations(&self) -> Result<(), StoreError> {
        if self.agents.lock().expect("agents lock").is_empty() {
            return Ok(());
        }
        // One small query per poll, however many agents are enrolled or online (a query per
        // online agent cost a relay with 10,000 idle agents most of a core).
        for name in self.store.revoked_agents().await? {
            if let Some(peer) = self.agent_tx(&name) {
                info!(agent = %name, "closing connection of revoked agent");
                peer.close(Close::Revoked);
            }
        }
        Ok(())
    }

    /// Agents the principal may see, with online state.
    pub async fn list_agents(&self, who: &Principal) -> Result<Vec<AgentInfo>, Refusal> {
        let orgs = self.store.list_orgs().await?;
        let agents = self.store.list_agents().await?;
        Ok(agents
            .into_iter()
            .filter(|a| orgs.iter().any(|o| o.name == a.org && who.may_see_agent(o)))
            .map(|a| self.agent_info(a))
            .collect())
    }

    fn agent_info(&self, a: AgentRow) -> AgentInfo {
        let live = self.is_online(&a.name);
        AgentInfo {
            online: live.is_some(),
            consent: live.or(a.consent),
            name: a.name,
            org: a.org,
            enrolled_at: a.enrolled_at,
            last_seen: a.last_seen,
            revoked: a.revoked_at.is_some(),
        }
    }

    /// Pending requests the principal may answer, most urgent first. Requests to agents in
    /// `prompt` mode are answered at the customer's machine only, so they are not listed.
    pub async fn list_requests(&self, who: &Principal) -> Vec<SessionInfo> {
        let live: Vec<Arc<LiveSession>> =
            self.sessions.lock().expect("sessions lock").values().cloned().collect();
        let mut out = Vec::new();
        for s in live {
            let core = s.core.lock().await;
            let pending = core.state() == SessionState::Requested || core.info.escalation.is_some();
            if pending && core.consent != ConsentMode::Prompt && who.may_answer_for(&core.info.agent_org) {
                out.push(core.info());
            }
        }
        // Other relays' requests, as their rows stand (none on one relay).
        let now = now_ms();
        for row in self.held_elsewhere().await {
            let s = row.info;
            let pending = match &s.escalation {
                Some(e) => e.deadline > now,
                None => s.state == SessionState::Requested && s.consent_deadline > now,
            };
            if pending && row.agent_consent != Some(ConsentMode::Prompt) && who.may_answer_for(&s.agent_org) {
                out.push(s);
            }
        }
        out.sort_by_key(|s| (s.priority, s.escalation.as_ref().map_or(s.requested_at, |e| e.requested_at)));
        out
    }

    /// Granted sessions (approved or active) whose grant the principal may narrow and that
    /// they may end as an approver or admin (their organisation's agents; every session
    /// for the operator's admins), the grant soonest to run out first. Engineers get none:
    /// they see their own sessions through [`Relay::list_sessions`].
    pub async fn list_live(&self, who: &Principal) -> Vec<SessionInfo> {
        if !matches!(who.role, Role::Approver | Role::Admin) {
            return Vec::new();
        }
        let live: Vec<Arc<LiveSession>> =
            self.sessions.lock().expect("sessions lock").values().cloned().collect();
        let mut out = Vec::new();
        for s in live {
            let core = s.core.lock().await;
            let granted = matches!(core.state(), SessionState::Approved | SessionState::Active);
            if granted && who.may_end(&core.info) {
                out.push(core.info());
            }
        }
        for row in self.held_elsewhere().await {
            let granted = matches!(row.info.state, SessionState::Approved | SessionState::Active);
            if granted && who.may_end(&row.info) {
                out.push(row.info);
            }
        }
        out.sort_by_key(|s| (s.grant_expires_at.unwrap_or(i64::MAX), s.requested_at));
        out
    }

    pub async fn list_sessions(&self, who: &Principal) -> Result<Vec<SessionInfo>, Refusal> {
        let all = self.store.list_sessions(500).await?;
        Ok(all.into_iter().filter(|s| who.may_see_session(s)).collect())
    }

    /// One session as stored, if the principal may see it (as in [`Relay::list_sessions`]);
    /// one they may not see is refused exactly like one that does not exist.
    pub async fn session_for(&self, who: &Principal, id: &SessionId) -> Result<SessionInfo, Refusal> {
        match self.store.session(id).await? {
            Some(s) if who.may_see_session(&s) => Ok(s),
            _ => Err(Refusal::new(ErrorCode::NotFound, format!("no session {id}"))),
        }
    }

    /// For a channel the engineer opens: the session's grant, if the session is live,
    /// is this engineer's (from any of their connections), and its grant covers `cap` now;
    /// with the channel's number and its registration, made under the same lock as the
    /// check, so a revocation either refuses the channel or finds it registered and stops it.
    pub(crate) async fn grant_for_channel(
        &self,
        who: &Principal,
        id: &SessionId,
        cap: &Capability,
    ) -> Result<(Arc<LiveSession>, AgentName, SignedGrant, u32, grants::ChannelHandle), Refusal> {
        let s = self
            .session(id)
            .ok_or_else(|| Refusal::new(ErrorCode::NotFound, format!("no live session {id}")))?;
        let mut core = s.core.lock().await;
        if core.info.engineer != who.user {
            // The caller audits it (`channel.refused`); one who may not see the session is
            // told what they would be told if it did not exist.
            return Err(if who.may_see_session(&core.info) {
                Refusal::new(ErrorCode::Forbidden, format!("session {id} is not yours"))
            } else {
                Refusal::new(ErrorCode::NotFound, format!("no live session {id}"))
            });
        }
        let grant = core
            .grant
            .clone()
            .ok_or_else(|| Refusal::new(ErrorCode::Forbidden, format!("session {id} is not approved")))?;
        let pk = self.grant_public_key();
        grant
            .check(&pk, id, &core.info.agent, cap, now_ms())
            .map_err(|e| Refusal::new(ErrorCode::Forbidden, format!("session {id}: {e}")))?;
        core.machine
            .handle_start()
            .map_err(|e| Refusal::new(ErrorCode::Conflict, format!("session {id}: {e}")))?;
        if core.info.started_at.is_none() {
            let now = now_ms();
            core.info.started_at = Some(now);
            let event = session_event(core.info.engineer.as_str(), Action::SessionStarted, &core.info)
                .detail(json!({ "channel": cap }));
            if let Err(e) = self.store.update_session(&core.info(), now, &event).await {
                // Not started after all: the next channel tries again.
                core.machine = SessionMachine::resume(SessionState::Approved, core.info.consent_deadline);
                core.info.started_at = None;
                return Err(e.into());
            }
            s.span.in_scope(|| info!("session active"));
            self.changed();
        }
        let agent = core.info.agent.clone();
        // Numbered now, before the agent can open this channel's stderr stream, so a shell's
        // channel always comes before its stderr in the recording.
        let channel = s.next_channel();
        let handle = s.register_channel(channel, cap.clone());
        drop(core);
        Ok((s, agent, grant, channel, handle))
    }

    /// For a stream the agent opens (stderr): the session, if it is this agent's and active.
    pub(crate) async fn session_of_agent(
        &self,
        agent: &AgentName,
        id: &SessionId,
    ) -> Option<Arc<LiveSession>> {
        let s = self.session(id)?;
        if s.agent != *agent {
            return None;
        }
        let active = s.core.lock().await.state() == SessionState::Active;
        active.then_some(s)
    }

    /// Whom session `id` waits for, while it is a request nobody answered yet.
    pub(crate) async fn waiting_for(&self, id: &SessionId) -> Option<String> {
        let s = self.session(id)?;
        let core = s.core.lock().await;
        (core.state() == SessionState::Requested).then(|| core.waiting_for.clone()).flatten()
    }

    /// Forwards a terminal resize from the engineer to the agent.
    pub(crate) async fn resize(&self, conn_id: u64, id: &SessionId, cols: u16, rows: u16) {
        let Some(s) = self.session(id) else { return };
        if s.engineer.conn_id != conn_id {
            return;
        }
        if let Some(tx) = self.agent_tx(&s.agent) {
            let _ = tx.send(RelayToAgent::Resize { session: id.clone(), cols, rows }).await;
        }
    }
}

impl Relay {
    /// Agents connected now.
    pub(crate) fn online_agent_count(&self) -> usize {
        self.agents.lock().expect("agents lock").len()
    }

    /// Sessions not yet over.
    pub(crate) fn live_session_count(&self) -> usize {
        self.sessions.lock().expect("sessions lock").len()
    }

    /// The login throttle, for other ways of signing in (the console's second factor).
    pub(crate) fn login_throttle(&self) -> &throttle::LoginThrottle {
        &self.throttle
    }
}
