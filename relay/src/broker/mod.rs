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
//! Transport handlers ([`engineer`], [`agent`]) only parse and forward; every decision is
//! made here or in [`policy`]. State changes are written to the store, each with its audit
//! event in the same transaction, before anyone is told about them. Events without a state
//! change (refusals) are appended on their own ([`Relay::audit`]).

pub mod agent;
mod audit;
pub mod engineer;
mod login;
pub mod policy;
mod recording;
pub mod splice;

use crate::audit::{Action, AuditEvent, RELAY_ACTOR, agent_actor};
use crate::auth::TokenKeys;
use crate::store::{AgentRow, Store, StoreError};
use assist_certs::Ca;
use assist_proto::caps::{Capability, ConsentMode, Priority};
use assist_proto::grant::{Grant, SignedGrant};
use assist_proto::ids::{AgentName, OrgName, SessionId};
use assist_proto::msg::{AgentInfo, ErrorCode, RelayToAgent, RelayToEngineer, SessionInfo};
use assist_proto::session::{EndReason, SessionMachine, SessionState, TransitionError};
use audit::session_event;
use aws_lc_rs::signature::Ed25519KeyPair;
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
    /// How long an approval lasts. Default 4 hours.
    pub grant_ttl: Duration,
    /// Whether a session may run only while it is recorded. Default true: a session whose
    /// recorder fails is ended, never continued unrecorded.
    pub recording_mandatory: bool,
    /// Where recordings are written. `None` records nothing (only for tests of the broker
    /// itself; with `recording_mandatory` every channel is then refused).
    pub recordings_dir: Option<std::path::PathBuf>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            consent_timeout: Duration::from_secs(300),
            urgent_consent_timeout: Duration::from_secs(120),
            token_ttl: Duration::from_secs(8 * 3600),
            grant_ttl: Duration::from_secs(4 * 3600),
            recording_mandatory: true,
            recordings_dir: None,
        }
    }
}

/// An error to show the caller: a code to match on and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
    pub fn to_engineer(&self) -> RelayToEngineer {
        RelayToEngineer::Error { code: self.code, message: self.message.clone() }
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        // The details go to the log; the caller learns only that it failed inside.
        warn!(error = %e, "store error");
        Refusal::new(ErrorCode::Internal, "internal error in the relay (see its log)")
    }
}

/// An online agent.
pub(crate) struct LiveAgent {
    pub conn_id: u64,
    pub org: OrgName,
    pub consent: ConsentMode,
    pub tx: mpsc::Sender<RelayToAgent>,
    pub conn: quinn::Connection,
}

/// What an engineer connection is, as far as sessions care.
#[derive(Clone)]
pub(crate) struct EngineerLink {
    pub conn_id: u64,
    pub tx: mpsc::Sender<RelayToEngineer>,
    pub conn: quinn::Connection,
}

struct SessionCore {
    info: SessionInfo,
    machine: SessionMachine,
    grant: Option<SignedGrant>,
    consent: ConsentMode,
    exit: Option<EndReason>,
}

/// A session that is not over yet.
pub(crate) struct LiveSession {
    pub id: SessionId,
    pub agent: AgentName,
    pub span: tracing::Span,
    core: tokio::sync::Mutex<SessionCore>,
    pub engineer: EngineerLink,
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
    sessions: Mutex<HashMap<SessionId, Arc<LiveSession>>>,
    next_conn: AtomicU64,
}

fn now_ms() -> i64 {
    crate::now_ms()
}

fn new_session_id() -> SessionId {
    let mut b = [0u8; 6];
    aws_lc_rs::rand::fill(&mut b).expect("system random source");
    SessionId::new(format!("s-{}", hex::encode(b)))
}

