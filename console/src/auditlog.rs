//! The audit log page, and the session page's channels and raw downloads: the routes and
//! the part of the relay's seam they need ([`AuditState`], a supertrait of
//! [`ConsoleState`]).
//!
//! - `GET /api/v1/audit/log?since&until&org&agent&engineer&ticket&action&page`: the audit
//!   events the user may read, newest first, in pages of [`PAGE`]. The relay decides who
//!   may read the log (auditors and admins) and which events (their organisation's, and
//!   the events of sessions they may see, as `assist sessions` scopes them; the operator's
//!   admins everything) and applies the filters ([`AuditQuery`]).
//! - `GET /api/v1/audit/log/verify`: the chain check of `assist-relay audit verify` over
//!   the whole log: valid up to its last event, or the first event where it breaks.
//! - `GET /api/v1/audit/sessions/{id}/channels`: the channels of a session's recording
//!   (kind, opened, closed, bytes each way).
//! - `GET /api/v1/audit/sessions/{id}/channels/{n}/{out|in}`: one channel direction's
//!   bytes exactly as recorded, as a download (`application/octet-stream`).
//!
//! A session the user may not see is a 404 like a missing one. Read-only: nothing here
//! changes state, and nothing here decides who sees what.

use crate::auth::signed_in;
use crate::error::ApiError;
use crate::state::{Account, ConsoleState};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Events on a page.
pub const PAGE: usize = 50;

type St = State<Arc<dyn ConsoleState>>;

/// What the audit log is narrowed to; every field is optional. Times are Unix
/// milliseconds on the event's time, `since` inclusive, `until` not. `org` matches the
/// event's organisation or its session's two; `agent` the event's target or its
/// session's agent; `engineer` the actor or the session's engineer; `ticket` the
/// session's ticket (case-insensitive substring); `action` an action exactly, or a whole
/// family when it has no dot (`session` is every `session.*`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub org: Option<String>,
    pub agent: Option<String>,
    pub engineer: Option<String>,
    pub ticket: Option<String>,
    pub action: Option<String>,
    /// From 1.
    pub page: Option<usize>,
}

impl AuditQuery {
    /// A text filter that is set (not empty once trimmed).
    pub fn set(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|s| !s.is_empty())
    }

    /// Whether `action` is what the filter asks for.
    pub fn action_matches(&self, action: &str) -> bool {
        Self::set(&self.action).is_none_or(|want| {
            action == want
                || (!want.contains('.')
                    && action.strip_prefix(want).is_some_and(|rest| rest.starts_with('.')))
        })
    }
}

/// One audit event as the page shows it (the stored record, `detail` parsed).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditEventView {
    pub seq: i64,
    /// Unix milliseconds.
    pub at: i64,
    pub actor: String,
    pub org: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub session: Option<String>,
    pub detail: serde_json::Value,
}

/// One page of the filtered log, and every action name (for the page's filter).
#[derive(Debug, Serialize)]
pub struct AuditLogPage {
    pub events: Vec<AuditEventView>,
    pub page: usize,
    pub pages: usize,
    pub total: usize,
    pub actions: Vec<String>,
}

/// The audit chain's verification, as `assist-relay audit verify` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainCheck {
    /// `valid` or `broken`.
    pub result: String,
    /// Events that verified (all of them when valid; those before the break otherwise).
    pub verified: u64,
    /// The last event's hash when the chain is valid (64 zeros for an empty log).
    pub head_hash: Option<String>,
    /// The first event at which the chain breaks.
    pub broken_at: Option<i64>,
    /// The verifier's sentence.
    pub detail: String,
}

/// One channel of a session's recording.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChannelView {
    /// The channel's number in the recording (from 1).
    pub channel: u32,
    /// `shell`, `stderr`, `files`, `exec`, `logs`, `forward`, ...
    pub kind: String,
    /// What it was for, when the channel names it (a path, a script, a target).
    pub what: Option<String>,
    /// Unix milliseconds.
    pub opened_at: i64,
    pub closed_at: Option<i64>,
    /// Bytes recorded from the agent (`out`) and from the engineer (`in`).
    pub bytes_out: u64,
    pub bytes_in: u64,
}

