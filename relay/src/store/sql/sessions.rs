//! Sessions in SQLite: the rows, their mapping, and the writes (each with its audit
//! event, in one transaction).

use super::DbRow;
use super::{Backend, audit};
use crate::audit::{Action, AuditEvent, RELAY_ACTOR};
use crate::store::sqlstore::{insert_error, not_found, parse};
use crate::store::{OpenSession, Result, StoreError};
use assist_proto::ids::{AgentName, OrgName, SessionId, UserName};
use assist_proto::msg::SessionInfo;
use assist_proto::session::SessionState;
use sqlx::Row;

fn session_from_row(r: &DbRow) -> Result<SessionInfo> {
    let state: String = r.try_get("state")?;
    let capabilities: String = r.try_get("capabilities")?;
    Ok(SessionInfo {
        id: SessionId::new(r.try_get::<String, _>("id")?),
        engineer: UserName::new(r.try_get::<String, _>("engineer")?),
        engineer_org: OrgName::new(r.try_get::<String, _>("engineer_org")?),
        agent: AgentName::new(r.try_get::<String, _>("agent")?),
        agent_org: OrgName::new(r.try_get::<String, _>("agent_org")?),
        ticket: r.try_get("ticket")?,
        priority: parse(&r.try_get::<String, _>("priority")?)?,
        reason: r.try_get("reason")?,
        capabilities: serde_json::from_str(&capabilities)
            .map_err(|e| StoreError::Corrupt(format!("session capabilities {capabilities:?}: {e}")))?,
        state: SessionState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown session state {state:?}")))?,
        approver: r.try_get("approver")?,
        requested_at: r.try_get("requested_at")?,
        consent_deadline: r.try_get("consent_deadline")?,
        decided_at: r.try_get("decided_at")?,
        started_at: r.try_get("started_at")?,
        ended_at: r.try_get("ended_at")?,
        end_reason: r.try_get("end_reason")?,
        duration_secs: r.try_get::<i64, _>("duration_secs")?.max(0) as u64,
        granted: r
            .try_get::<Option<String>, _>("granted")?
            .map(|g| {
                serde_json::from_str(&g).map_err(|e| StoreError::Corrupt(format!("session grant {g:?}: {e}")))
            })
            .transpose()?,
        grant_expires_at: r.try_get("grant_expires_at")?,
        escalation: r
            .try_get::<Option<String>, _>("escalation")?
            .map(|e| {
                serde_json::from_str(&e)
                    .map_err(|err| StoreError::Corrupt(format!("session escalation {e:?}: {err}")))
            })
            .transpose()?,
    })
}

fn open_session_from_row(r: &DbRow) -> Result<OpenSession> {
    let consent: Option<String> = r.try_get("agent_consent")?;
    Ok(OpenSession {
        info: session_from_row(r)?,
        agent_consent: consent.map(|c| parse(&c)).transpose()?,
        relay: r.try_get("relay")?,
    })
}

/// The pending escalation as stored: only while the session is open.
fn escalation_json(s: &SessionInfo) -> Result<Option<String>> {
    s.escalation
        .as_ref()
        .filter(|_| !s.state.is_final())
        .map(|e| serde_json::to_string(e).map_err(|err| StoreError::Corrupt(format!("escalation: {err}"))))
        .transpose()
}

fn granted_json(s: &SessionInfo) -> Result<Option<String>> {
    s.granted
        .as_ref()
        .map(|g| serde_json::to_string(g).map_err(|e| StoreError::Corrupt(format!("session grant: {e}"))))
        .transpose()
}

macro_rules! select_sessions {
    ($rest:literal) => {
        select_sessions!("", $rest)
    };
    ($more:literal, $rest:literal) => {
        concat!(
            "SELECT id, engineer, engineer_org, agent, agent_org, ticket, priority, reason, capabilities, ",
            "state, approver, requested_at, consent_deadline, decided_at, started_at, ended_at, end_reason, ",
            "duration_secs, granted, grant_expires_at, escalation",
            $more,
            " FROM sessions ",
            $rest
        )
    };
}