fn check_text(what: &str, value: &str, max: usize) -> Result<(), Refusal> {
    if value.trim().is_empty() {
        return Err(Refusal::new(ErrorCode::BadRequest, format!("{what} must not be empty")));
    }
    if value.len() > max {
        return Err(Refusal::new(ErrorCode::BadRequest, format!("{what} is longer than {max} bytes")));
    }
    Ok(())
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
            recordings: cfg.recordings_dir.clone().map(|d| {
                Arc::new(crate::recording::LocalDir::new(d)) as Arc<dyn crate::recording::RecordingStore>
            }),
            ca,
            cfg,
            agents: Mutex::default(),
            sessions: Mutex::default(),
            next_conn: AtomicU64::new(1),
        }
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

    fn agent_tx(&self, name: &AgentName) -> Option<mpsc::Sender<RelayToAgent>> {
        self.agents.lock().expect("agents lock").get(name).map(|a| a.tx.clone())
    }

    pub(crate) fn agent_conn(&self, name: &AgentName) -> Option<quinn::Connection> {
        self.agents.lock().expect("agents lock").get(name).map(|a| a.conn.clone())
    }

    fn is_online(&self, name: &AgentName) -> Option<ConsentMode> {
        self.agents.lock().expect("agents lock").get(name).map(|a| a.consent)
    }

    /// Registers an online agent, replacing (and closing) an older connection of the same
    /// agent.
    pub(crate) fn agent_online(&self, name: AgentName, agent: LiveAgent) {
        let old = self.agents.lock().expect("agents lock").insert(name, agent);
        if let Some(old) = old {
            old.conn.close(assist_net::codes::REPLACED, b"replaced by a newer connection of the same agent");
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
        if let Err(e) = self.store.agent_disconnected(name, now_ms(), &event).await {
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
        let online: Vec<AgentName> = self.agents.lock().expect("agents lock").keys().cloned().collect();
        for name in online {
            if let Some(row) = self.store.agent(&name).await?
                && row.revoked_at.is_some()
                && let Some(conn) = self.agent_conn(&name)
            {
                info!(agent = %name, "closing connection of revoked agent");
                conn.close(assist_net::codes::REFUSED, b"agent certificate revoked");
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

    /// Pending requests the principal may answer, most urgent first.
    pub async fn list_requests(&self, who: &Principal) -> Vec<SessionInfo> {
        let live: Vec<Arc<LiveSession>> =
            self.sessions.lock().expect("sessions lock").values().cloned().collect();
        let mut out = Vec::new();
        for s in live {
            let core = s.core.lock().await;
            if core.info.state == SessionState::Requested && who.may_answer_for(&core.info.agent_org) {
                out.push(core.info.clone());
            }
        }
        out.sort_by_key(|s| (s.priority, s.requested_at));
        out
    }

    pub async fn list_sessions(&self, who: &Principal) -> Result<Vec<SessionInfo>, Refusal> {
        let all = self.store.list_sessions(500).await?;
        Ok(all.into_iter().filter(|s| who.may_see_session(s)).collect())
    }

    /// Checks and records a session request, and asks for consent.
    pub(crate) async fn request_session(
        self: &Arc<Self>,
        who: &Principal,
        link: EngineerLink,
        req: NewSession,
    ) -> Result<(SessionInfo, String), Refusal> {
        let NewSession { agent, ticket, priority, reason, capabilities } = req;
        check_text("ticket", &ticket, 200)?;
        check_text("reason", &reason, 2000)?;
        if capabilities.is_empty() {
            return Err(Refusal::new(ErrorCode::BadRequest, "a request must name at least one capability"));
        }
        if let Some(c) = capabilities.iter().find(|c| **c != Capability::Shell) {
            return Err(Refusal::new(
                ErrorCode::BadRequest,
                format!("capability {c} is not supported by this relay yet"),
            ));
        }
        if who.role != assist_proto::caps::Role::Engineer {
            let r = Refusal::new(
                ErrorCode::Forbidden,
                format!("only engineers request sessions; you are {}", who.role),
            );
            return Err(self.refuse_request(who, &agent, None, r).await);
        }
        let not_reachable = || {
            Refusal::new(
                ErrorCode::NotFound,
                format!("no agent named {agent} among the agents you may reach"),
            )
        };
        let Some(row) = self.store.agent(&agent).await? else {
            return Err(self.refuse_request(who, &agent, None, not_reachable()).await);
        };
        let Some(org) = self.store.org(&row.org).await? else {
            return Err(self.refuse_request(who, &agent, None, not_reachable()).await);
        };
        if !who.may_request_on(&org) {
            info!(user = %who.user, %agent, "request refused: organisation not supported");
            return Err(self.refuse_request(who, &agent, Some(&row.org), not_reachable()).await);
        }
        if row.revoked_at.is_some() {
            let r = Refusal::new(ErrorCode::Forbidden, format!("agent {agent} has been revoked"));
            return Err(self.refuse_request(who, &agent, Some(&row.org), r).await);
        }
        let consent = self
            .is_online(&agent)
            .ok_or_else(|| Refusal::new(ErrorCode::Conflict, format!("agent {agent} is offline")))?;

        let now = now_ms();
        let timeout =
            if priority.is_urgent() { self.cfg.urgent_consent_timeout } else { self.cfg.consent_timeout };
        let deadline = now + timeout.as_millis() as i64;
        let id = new_session_id();
        let info = SessionInfo {
            id: id.clone(),
            engineer: who.user.clone(),
            engineer_org: who.org.clone(),
            agent: agent.clone(),
            agent_org: row.org.clone(),
            ticket,
            priority,
            reason,
            capabilities,
            state: SessionState::Requested,
            approver: None,
            requested_at: now,
            consent_deadline: deadline,
            decided_at: None,
            started_at: None,
            ended_at: None,
            end_reason: None,
        };
        let event = AuditEvent::new(who.user.as_str(), Action::SessionRequested)
            .org(&info.agent_org)
            .target(agent.as_str())
            .session(&id)
            .detail(json!({
                "engineer_org": info.engineer_org,
                "ticket": info.ticket,
                "priority": info.priority,
                "reason": info.reason,
                "capabilities": info.capabilities,
                "consent": consent,
                "consent_deadline": deadline,
            }));
        self.store.insert_session(&info, &event).await?;
        let span = tracing::info_span!("session", id = %id, engineer = %who.user, agent = %agent);
        span.in_scope(|| info!(ticket = %info.ticket, priority = %priority, ?consent, "session requested"));
        let (ended, _) = watch::channel(false);
        let (open_outputs, _) = watch::channel(0);
        let live = Arc::new(LiveSession {
            id: id.clone(),
            agent: agent.clone(),
            span: span.clone(),
            core: tokio::sync::Mutex::new(SessionCore {
                info: info.clone(),
                machine: SessionMachine::new(deadline),
                grant: None,
                consent,
                exit: None,
            }),
            engineer: link,
            ended,
            open_outputs,
            recorder: std::sync::OnceLock::new(),
            channels: std::sync::atomic::AtomicU32::new(0),
            countersignatures: Mutex::default(),
        });
        self.sessions.lock().expect("sessions lock").insert(id.clone(), live);

        let waiting_for = match consent {
            ConsentMode::Prompt => {
                if let Some(tx) = self.agent_tx(&agent) {
                    let _ = tx.send(RelayToAgent::ConsentRequest { session: info.clone() }).await;
                }
                format!("the customer at {agent} (prompt on the agent)")
            }
            ConsentMode::Approver => format!("an approver of {}", row.org),
        };
        let relay = Arc::clone(self);
        let expire_id = id.clone();
        tokio::spawn(
            async move {
                tokio::time::sleep(timeout).await;
                relay.expire(&expire_id).await;
            }
            .instrument(span),
        );
        Ok((info, waiting_for))
    }

    async fn expire(&self, id: &SessionId) {
        let Some(s) = self.session(id) else { return };
        let mut core = s.core.lock().await;
        if !core.machine.handle_timeout(now_ms()) {
            return;
        }
        let now = now_ms();
        let waited = now - core.info.requested_at;
        core.info.state = SessionState::Expired;
        core.info.decided_at = Some(now);
        core.info.ended_at = core.info.decided_at;
        core.info.end_reason = Some("no answer before the deadline".into());
        let event = session_event(RELAY_ACTOR, Action::SessionExpired, &core.info)
            .detail(json!({ "reason": core.info.end_reason, "waited_ms": waited }));
        if let Err(e) = self.store.update_session(&core.info, now, &event).await {
            warn!(error = %e, "cannot store expiry");
        }
        let agent = core.info.agent.clone();
        drop(core);
        s.span.in_scope(|| info!("request expired"));
        let _ = s.engineer.tx.send(RelayToEngineer::SessionExpired { waited_ms: waited }).await;
        if let Some(tx) = self.agent_tx(&agent) {
            let _ = tx
                .send(RelayToAgent::ConsentWithdrawn { session: id.clone(), reason: "expired".into() })
                .await;
        }
        self.forget(id);
    }

    fn forget(&self, id: &SessionId) {
        if let Some(s) = self.sessions.lock().expect("sessions lock").remove(id) {
            let _ = s.ended.send(true);
        }
    }

    /// An approver (or the prompt on the agent, with `by = None`) answers a request.
    pub(crate) async fn answer(
        self: &Arc<Self>,
        id: &SessionId,
        by: Answerer<'_>,
        approve: bool,
        note: Option<String>,
    ) -> Result<String, Refusal> {
        let s = self
            .session(id)
            .ok_or_else(|| Refusal::new(ErrorCode::NotFound, format!("no pending request {id}")))?;
        let mut core = s.core.lock().await;
        let (approver, actor) = match by {
            Answerer::User(p) => {
                if !p.may_answer_for(&core.info.agent_org) {
                    return Err(Refusal::new(
                        ErrorCode::Forbidden,
                        format!("you may not answer requests for {}", core.info.agent_org),
                    ));
                }
                if core.consent == ConsentMode::Prompt {
                    return Err(Refusal::new(
                        ErrorCode::Conflict,
                        format!(
                            "agent {} asks the customer at the machine; approvers cannot answer for it",
                            core.info.agent
                        ),
                    ));
                }
                (p.user.to_string(), p.user.to_string())
            }
            Answerer::Agent(name) => {
                if &core.info.agent != name || core.consent != ConsentMode::Prompt {
                    return Err(Refusal::new(ErrorCode::Forbidden, "this agent cannot answer that request"));
                }
                (format!("prompt@{name}"), agent_actor(name))
            }
        };
        let now = now_ms();
        let transition = if approve { core.machine.handle_approve(now) } else { core.machine.handle_deny() };
        match transition {
            Ok(()) => {}
            Err(TransitionError::DeadlinePassed) => {
                drop(core);
                self.expire(id).await;
                return Err(Refusal::new(
                    ErrorCode::Conflict,
                    format!("request {id} expired before it was answered"),
                ));
            }
            Err(e) => return Err(Refusal::new(ErrorCode::Conflict, format!("request {id}: {e}"))),
        }
        core.info.state = core.machine.state();
        core.info.approver = Some(approver.clone());
        core.info.decided_at = Some(now);
        let agent = core.info.agent.clone();
        if approve {
            let grant = Grant {
                session: id.clone(),
                agent: agent.clone(),
                engineer: core.info.engineer.clone(),
                capabilities: core.info.capabilities.clone(),
                not_before: now,
                expires_at: now + self.cfg.grant_ttl.as_millis() as i64,
                approver: approver.clone(),
            };
            let signed = SignedGrant::sign(&grant, &self.grant_key);
            let event = session_event(&actor, Action::SessionApproved, &core.info).detail(json!({
                "approver": approver,
                "capabilities": grant.capabilities,
                "grant_expires_at": grant.expires_at,
            }));
            if let Err(e) = self.store.update_session(&core.info, now, &event).await {
                // Nobody is told of an approval that is not stored.
                core.machine = SessionMachine::resume(SessionState::Requested, core.info.consent_deadline);
                core.info.state = SessionState::Requested;
                core.info.approver = None;
                core.info.decided_at = None;
                return Err(e.into());
            }
            core.grant = Some(signed.clone());
            let info = core.info.clone();
            drop(core);
            s.span.in_scope(|| info!(%approver, "session approved"));
            // Recording starts before anyone may use the approval.
            if let Err(reason) = self.start_recording(&s, &info, &approver).await {
                if self.cfg.recording_mandatory {
                    let message = format!("recording failed: {reason}");
                    self.end_session(id, EndReason::Failed { message: message.clone() }).await;
                    return Err(Refusal::new(
                        ErrorCode::Internal,
                        format!("approved, but {message}; the session was ended"),
                    ));
                }
                warn!(%reason, "recording could not start; continuing unrecorded (recording is optional)");
            }
            if let Some(tx) = self.agent_tx(&agent) {
                let _ = tx.send(RelayToAgent::Granted { grant: signed }).await;
            }
            let _ = s.engineer.tx.send(RelayToEngineer::SessionApproved { session: info }).await;
            Ok(format!("approved {id}"))
        } else {
            let reason = note.unwrap_or_else(|| "no reason given".into());
            core.info.ended_at = Some(now);
            core.info.end_reason = Some(format!("denied by {approver}: {reason}"));
            let event = session_event(&actor, Action::SessionDenied, &core.info)
                .detail(json!({ "approver": approver, "reason": reason }));
            if let Err(e) = self.store.update_session(&core.info, now, &event).await {
                // As for approvals: a denial that is not stored is not announced.
                core.machine = SessionMachine::resume(SessionState::Requested, core.info.consent_deadline);
                core.info.state = SessionState::Requested;
                core.info.approver = None;
                core.info.decided_at = None;
                core.info.ended_at = None;
                core.info.end_reason = None;
                return Err(e.into());
            }
            drop(core);
            s.span.in_scope(|| info!(%approver, %reason, "session denied"));
            let _ = s.engineer.tx.send(RelayToEngineer::SessionDenied { by: Some(approver), reason }).await;
            if let Some(tx) = self.agent_tx(&agent) {
                let _ = tx
                    .send(RelayToAgent::ConsentWithdrawn { session: id.clone(), reason: "denied".into() })
                    .await;
            }
            self.forget(id);
            Ok(format!("denied {id}"))
        }
    }

    /// An approver, an admin or the engineer ends a session.
    pub(crate) async fn end_by(
        &self,
        who: &Principal,
        id: &SessionId,
        reason: Option<String>,
    ) -> Result<String, Refusal> {
        let s = self
            .session(id)
            .ok_or_else(|| Refusal::new(ErrorCode::NotFound, format!("no live session {id}")))?;
        let info = s.core.lock().await.info.clone();
        if !who.may_end(&info) {
            return Err(Refusal::new(ErrorCode::Forbidden, format!("you may not end session {id}")));
        }
        self.end_session(id, EndReason::EndedBy { user: who.user.to_string(), reason }).await;
        Ok(format!("ended {id}"))
    }

    /// Ends a session for any reason: stores it, tells both sides, resets its streams.
    pub(crate) async fn end_session(&self, id: &SessionId, reason: EndReason) {
        let Some(s) = self.session(id) else { return };
        let mut core = s.core.lock().await;
        let was = core.machine.state();
        if core.machine.handle_end().is_err() {
            return;
        }
        let reason = match (was, reason) {
            (SessionState::Requested, EndReason::EngineerDisconnected) => EndReason::Withdrawn,
            (_, r) => r,
        };
        let now = now_ms();
        core.info.state = SessionState::Closed;
        core.info.ended_at = Some(now);
        core.info.end_reason = Some(reason.to_string());
        let actor = match &reason {
            EndReason::EndedBy { user, .. } => user.clone(),
            EndReason::ShellExited { .. } | EndReason::AgentDisconnected => agent_actor(&core.info.agent),
            EndReason::Withdrawn | EndReason::EngineerDisconnected => core.info.engineer.to_string(),
            _ => RELAY_ACTOR.to_owned(),
        };
        let event = session_event(&actor, Action::SessionEnded, &core.info).detail(json!({
            "reason": reason.to_string(),
            "end": reason,
            "previous_state": was,
        }));
        if let Err(e) = self.store.update_session(&core.info, now, &event).await {
            warn!(error = %e, "cannot store the end of a session");
        }
        let agent = core.info.agent.clone();
        let info = core.info.clone();
        drop(core);
        s.span.in_scope(|| info!(%reason, "session ended"));
        self.forget(id);
        self.seal_recording(&s, &info, &reason).instrument(s.span.clone()).await;
        let _ = s.engineer.tx.send(RelayToEngineer::SessionEnded { reason: reason.clone() }).await;
        if let Some(tx) = self.agent_tx(&agent) {
            let msg = if was == SessionState::Requested {
                RelayToAgent::ConsentWithdrawn { session: id.clone(), reason: reason.to_string() }
            } else {
                RelayToAgent::EndSession { session: id.clone(), reason }
            };
            let _ = tx.send(msg).await;
        }
    }

    /// Ends every live session (relay shutdown).
    pub(crate) async fn end_all(&self, reason: EndReason) {
        let ids: Vec<SessionId> = self.sessions.lock().expect("sessions lock").keys().cloned().collect();
        for id in ids {
            self.end_session(&id, reason.clone()).await;
        }
    }

    /// Ends the sessions of an engineer connection that went away.
    pub(crate) async fn engineer_gone(&self, conn_id: u64) {
        let ids: Vec<SessionId> = self
            .sessions
            .lock()
            .expect("sessions lock")
            .values()
            .filter(|s| s.engineer.conn_id == conn_id)
            .map(|s| s.id.clone())
            .collect();
        for id in ids {
            self.end_session(&id, EndReason::EngineerDisconnected).await;
        }
    }

    /// The agent reports that the session's shell exited; the session ends once its output
    /// has reached the engineer (or after a bound, if the engineer stopped reading).
    pub(crate) async fn shell_exited(self: &Arc<Self>, agent: &AgentName, id: &SessionId, reason: EndReason) {
        let Some(s) = self.session(id) else { return };
        if &s.agent != agent {
            return;
        }
        s.core.lock().await.exit = Some(reason.clone());
        let relay = Arc::clone(self);
        let id = id.clone();
        let span = s.span.clone();
        tokio::spawn(
            async move {
                let mut outputs = s.open_outputs.subscribe();
                let drained = tokio::time::timeout(Duration::from_secs(5), outputs.wait_for(|n| *n == 0))
                    .await
                    .is_ok_and(|r| r.is_ok());
                if !drained {
                    warn!("output still flowing 5 s after the shell exited; ending anyway");
                }
                relay.end_session(&id, reason).await;
            }
            .instrument(span),
        );
    }

    /// For a channel the engineer opens: the session's grant, if the session is live,
    /// belongs to this engineer connection, and the grant covers `cap` now.
    pub(crate) async fn grant_for_channel(
        &self,
        conn_id: u64,
        id: &SessionId,
        cap: &Capability,
    ) -> Result<(Arc<LiveSession>, AgentName, SignedGrant), Refusal> {
        let s = self
            .session(id)
            .ok_or_else(|| Refusal::new(ErrorCode::NotFound, format!("no live session {id}")))?;
        if s.engineer.conn_id != conn_id {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                format!("session {id} belongs to another connection"),
            ));
        }
        let mut core = s.core.lock().await;
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
            core.info.state = SessionState::Active;
            core.info.started_at = Some(now);
            let event = session_event(core.info.engineer.as_str(), Action::SessionStarted, &core.info)
                .detail(json!({ "channel": cap }));
            if let Err(e) = self.store.update_session(&core.info, now, &event).await {
                // Not started after all: the next channel tries again.
                core.machine = SessionMachine::resume(SessionState::Approved, core.info.consent_deadline);
                core.info.state = SessionState::Approved;
                core.info.started_at = None;
                return Err(e.into());
            }
            s.span.in_scope(|| info!("session active"));
        }
        let agent = core.info.agent.clone();
        drop(core);
        Ok((s, agent, grant))
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
        let active = s.core.lock().await.info.state == SessionState::Active;
        active.then_some(s)
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

impl assist_console::ConsoleState for Relay {
    fn online_agents(&self) -> usize {
        self.agents.lock().expect("agents lock").len()
    }
    fn live_sessions(&self) -> usize {
        self.sessions.lock().expect("sessions lock").len()
    }
}

/// What an engineer asks for.
pub(crate) struct NewSession {
    pub agent: AgentName,
    pub ticket: String,
    pub priority: Priority,
    pub reason: String,
    pub capabilities: Vec<Capability>,
}

/// Who answers a consent request.
pub(crate) enum Answerer<'a> {
    User(&'a Principal),
    Agent(&'a AgentName),
}