/// What the audit log page and the session page's channels need from the relay.
#[async_trait::async_trait]
pub trait AuditState: Send + Sync + 'static {
    /// The events the user may read that match `query`, newest first (not paged);
    /// [`ApiError::Forbidden`] for a role that does not read the log.
    async fn audit_events(&self, user: &Account, query: &AuditQuery)
    -> Result<Vec<AuditEventView>, ApiError>;
    /// Every action name the log may hold.
    fn audit_actions(&self) -> Vec<String>;
    /// Verifies the whole chain, for a user who may read the log.
    async fn audit_chain(&self, user: &Account) -> Result<ChainCheck, ApiError>;
    /// The channels of a session's recording, under the session page's rule
    /// ([`ApiError::NotFound`] when the user may not see the session).
    async fn session_channels(&self, user: &Account, id: &str) -> Result<Vec<ChannelView>, ApiError>;
    /// One channel direction's recorded bytes (`out`: from the agent, `in`: to it), under
    /// the same rule.
    async fn raw_channel(
        &self,
        user: &Account,
        id: &str,
        channel: u32,
        direction: &str,
    ) -> Result<Vec<u8>, ApiError>;
    /// A replay of one recorded desktop channel, under the same rule (the relay checks the
    /// recording, audits the replay and paces it: see [`crate::replay`]).
    async fn desktop_replay(
        &self,
        user: &Account,
        id: &str,
        channel: u32,
    ) -> Result<crate::state::ReplayLink, ApiError>;
}

/// Page `query.page` of `events` (the last page if it is past the end).
pub fn page_of(events: Vec<AuditEventView>, query: &AuditQuery, actions: Vec<String>) -> AuditLogPage {
    let total = events.len();
    let pages = total.div_ceil(PAGE).max(1);
    let page = query.page.unwrap_or(1).clamp(1, pages);
    let events = events.into_iter().skip((page - 1) * PAGE).take(PAGE).collect();
    AuditLogPage { events, page, pages, total, actions }
}

pub async fn log(
    State(state): St,
    headers: HeaderMap,
    Query(query): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let c = signed_in(&state, &headers).await?;
    let events = state.audit_events(&c.account, &query).await?;
    Ok(Json(page_of(events, &query, state.audit_actions())).into_response())
}

pub async fn verify(State(state): St, headers: HeaderMap) -> Result<Response, ApiError> {
    let c = signed_in(&state, &headers).await?;
    Ok(Json(state.audit_chain(&c.account).await?).into_response())
}

pub async fn channels(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let c = signed_in(&state, &headers).await?;
    Ok(Json(state.session_channels(&c.account, &id).await?).into_response())
}

pub async fn raw(
    State(state): St,
    headers: HeaderMap,
    Path((id, channel, direction)): Path<(String, u32, String)>,
) -> Result<Response, ApiError> {
    let c = signed_in(&state, &headers).await?;
    if direction != "out" && direction != "in" {
        return Err(ApiError::NotFound("a channel's direction is out or in".into()));
    }
    let bytes = state.raw_channel(&c.account, &id, channel, &direction).await?;
    // The id went through the relay's lookup; only its safe characters reach the header.
    let name: String = id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
    let disposition = format!("attachment; filename=\"{name}-channel-{channel}-{direction}.bin\"");
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_filter_without_a_dot_takes_the_whole_family() {
        let q = |a: &str| AuditQuery { action: Some(a.into()), ..AuditQuery::default() };
        assert!(q("session").action_matches("session.approved"));
        assert!(!q("session").action_matches("sessions.x"));
        assert!(q("session.approved").action_matches("session.approved"));
        assert!(!q("session.approved").action_matches("session.approved_x"));
        assert!(!q("session.app").action_matches("session.approved"));
        assert!(q(" ").action_matches("anything"));
    }

    #[test]
    fn pages_hold_fifty_events_and_a_page_past_the_end_is_the_last() {
        let ev = |seq| AuditEventView {
            seq,
            at: seq,
            actor: "a".into(),
            org: None,
            action: "x.y".into(),
            target: None,
            session: None,
            detail: serde_json::Value::Null,
        };
        let all: Vec<_> = (1..=120).rev().map(ev).collect();
        let p = page_of(all.clone(), &AuditQuery { page: Some(9), ..Default::default() }, vec![]);
        assert_eq!((p.page, p.pages, p.total, p.events.len()), (3, 3, 120, 20));
        assert_eq!(p.events[0].seq, 20);
        let p = page_of(Vec::new(), &AuditQuery::default(), vec![]);
        assert_eq!((p.page, p.pages, p.total), (1, 1, 0));
    }
}
