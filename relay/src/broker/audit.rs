//! The broker's side of the audit log: events that go with no state change (refusals),
//! and the shape of session events. Events that go with a state change are built where
//! the change is made and stored with it (see [`crate::store::Store`]).

use super::policy::Principal;
use super::{Refusal, Relay, now_ms};
use crate::audit::{Action, AuditEvent, clip};
use crate::store::StoreError;
use assist_proto::ids::{AgentName, OrgName, SessionId};
use assist_proto::msg::{ChannelKind, SessionInfo};
use serde_json::json;
use tracing::warn;

impl Relay {
    /// Appends an event that goes with no state change. A failure is logged and returned:
    /// callers that must not go on unaudited (a successful login) stop on it.
    pub(crate) async fn audit(&self, event: AuditEvent) -> Result<(), StoreError> {
        match self.store.append_audit(&event, now_ms()).await {
            Ok(_) => Ok(()),
            Err(e) => {
                warn!(error = %e, action = %event.action, actor = %event.actor, "cannot append audit event");
                Err(e)
            }
        }
    }

    /// Audits a channel the relay or the agent refused (`channel.refused`): `who` asked for
    /// a `channel` of `session` and was told `reason`. The session's agent and organisation
    /// are filled in when the session is known. Never fails: a refusal is refused anyway.
    /// Rate-limited like every refusal (`broker::refusals`).
    pub(crate) async fn audit_refusal(
        &self,
        who: &Principal,
        session: &SessionId,
        channel: &ChannelKind,
        reason: &str,
    ) {
        let known = match self.session(session) {
            Some(s) => {
                let core = s.core.lock().await;
                Some((core.info.agent.clone(), core.info.agent_org.clone()))
            }
            None => self.store.session(session).await.ok().flatten().map(|i| (i.agent, i.agent_org)),
        };
        // The session id is as the engineer sent it: it names the event's session only when
        // such a session exists.
        let mut event = AuditEvent::new(who.user.as_str(), Action::ChannelRefused).detail(
            json!({ "channel": channel, "reason": clip(reason, 300), "session": clip(session.as_str(), 64) }),
        );
        if let Some((agent, org)) = known {
            event = event.session(session).org(&org).target(agent.as_str());
        }
        // One kind per session and reason: different refusals are each written at once,
        // the same one repeated is counted.
        let kind = format!("{} {}", clip(session.as_str(), 64), clip(reason, 200));
        self.audit_refused(who.user.as_str(), &kind, event).await;
    }

    /// Audits a session request refused by policy, and returns the refusal.
    pub(super) async fn refuse_request(
        &self,
        who: &Principal,
        agent: &AgentName,
        org: Option<&OrgName>,
        r: Refusal,
    ) -> Refusal {
        // The agent name is as the engineer typed it, unchecked: bounded here.
        let mut event = AuditEvent::new(who.user.as_str(), Action::SessionRefused)
            .target(clip(agent.as_str(), 64))
            .detail(json!({ "engineer_org": who.org, "reason": clip(&r.message, 300) }));
        if let Some(org) = org {
            event = event.org(org);
        }
        let kind = format!("{} {}", clip(agent.as_str(), 64), clip(&r.message, 200));
        self.audit_refused(who.user.as_str(), &kind, event).await;
        r
    }
}

impl Relay {
    /// Audits an attempt on session `id` that `who` may not make (`attempt`, e.g.
    /// `session.approve`; `why`, for the record), rate-limited (`broker::refusals`), and
    /// returns what to answer, of (`forbidden`, `not_found`): the first to someone who may
    /// see the session, the second to anyone else, so that a user of another organisation
    /// gets the very answer they would get for a session that does not exist, and learns
    /// nothing of whose it is.
    pub(super) async fn refuse_access(
        &self,
        who: &Principal,
        attempt: &str,
        id: &SessionId,
        info: Option<&SessionInfo>,
        why: &str,
        (forbidden, not_found): (Refusal, Refusal),
    ) -> Refusal {
        let mut event = AuditEvent::new(who.user.as_str(), Action::AccessRefused).detail(json!({
            "attempt": attempt,
            "reason": why,
            "actor_org": who.org,
            "role": who.role,
            // As the user sent it: bounded, and it names the event's session only when
            // such a session exists.
            "session": clip(id.as_str(), 64),
        }));
        if let Some(info) = info {
            event = event.session(&info.id).org(&info.agent_org).target(info.agent.as_str());
        }
        self.audit_refused(who.user.as_str(), attempt, event).await;
        match info {
            Some(info) if who.may_see_session(info) => forbidden,
            _ => not_found,
        }
    }
}

impl Relay {
    /// Audits an answer an agent may not give (`access.refused`, actor `agent:NAME`):
    /// to another agent's session, or one that does not exist. Rate-limited.
    pub(super) async fn refuse_agent_answer(
        &self,
        name: &AgentName,
        attempt: &str,
        id: &SessionId,
        info: Option<&SessionInfo>,
        why: &str,
    ) {
        let actor = crate::audit::agent_actor(name);
        let mut event = AuditEvent::new(actor.as_str(), Action::AccessRefused).detail(json!({
            "attempt": attempt,
            "reason": why,
            "session": clip(id.as_str(), 64),
        }));
        if let Some(info) = info {
            event = event.session(&info.id).org(&info.agent_org).target(info.agent.as_str());
        }
        self.audit_refused(&actor, attempt, event).await;
    }
}

/// An event about a session: its organisation is the agent's (the customer's), its target
/// the agent.
pub(super) fn session_event(actor: &str, action: Action, info: &SessionInfo) -> AuditEvent {
    AuditEvent::new(actor, action).org(&info.agent_org).target(info.agent.as_str()).session(&info.id)
}
