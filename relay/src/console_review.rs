//! The auditor's session page, from a session's audit events: the timeline as it is, and
//! the grant revisions and file transfers read out of it (the events the broker writes:
//! `grant_revision` in a grant's change, `file.transferred` with both digests).
//!
//! It reads events only; it neither checks who may see them (the broker did) nor verifies
//! the recording (the caller passes the verifier's result in).

use crate::audit::AuditRecord;
use assist_console::{EventView, GrantRevision, RecordingCheck, SessionDetail, SessionView, TransferView};
use serde_json::Value;

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Capabilities as stored in events (serialised `Capability`s), as people read them.
fn capabilities(v: Option<&Value>) -> Vec<String> {
    let Some(list) = v.and_then(Value::as_array) else { return Vec::new() };
    list.iter()
        .map(|c| match serde_json::from_value::<assist_proto::caps::Capability>(c.clone()) {
            Ok(cap) => cap.to_string(),
            Err(_) => c.to_string(),
        })
        .collect()
}

fn grant(e: &EventView) -> Option<GrantRevision> {
    let revision = e.detail.get("grant_revision")?.as_u64()?;
    Some(GrantRevision {
        revision,
        at: e.at,
        action: e.action.clone(),
        by: e.actor.clone(),
        granted: capabilities(e.detail.get("granted")),
        expires_at: e.detail.get("grant_expires_at").and_then(Value::as_i64),
        note: text(&e.detail, "note"),
    })
}

pub(crate) fn transfer(e: &EventView) -> Option<TransferView> {
    (e.action == "file.transferred").then(|| TransferView {
        at: e.at,
        path: text(&e.detail, "path").unwrap_or_default(),
        direction: text(&e.detail, "direction").unwrap_or_default(),
        size: e.detail.get("size").and_then(Value::as_u64).unwrap_or(0),
        sha256_agent: text(&e.detail, "sha256_agent").unwrap_or_default(),
        sha256_engineer: text(&e.detail, "sha256_engineer"),
        matched: e.detail.get("match").and_then(Value::as_bool).unwrap_or(false),
        ok: e.detail.get("ok").and_then(Value::as_bool).unwrap_or(false),
    })
}

/// The session page from the session, its audit records (oldest first) and the
/// recording's verification.
pub fn detail(session: SessionView, records: Vec<AuditRecord>, recording: RecordingCheck) -> SessionDetail {
    let events = views(records);
    let grants = events.iter().filter_map(grant).collect();
    let transfers = events.iter().filter_map(transfer).collect();
    SessionDetail { session, events, grants, transfers, recording }
}

/// The grant revisions among a session's audit records (oldest first).
pub fn grant_revisions(records: Vec<AuditRecord>) -> Vec<GrantRevision> {
    views(records).iter().filter_map(grant).collect()
}

fn views(records: Vec<AuditRecord>) -> Vec<EventView> {
    records
        .into_iter()
        .map(|r| EventView {
            seq: r.seq,
            at: r.at,
            detail: serde_json::from_str(&r.detail).unwrap_or(Value::String(r.detail)),
            actor: r.actor,
            action: r.action,
        })
        .collect()
}