impl Backend {
    pub(super) async fn insert_session_audited(&self, s: &SessionInfo, event: &AuditEvent) -> Result<()> {
        let capabilities = serde_json::to_string(&s.capabilities)
            .map_err(|e| StoreError::Corrupt(format!("session capabilities: {e}")))?;
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO sessions (id, engineer, engineer_org, agent, agent_org, ticket, priority, reason, \
             capabilities, state, approver, requested_at, consent_deadline, decided_at, started_at, ended_at, \
             end_reason, duration_secs, granted, grant_expires_at, escalation, relay) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, \
             $21, $22)",
        )
        .bind(s.id.as_str())
        .bind(s.engineer.as_str())
        .bind(s.engineer_org.as_str())
        .bind(s.agent.as_str())
        .bind(s.agent_org.as_str())
        .bind(&s.ticket)
        .bind(s.priority.to_string())
        .bind(&s.reason)
        .bind(capabilities)
        .bind(s.state.as_str())
        .bind(&s.approver)
        .bind(s.requested_at)
        .bind(s.consent_deadline)
        .bind(s.decided_at)
        .bind(s.started_at)
        .bind(s.ended_at)
        .bind(&s.end_reason)
        .bind(s.duration_secs as i64)
        .bind(granted_json(s)?)
        .bind(s.grant_expires_at)
        .bind(escalation_json(s)?)
        .bind(&*self.relay)
        .execute(&mut *tx)
        .await
        .map_err(|e| insert_error(e, "session", s.id.as_str(), &s.agent_org))?;
        audit::append(&mut tx, event, s.requested_at).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn update_session_audited(
        &self,
        s: &SessionInfo,
        now: i64,
        event: &AuditEvent,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "UPDATE sessions SET state = $1, approver = $2, decided_at = $3, started_at = $4, ended_at = $5, \
             end_reason = $6, granted = $7, grant_expires_at = $8, escalation = $9 \
             WHERE id = $10 AND state IN ('requested', 'approved', 'active')",
        )
        .bind(s.state.as_str())
        .bind(&s.approver)
        .bind(s.decided_at)
        .bind(s.started_at)
        .bind(s.ended_at)
        .bind(&s.end_reason)
        .bind(granted_json(s)?)
        .bind(s.grant_expires_at)
        .bind(escalation_json(s)?)
        .bind(s.id.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            // Or ended already: by another relay that declared this one lost, which wrote
            // (and audited) the end this relay must not write again.
            return Err(not_found("open session", s.id.as_str()));
        }
        audit::append(&mut tx, event, now).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn get_session(&self, id: &SessionId) -> Result<Option<SessionInfo>> {
        let row = sqlx::query(select_sessions!("WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    pub(super) async fn newest_sessions(&self, limit: u32) -> Result<Vec<SessionInfo>> {
        // rowid breaks ties between requests made in the same millisecond.
        let rows = sqlx::query(select_sessions!("ORDER BY requested_at DESC, rowid DESC LIMIT $1"))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(session_from_row).collect()
    }

    pub(super) async fn open_session_rows(&self, limit: u32) -> Result<Vec<OpenSession>> {
        // On the partial index of open sessions; the agent's consent mode as it announced it.
        let rows = sqlx::query(select_sessions!(
            ", relay, (SELECT consent FROM agents WHERE agents.name = sessions.agent) AS agent_consent",
            "WHERE state IN ('requested', 'approved', 'active') ORDER BY requested_at, rowid LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(open_session_from_row).collect()
    }

    pub(super) async fn open_session_row(&self, id: &SessionId) -> Result<Option<OpenSession>> {
        let row = sqlx::query(select_sessions!(
            ", relay, (SELECT consent FROM agents WHERE agents.name = sessions.agent) AS agent_consent",
            "WHERE id = $1 AND state IN ('requested', 'approved', 'active')"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(open_session_from_row).transpose()
    }

    pub(super) async fn close_dangling(&self, reason: &str, now: i64) -> Result<u64> {
        let mut tx = self.write().await?;
        let closed = close_open_sessions(&mut tx, &self.relay, reason, serde_json::Value::Null, now).await?;
        // Its agents' connections ended with the earlier process; the other relays' stay.
        super::presence::remove_relay(&mut tx, &self.relay, reason, now).await?;
        tx.commit().await?;
        Ok(closed)
    }
}

/// Closes `relay`'s sessions not in a final state with `reason` (requested ones expire),
/// each audited as actor `relay` in `tx`; `lost` (when not null) goes into each event's
/// detail as `lost_relay`. Returns how many it closed.
pub(super) async fn close_open_sessions(
    tx: &mut super::DbConn,
    relay: &str,
    reason: &str,
    lost: serde_json::Value,
    now: i64,
) -> Result<u64> {
    let open = sqlx::query(
        "SELECT id, agent, agent_org, state FROM sessions \
         WHERE state IN ('requested', 'approved', 'active') AND relay = $1 ORDER BY requested_at, rowid",
    )
    .bind(relay)
    .fetch_all(&mut *tx)
    .await?;
    // The literals are `SessionState::as_str` values; the tests read them back with
    // `SessionState::parse`.
    let closed = sqlx::query(
        "UPDATE sessions SET \
           state = CASE state WHEN 'requested' THEN 'expired' ELSE 'closed' END, \
           ended_at = COALESCE(ended_at, $1), \
           end_reason = COALESCE(end_reason, $2) \
         WHERE state IN ('requested', 'approved', 'active') AND relay = $3",
    )
    .bind(now)
    .bind(reason)
    .bind(relay)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    for r in &open {
        let state: String = r.try_get("state")?;
        let action = if state == "requested" { Action::SessionExpired } else { Action::SessionEnded };
        let mut detail = serde_json::json!({ "reason": reason, "previous_state": state });
        if !lost.is_null() {
            detail["lost_relay"] = lost.clone();
        }
        let event = AuditEvent::new(RELAY_ACTOR, action)
            .org(&OrgName::new(r.try_get::<String, _>("agent_org")?))
            .target(r.try_get::<String, _>("agent")?)
            .session(&SessionId::new(r.try_get::<String, _>("id")?))
            .detail(detail);
        audit::append(&mut *tx, &event, now).await?;
    }
    Ok(closed)
}
