//! Where agents are connected (`agent_presence`, migration 0013), for either backend: one
//! row per agent and relay, written by that relay ([`crate::store::relays`]).
//!
//! - A relay inserts (or renews) its row when an agent connects to it and deletes it when
//!   that connection ends; a row stands for the newest connection (its `since`), and only
//!   the row of the connection that ends is deleted, so a reconnection that overtook its
//!   old connection's end stays present.
//! - Whoever deletes a row audits `agent.disconnected` for it, once: the relay whose
//!   connection ended, the relay that declared its owner lost, or the owner itself when
//!   it stops or starts again.
//! - An agent is online when a relay that is neither stopped nor declared lost has a row
//!   for it (the single relay, `default`, has no registry row and always counts).
//!
//! It does not decide when a relay is lost or which connection is current: its callers do.

use super::{DbConn, audit};
use crate::audit::{Action, AuditEvent, RELAY_ACTOR};
use crate::store::Result;
use assist_proto::ids::OrgName;
use std::collections::BTreeMap;

/// The presence rows that count: their relay is not marked stopped or lost.
macro_rules! live_presence {
    ($rest:literal) => {
        concat!(
            "SELECT p.agent, p.relay FROM agent_presence p WHERE NOT EXISTS (SELECT 1 FROM relays r \
             WHERE r.name = p.relay AND (r.stopped_at IS NOT NULL OR r.lost_at IS NOT NULL)) ",
            $rest
        )
    };
}

/// The relays each agent is connected to (those that count), by agent name.
pub(super) async fn all(conn: &mut DbConn) -> Result<BTreeMap<String, Vec<String>>> {
    let rows: Vec<(String, String)> =
        sqlx::query_as(live_presence!("ORDER BY p.agent, p.relay")).fetch_all(&mut *conn).await?;
    let mut by_agent: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (agent, relay) in rows {
        by_agent.entry(agent).or_default().push(relay);
    }
    Ok(by_agent)
}

/// The relays one agent is connected to (those that count), by name.
pub(super) async fn of_agent(conn: &mut DbConn, agent: &str) -> Result<Vec<String>> {
    let rows: Vec<(String, String)> = sqlx::query_as(live_presence!("AND p.agent = $1 ORDER BY p.relay"))
        .bind(agent)
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows.into_iter().map(|(_, relay)| relay).collect())
}

/// Stores that `agent` is connected to `relay` since `since`, unless a newer connection
/// of it is stored there already (a row stands for the newest connection).
pub(super) async fn insert(conn: &mut DbConn, agent: &str, relay: &str, since: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO agent_presence (agent, relay, since) VALUES ($1, $2, $3) \
         ON CONFLICT (agent, relay) DO UPDATE SET since = excluded.since \
         WHERE agent_presence.since < excluded.since",
    )
    .bind(agent)
    .bind(relay)
    .bind(since)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Deletes the row of `agent`'s connection to `relay` stored at `since`. False if there
/// was none (a newer connection replaced it, or the relay's rows were removed wholesale).
pub(super) async fn remove(conn: &mut DbConn, agent: &str, relay: &str, since: i64) -> Result<bool> {
    let done = sqlx::query("DELETE FROM agent_presence WHERE agent = $1 AND relay = $2 AND since = $3")
        .bind(agent)
        .bind(relay)
        .bind(since)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes every row of `relay`, auditing one `agent.disconnected` (actor `relay`) per
/// row with `reason` and the relay's name. Returns how many it deleted.
pub(super) async fn remove_relay(conn: &mut DbConn, relay: &str, reason: &str, now: i64) -> Result<u64> {
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT p.agent, (SELECT org FROM agents a WHERE a.name = p.agent) FROM agent_presence p \
         WHERE p.relay = $1 ORDER BY p.agent",
    )
    .bind(relay)
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let deleted =
        sqlx::query("DELETE FROM agent_presence WHERE relay = $1").bind(relay).execute(&mut *conn).await?;
    for (agent, org) in rows {
        let mut event = AuditEvent::new(RELAY_ACTOR, Action::AgentDisconnected)
            .target(agent)
            .detail(serde_json::json!({ "reason": reason, "relay": relay }));
        if let Some(org) = org {
            event = event.org(&OrgName::new(org));
        }
        audit::append(&mut *conn, &event, now).await?;
    }
    Ok(deleted.rows_affected())
}
